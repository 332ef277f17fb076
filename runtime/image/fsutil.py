"""In-root path resolution: every component is resolved by the kernel inside the rootfs.

openat2(RESOLVE_IN_ROOT) treats "/" and ".." as the rootfs and refuses magic links, so a
symlink planted by a layer can never lead a later write out of the root.
"""

from __future__ import annotations

import ctypes
import errno
import os

SYS_OPENAT2 = 437  # the same on every architecture
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def openat2(dirfd: int, path: str | bytes, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2); raises OSError with the errno like os.open does."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    p = os.fsencode(path) if path else b"."
    while True:
        fd = _syscall(
            ctypes.c_long(SYS_OPENAT2),
            ctypes.c_int(dirfd),
            ctypes.c_char_p(p),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return fd
        e = ctypes.get_errno()
        if e == errno.EINTR or e == errno.EAGAIN:
            continue
        raise OSError(e, os.strerror(e), os.fsdecode(p))


def open_in_root(rootfd: int, path: str, flags: int = os.O_PATH, mode: int = 0) -> int:
    """Open `path` (relative or absolute) as seen from inside the root; symlinks stay inside."""
    return openat2(rootfd, path.lstrip("/"), flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS, mode)


def clean_parts(name: str) -> list[str]:
    """A tar name as path components, with "." dropped and ".." clamped at the root."""
    parts: list[str] = []
    for c in name.split("/"):
        if c in ("", "."):
            continue
        if c == "..":
            if parts:
                parts.pop()
            continue
        parts.append(c)
    return parts


def read_file_in_root(root: str, path: str, limit: int = 16 << 20) -> bytes | None:
    """Read a file of a rootfs without letting its symlinks lead outside; None if absent."""
    rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fd = open_in_root(rootfd, path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return None  # absent, a loop, or a link that would leave the root
        try:
            import stat

            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            return os.read(fd, limit)
        finally:
            os.close(fd)
    finally:
        os.close(rootfd)
