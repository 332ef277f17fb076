"""In-root path resolution: every component is resolved by the kernel inside the rootfs.

openat2(RESOLVE_IN_ROOT) treats "/" and ".." as the rootfs and refuses magic links, so a
symlink planted by a layer can never lead a later write out of the root.
"""

from __future__ import annotations

import os
import stat

from runtime.linux.syscalls import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2


def open_in_root(rootfd: int, path: str, flags: int = os.O_PATH, mode: int = 0) -> int:
    """Open `path` (relative or absolute) as seen from inside the root; symlinks stay inside."""
    return openat2(rootfd, path.lstrip("/") or ".", flags, mode,
                   RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)


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
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            return os.read(fd, limit)
        finally:
            os.close(fd)
    finally:
        os.close(rootfd)
