"""inotify(7) through ctypes, for v2's memory.events (the standard library has none)."""

from __future__ import annotations

import ctypes
import os

IN_MODIFY = 0x2
IN_CLOEXEC = 0o2000000
IN_NONBLOCK = 0o4000

_libc = ctypes.CDLL(None, use_errno=True)


def _check(r: int) -> int:
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def init() -> int:
    return _check(_libc.inotify_init1(IN_CLOEXEC | IN_NONBLOCK))


def watch(fd: int, path: str, mask: int) -> int:
    return _check(_libc.inotify_add_watch(fd, os.fsencode(path), ctypes.c_uint32(mask)))
