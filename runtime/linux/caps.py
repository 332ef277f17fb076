"""Capabilities: bounding via prctl, E/P/I via python-prctl's set_caps, ambient via ctypes.

python-prctl rejects PR_CAP_AMBIENT, so ambient goes through syscalls.prctl beside it.
"""

from __future__ import annotations

import _prctl  # python-prctl's C core: set_caps(E, P, I, clearE, clearP, clearI) in one capset

from runtime.errors import strerror
from runtime.linux import procfs, syscalls
from runtime.spec import CAPABILITIES, Capabilities


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
    try:
        _prctl.set_caps(
            [c for c in known if c in e], [c for c in known if c in p],
            [c for c in known if c in i], [c for c in known if c not in e],
            [c for c in known if c not in p], [c for c in known if c not in i],
        )
    except OSError as err:
        raise OSError(err.errno, _capset_error(caps, err.errno)) from None
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    for cap in caps.ambient or ():
        try:
            syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_RAISE, cap)
        except PermissionError:
            pass  # not in both permitted and inheritable: runc skips it the same way


def _mask(field: str) -> int | None:
    """A capability mask of /proc/self/status (CapPrm, CapInh, CapBnd), None if unreadable."""
    try:
        for line in procfs.read("/proc/self/status").splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1], 16)
    except OSError:
        pass
    return None


def names(cs) -> str:
    return ", ".join(CAPABILITIES[c] if c < len(CAPABILITIES) else str(c) for c in cs)


def _capset_error(caps: Capabilities, err: int) -> str:
    """capset refused: say which set asks for which capability we cannot give (the usual
    case: the host's bounding set lacks it, so the runtime never had it)."""
    why = f"capset: {strerror(err)}"
    extra = set(caps.effective or ()) - set(caps.permitted or ())
    if extra:
        return (f"process.capabilities.effective: {names(sorted(extra))} not in "
                f"process.capabilities.permitted ({why})")
    prm, inh = _mask("CapPrm"), _mask("CapInh")
    if prm is not None:
        for name, wanted, have in (("permitted", caps.permitted, prm),
                                   ("inheritable", caps.inheritable, prm | (inh or 0))):
            missing = [c for c in wanted or () if not have >> c & 1]
            if missing:
                return (f"process.capabilities.{name}: {names(missing)} not in the runtime's "
                        f"own capability set (the host's bounding set lacks it; {why})")
    return f"process.capabilities: {why}"
