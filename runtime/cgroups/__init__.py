"""cgroups: one Manager interface over cgroupfs v1, v2, hybrid and systemd.

A Manager owns one container's cgroups. `create` calls, in this order (runc's):
  apply(pid)      create the cgroup(s) and move stage 1 in, before it unshares a cgroup
                  namespace or runs anything of the container's
  set(resources)  write linux.resources, before the prestart/createRuntime hooks
  paths           {controller or "" for v2: absolute host dir}, saved in state.json
The verbs use the rest: freeze/thaw (pause, resume), frozen, stats (events), pids (ps,
kill --all), kill_all, destroy (delete; also every failed create).

This module is imported by `create`; the hot path (state/kill/delete/start) imports a
manager only when the container has cgroups.
"""

from __future__ import annotations

from runtime import log
from runtime.record import Record


class Manager:
    """The interface (youki's CgroupManager, crun's manager table). A manager for a
    container without cgroups of its own does nothing."""

    driver = ""  # "fs" or "systemd"; "" when onggi manages no cgroup

    @property
    def paths(self) -> dict[str, str]:
        return {}

    def apply(self, pid: int) -> None:
        pass

    def set(self, resources: dict) -> None:
        pass

    def freeze(self) -> None:
        raise NotImplementedError

    def thaw(self) -> None:
        raise NotImplementedError

    def frozen(self) -> bool:
        return False

    def stats(self) -> dict:
        raise NotImplementedError

    def pids(self) -> list[int]:
        raise NotImplementedError

    def kill_all(self, sig: int) -> None:
        raise NotImplementedError

    def destroy(self) -> None:
        pass


class Options(Record):
    """What the global flags say about cgroups."""

    systemd: bool = False  # --systemd-cgroup
    rootless: str = "auto"  # --rootless: true|false|auto


def for_create(cfg, cid: str, opts: Options) -> Manager:
    """The manager for a new container (runtime.spec.Config `cfg`)."""
    if cfg.linux.resources or cfg.linux.cgroups_path:  # runc's default spec carries some
        log.warn("linux.resources and linux.cgroupsPath are not applied yet (no cgroup support)")
    return Manager()


def from_state(st) -> Manager:
    """The manager of an existing container, from its state.json (runtime.state.State)."""
    return Manager()
