"""Paths inside the container's root, resolved and created through fds.

Every lookup goes through openat2(RESOLVE_IN_ROOT): a symlink in the rootfs that points at
"/", "../../.." or "/proc/self/..." resolves inside the root, never onto the host. Things are
created with *at calls relative to an fd of their (already resolved) parent, and mounts go
onto "/proc/self/fd/N" of an fd from that resolution, so a symlink swapped in between the check
and the mount cannot redirect it (CVE-2021-30465).

Runs in the init between fork and exec: no imports inside functions, no logging.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat

from runtime.errors import strerror
from runtime.linux import syscalls as sc

_IN_ROOT = sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS
# One step below an fd we just made: no symlink may stand there.
_STRICT = sc.RESOLVE_BENEATH | sc.RESOLVE_NO_SYMLINKS | sc.RESOLVE_NO_MAGICLINKS
_DIR = os.O_PATH | os.O_DIRECTORY


def clean(path: str) -> str:
    """Lexically clean a container path into "a/b/c" relative to the root ("" for the root)."""
    return posixpath.normpath("/" + path).lstrip("/")


def fd_path(fd: int) -> str:
    """The magic-link path mount(2) follows to exactly the object `fd` refers to."""
    return f"/proc/self/fd/{fd}"


def open_root(path: str) -> int:
    return os.open(path, _DIR | os.O_CLOEXEC)


def resolve(rootfd: int, path: str, flags: int = os.O_PATH, nofollow: bool = False) -> int:
    """Open `path` as seen from inside the root; the trailing symlink too unless `nofollow`."""
    rel = clean(path) or "."
    if nofollow:
        flags |= os.O_NOFOLLOW
    return sc.openat2(rootfd, rel, flags, 0, _IN_ROOT)


def exists(rootfd: int, path: str) -> bool:
    try:
        fd = resolve(rootfd, path)
    except FileNotFoundError:
        return False
    os.close(fd)
    return True


_MAX_LINKS = 40  # like the kernel's limit on symlinks in one lookup


def mkdir_all(rootfd: int, path: str, mode: int = 0o755) -> int:
    """Make every missing directory of `path` inside the root; returns an O_PATH fd of it.
    A dangling symlink on the way is followed inside the root (its target is made)."""
    want = path
    for _ in range(_MAX_LINKS):
        got = _mkdir_walk(rootfd, want, mode, path)
        if isinstance(got, int):
            return got
        want = got
    raise OSError(errno.ELOOP, f"mkdir {path}: too many levels of symbolic links", path)


def _mkdir_walk(rootfd: int, path: str, mode: int, orig: str) -> int | str:
    """An fd of the made directory, or the in-root path to make instead of `path` when a
    dangling symlink stands in the way."""
    parts = [p for p in clean(path).split("/") if p]
    cur = sc.openat2(rootfd, ".", _DIR)
    try:
        for i, name in enumerate(parts):
            try:
                nxt = sc.openat2(rootfd, "/".join(parts[: i + 1]), _DIR, 0, _IN_ROOT)
            except FileNotFoundError:
                redirect = dangling(rootfd, cur, name)
                if redirect is not None:
                    os.close(cur)
                    return posixpath.join(redirect, *parts[i + 1:])
                nxt = _make_dir(cur, name, mode, orig)
            os.close(cur)
            cur = nxt
    except BaseException:
        os.close(cur)
        raise
    return cur


def in_root_path(rootfd: int, fd: int) -> str:
    """The path of `fd` as seen from the root ("/a/b")."""
    root = os.readlink(fd_path(rootfd))
    here = os.readlink(fd_path(fd))
    if here == root:
        return "/"
    if root == "/":
        return here
    if not here.startswith(root + "/"):
        raise OSError(errno.EXDEV, f"{here} is not inside the root {root}", here)
    return here[len(root):]


def dangling(rootfd: int, parent: int, name: str) -> str | None:
    """If `name` under `parent` is a symlink (whose target is missing), the in-root path
    it points to; None otherwise."""
    try:
        target = os.readlink(name, dir_fd=parent)
    except OSError:
        return None
    if target.startswith("/"):
        return target
    return posixpath.join(in_root_path(rootfd, parent), target)


def _make_dir(parent: int, name: str, mode: int, path: str) -> int:
    try:
        os.mkdir(name, mode, dir_fd=parent)
    except FileExistsError:
        pass  # a racing creator, or a dangling symlink: the strict open below decides
    try:
        return sc.openat2(parent, name, _DIR | os.O_NOFOLLOW, 0, _STRICT)
    except OSError as e:
        raise OSError(e.errno, f"mkdir {path}: {strerror(e.errno)} "
                      "(a dangling symlink or a non-directory is in the way)", path) from None


def split(path: str) -> tuple[str, str]:
    """("a/b", "c") for "/a/b/c"; the name is "" for the root itself."""
    rel = clean(path)
    head, _, name = rel.rpartition("/")
    return head, name


def ensure(rootfd: int, path: str, is_dir: bool, mode: int | None = None) -> int:
    """An O_PATH fd of `path` inside the root, made (dir or empty file) if it is missing."""
    try:
        return resolve(rootfd, path)
    except FileNotFoundError:
        pass
    if is_dir:
        return mkdir_all(rootfd, path, 0o755 if mode is None else mode)
    want = path
    for _ in range(_MAX_LINKS):
        head, name = split(want)
        parent = mkdir_all(rootfd, head)
        try:
            redirect = dangling(rootfd, parent, name)
            if redirect is None:
                return create_file(parent, name, 0o644 if mode is None else mode, path)
        finally:
            os.close(parent)
        want = redirect
    raise OSError(errno.ELOOP, f"{path}: too many levels of symbolic links", path)


def create_file(parent: int, name: str, mode: int, path: str) -> int:
    """Create an empty regular file `name` under the directory fd; an O_PATH fd of it."""
    try:
        fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode, dir_fd=parent)
        os.close(fd)
    except FileExistsError:
        pass
    return open_beneath(parent, name, path)


def open_beneath(parent: int, name: str, path: str, flags: int = os.O_PATH) -> int:
    """Open `name` directly under `parent`, refusing any symlink there."""
    try:
        return sc.openat2(parent, name, flags | os.O_NOFOLLOW, 0, _STRICT)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OSError(e.errno, f"{path}: is a symlink", path) from None
        raise


def open_parent(rootfd: int, path: str, create: bool = True) -> tuple[int, str]:
    """(fd of the resolved parent directory, last name) for `path` inside the root."""
    head, name = split(path)
    if not name:
        raise OSError(errno.EINVAL, f"{path}: is the root itself", path)
    if create:
        return mkdir_all(rootfd, head), name
    return sc.openat2(rootfd, head or ".", _DIR, 0, _IN_ROOT), name


def is_dir_fd(fd: int) -> bool:
    return stat.S_ISDIR(os.fstat(fd).st_mode)


def mount_on(fd: int, source: str | None, fstype: str | None, flags: int,
             data: str | None = None) -> None:
    """mount(2) onto the object `fd` refers to."""
    sc.mount(source, fd_path(fd), fstype, flags, data or None)
