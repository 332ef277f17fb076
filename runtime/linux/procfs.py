"""Writes to /proc and /sys files that a container cannot redirect.

A container may have replaced /proc with a symlink (to a directory it controls, or to a host
path through a shared mount) or mounted something over a file we are about to write. So the
top directory is opened with no symlinks at all and checked with fstatfs to be a real
procfs/sysfs root, and the rest is walked below it with openat2(RESOLVE_BENEATH |
RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV): no symlink, no mount crossing. The opened file is
checked with fstatfs again before a byte is written.

"/proc/self" and "/proc/thread-self" are symlinks in procfs; they are read in the procfs that
was opened, so they name us as that procfs's pid namespace sees us (never, say, the host's
pid 1 when we are pid 1 of our own namespace but /proc is still the host's).
Runs in the init between fork and exec: no imports inside functions, no logging.
"""

from __future__ import annotations

import ctypes
import errno
import os

from runtime.errors import strerror
from runtime.linux import syscalls as sc

PROC_SUPER_MAGIC = 0x9FA0
SYSFS_MAGIC = 0x62656572
_MAGIC = {"proc": PROC_SUPER_MAGIC, "sys": SYSFS_MAGIC}

_libc = ctypes.CDLL(None, use_errno=True)
_STATFS_SIZE = 256  # larger than struct statfs on every arch; f_type is the first word


def fs_type(fd: int) -> int:
    """f_type of the filesystem `fd` is on (fstatfs(2); os has no binding for it)."""
    buf = ctypes.create_string_buffer(_STATFS_SIZE)
    if _libc.fstatfs(fd, buf) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"fstatfs: {os.strerror(err)}")
    return ctypes.c_long.from_buffer(buf).value


def _split(path: str) -> tuple[str, str]:
    """("proc", "sys/net/ipv4/ip_forward") for "/proc/sys/net/ipv4/ip_forward"."""
    parts = [p for p in path.split("/") if p and p != "."]
    if not parts or parts[0] not in _MAGIC or ".." in parts or len(parts) < 2:
        raise OSError(errno.EINVAL, f"{path}: not a file under /proc or /sys", path)
    return parts[0], "/".join(parts[1:])


def _own_entry(topfd: int, rest: str) -> str:
    """Replace a leading self/thread-self with what that symlink says in this procfs."""
    first, _, tail = rest.partition("/")
    if first not in ("self", "thread-self"):
        return rest
    try:
        me = os.readlink(first, dir_fd=topfd)  # "<pid>" or "<pid>/task/<tid>"
    except OSError as e:
        raise OSError(e.errno, f"/proc/{first}: we are not visible in this procfs",
                      "/proc/" + first) from None
    return f"{me}/{tail}" if tail else me


def open_top(top: str) -> int:
    """An O_PATH fd of the real /proc or /sys mount root of the current root."""
    fd = sc.openat2(-100, "/" + top, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, 0,
                    sc.RESOLVE_NO_SYMLINKS | sc.RESOLVE_NO_MAGICLINKS)
    try:
        if fs_type(fd) != _MAGIC[top]:
            raise OSError(errno.EXDEV, f"/{top} is not a {top}fs mount", "/" + top)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_file(path: str, flags: int) -> int:
    """Open a file under /proc or /sys safely (see the module doc)."""
    top, rest = _split(path)
    topfd = open_top(top)
    try:
        if top == "proc":
            rest = _own_entry(topfd, rest)
        fd = sc.openat2(topfd, rest, flags | os.O_NOFOLLOW | os.O_NOCTTY, 0,
                        sc.RESOLVE_BENEATH | sc.RESOLVE_NO_SYMLINKS | sc.RESOLVE_NO_MAGICLINKS
                        | sc.RESOLVE_NO_XDEV)
    except OSError as e:
        raise OSError(e.errno, f"open {path}: {strerror(e.errno)}", path) from None
    finally:
        os.close(topfd)
    if fs_type(fd) != _MAGIC[top]:
        os.close(fd)
        raise OSError(errno.EXDEV, f"{path} is not on {top}fs", path)
    return fd


def write(path: str, data: str | bytes) -> None:
    """Write `data` to a /proc or /sys file of the current root, e.g. a sysctl."""
    raw = data.encode() if isinstance(data, str) else data
    fd = open_file(path, os.O_WRONLY)
    try:
        os.write(fd, raw)
    except OSError as e:
        raise OSError(e.errno, f"write {path}: {strerror(e.errno)}", path) from None
    finally:
        os.close(fd)


def read(path: str) -> str:
    fd = open_file(path, os.O_RDONLY)
    try:
        return os.read(fd, 65536).decode()
    finally:
        os.close(fd)
