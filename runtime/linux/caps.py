"""Capabilities: bounding via prctl, E/P/I via python-prctl's set_caps, ambient via ctypes.

python-prctl rejects PR_CAP_AMBIENT, so ambient goes through syscalls.prctl beside it.
"""

from __future__ import annotations

import _prctl  # python-prctl's C core: set_caps(E, P, I, clearE, clearP, clearI) in one capset

from runtime.linux import syscalls
from runtime.spec import Capabilities


def last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def apply_bounding(caps: Capabilities, last: int) -> None:
    keep = set(caps.bounding or ())
    for cap in range(last + 1):
        if cap not in keep:
            syscalls.prctl(syscalls.PR_CAPBSET_DROP, cap)


def apply_sets(caps: Capabilities, last: int) -> None:
    """Set effective/permitted/inheritable exactly, then raise the ambient ones."""
    known = range(min(last, _prctl.CAP_LAST_CAP) + 1)
    e, p, i = (set(s or ()) for s in (caps.effective, caps.permitted, caps.inheritable))
    _prctl.set_caps(
        [c for c in known if c in e], [c for c in known if c in p], [c for c in known if c in i],
        [c for c in known if c not in e], [c for c in known if c not in p],
        [c for c in known if c not in i],
    )
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    for cap in caps.ambient or ():
        try:
            syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_RAISE, cap)
        except PermissionError:
            pass  # not in both permitted and inheritable: runc skips it the same way
