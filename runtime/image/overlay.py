"""overlayfs mounts: read-only snapshots below, one writable upper dir per bundle."""

from __future__ import annotations

import os

from runtime.errors import OnggiError
from runtime.linux import syscalls


def mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    try:
        syscalls.mount(source, target, fstype, flags, data)
    except OSError as e:
        raise OnggiError(f"mount {fstype} on {target}: {os.strerror(e.errno).lower()}") from None


def umount(target: str, detach: bool = False) -> None:
    try:
        syscalls.umount2(target, syscalls.MNT_DETACH if detach else 0)
    except OSError as e:
        raise OnggiError(f"unmount {target}: {os.strerror(e.errno).lower()}") from None


def mount_overlay(lowers: list[str], upper: str | None, work: str | None, target: str, cwd: str) -> None:
    """Mount with every dir relative to `cwd` (the snapshots dir), so long stores and many
    layers still fit the one-page mount data, and no store path needs escaping.
    `lowers` is top-most first."""
    for d in [*lowers, upper or "", work or ""]:
        if any(c in d for c in ",:\\"):
            raise OnggiError(f"overlay: {d!r}: ',', ':' and '\\' cannot be used in a layer dir name")
    if not lowers:
        raise OnggiError("overlay: an image needs at least one layer")
    opts = "lowerdir=" + ":".join(lowers)
    if upper and work:
        opts += f",upperdir={upper},workdir={work}"
    elif len(lowers) == 1:
        # overlayfs wants two lowers without an upper; an empty one costs nothing.
        empty = os.path.join(cwd, ".empty")
        os.makedirs(empty, exist_ok=True)
        opts += ":.empty"
    opts += ",index=off"
    if len(opts) > 4000:
        raise OnggiError(f"overlay: {len(lowers)} layers do not fit one mount's options")
    old = os.open(".", os.O_PATH | os.O_CLOEXEC)
    try:
        os.chdir(cwd)
        mount("overlay", target, "overlay", 0 if upper else 1, opts)  # 1 = MS_RDONLY
    finally:
        os.fchdir(old)
        os.close(old)


def is_mountpoint(path: str) -> bool:
    from runtime.linux import mountinfo

    return os.path.realpath(path) in mountinfo.points()
