"""Test-only fault injection: ONGGI_FAULT=STEP makes the runtime SIGKILL itself on reaching
the named step (see the steps in messages.py and the callers of point()), as a shim that
times out or the OOM killer would. Unset, it costs one dict lookup at import."""

from __future__ import annotations

import os

_at = os.environ.get("ONGGI_FAULT")


def point(step: str) -> None:
    if _at is not None and _at == step:
        os.kill(os.getpid(), 9)
        os._exit(137)  # PID 1 of a pid namespace ignores even its own SIGKILL
