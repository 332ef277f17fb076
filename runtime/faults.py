"""Test-only fault injection: ONGGI_FAULT=STEP makes the runtime SIGKILL itself on reaching
the named step (see the steps in messages.py and the callers of point()), as a shim that
times out or the OOM killer would. ONGGI_FAULT=STEP@SECONDS sleeps there instead, to widen
a race window. Unset, it costs one dict lookup at import.

The steps: `create:*` and `start:*`, `delete:*`, `run:*`, `update:*` in the runtime's own
process; `init:*` in stage 1 and the init (see init.step), `exec:*` in exec.
"""

from __future__ import annotations

import os

_at = os.environ.get("ONGGI_FAULT")
_delay = 0.0
if _at is not None and "@" in _at:
    _at, _, _secs = _at.partition("@")
    _delay = float(_secs)
    import time as _time  # imported before any fork: the child may not import


def point(step: str) -> None:
    if _at is not None and _at == step:
        if _delay:
            _time.sleep(_delay)
            return
        os.kill(os.getpid(), 9)
        os._exit(137)  # PID 1 of a pid namespace ignores even its own SIGKILL


class Steps:
    """The step a child (the init, exec's process) is in: `step(name)` marks it, a fault
    point each ("PREFIX" + name), and `name` is what its error report gives the parent."""

    def __init__(self, prefix: str, first: str) -> None:
        self.prefix = prefix
        self.name = first

    def __call__(self, name: str) -> None:
        self.name = name
        point(self.prefix + name)
