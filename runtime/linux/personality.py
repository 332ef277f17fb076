"""linux.personality: personality(2) just before execve (it survives the exec)."""

from __future__ import annotations

import ctypes

from runtime.errors import strerror
from runtime.linux import syscalls

DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}


def set_domain(domain: str) -> None:
    if syscalls._libc.personality(ctypes.c_ulong(DOMAINS[domain])) != -1:
        return
    err = ctypes.get_errno()
    raise OSError(err, f"linux.personality: personality({domain}): {strerror(err)}")

