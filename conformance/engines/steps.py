"""Steps: one user-visible behaviour of an engine each, checked by its real effect."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from .common import Runtime

# What a step needs from the runtime beyond create/start/kill/delete/state: a verb, or
# "cgroups" (linux.resources and cgroupsPath applied, as `features` claims).
FEATURES = ("exec", "pause", "update", "cgroups")


@dataclass(frozen=True)
class Step:
    engine: str
    name: str
    fn: Callable
    needs: tuple[str, ...] = ()

    @property
    def doc(self) -> str:
        return (self.fn.__doc__ or "").strip().split("\n")[0]


def collector(engine: str, into: list[Step]) -> Callable:
    """`@step("name", needs=(...))` appends the function to `into`, in order."""

    def step(name: str, needs: tuple[str, ...] = ()) -> Callable:
        def deco(fn: Callable) -> Callable:
            into.append(Step(engine, name, fn, needs))
            return fn
        return deco
    return step


@functools.cache
def missing_features(runtime: Runtime) -> frozenset[str]:
    """The FEATURES the runtime does not have at all (its CLI has no such verb, or its
    `features` claims no cgroup support): steps needing them cannot pass yet."""
    gone = {v for v in ("exec", "pause", "update") if not runtime.has_verb(v)}
    if not runtime.claims_cgroups():
        gone.add("cgroups")
    return frozenset(gone)
