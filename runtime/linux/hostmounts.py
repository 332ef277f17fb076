"""Containers without a mount namespace: their mounts are in the host's mount table.

The spec allows a config without a `mount` namespace: the container then shares the
runtime's. runc and crun mount the config's mounts on the host and leave them all behind
after delete (and runc makes the host's "/" a slave first). onggi instead:

- makes one anchor in the parent, before the fork: a recursive bind of the rootfs onto
  itself (open_tree + move_mount). The init makes every mount of the config under it and
  chroots into it; nothing else on the host is touched, propagation included;
- records the anchor's mount id and path in state.json;
- on delete, and on every failed create, detaches the anchor (MNT_DETACH takes the whole
  tree under it), so the host's mount table is exactly as it was before the create.

If the rootfs's parent mount is shared, the anchor and the mounts under it propagate to its
peers like any mount made there, and so does their unmount: the anchor's own propagation is
never changed, so the peers are cleaned up too.
"""

from __future__ import annotations

import os

from runtime.errors import OnggiError, reason, strerror
from runtime.linux import mountinfo
from runtime.linux import syscalls as sc
from runtime.record import Record

UMOUNT_NOFOLLOW = 8


class Anchor(Record):
    path: str  # the mount point as the host's mountinfo shows it
    mnt_id: int

    def to_state(self) -> dict:
        return {"path": self.path, "mnt_id": self.mnt_id}


def mount_id(fd: int) -> int:
    """The id of the mount `fd` is on (/proc/self/fdinfo's mnt_id)."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise OnggiError(f"fdinfo of fd {fd} has no mnt_id")


def make_anchor(root: str) -> tuple[int, Anchor]:
    """Bind the rootfs onto itself in the host's mount namespace; returns an fd of the new
    mount (the init's root) and where it is."""
    from runtime.linux.mounts import bind_root

    try:
        fd = bind_root(root)
    except OSError as e:
        raise OnggiError(f"root.path: bind {root} onto itself: {reason(e)}") from None
    try:
        mid = mount_id(fd)
        point = next((m.point for m in mountinfo.read() if m.id == mid), None)
        if point is None:
            raise OnggiError(f"root.path: the bind of {root} is not in the mount table")
    except BaseException:
        os.close(fd)
        release(Anchor(os.path.realpath(root), -1), any_top=True)
        raise
    return fd, Anchor(point, mid)


def from_state(d: dict) -> Anchor:
    return Anchor(d["path"], d["mnt_id"])


def release(a: Anchor, any_top: bool = False) -> None:
    """Detach the anchor and everything under it. Only while mountinfo still shows that
    mount at that path (a later mount stacked on it at the same point goes first); a
    mount that is already gone is not an error. `any_top`: the id is unknown (the anchor
    was just made): detach the top mount at the path once."""
    if any_top:
        sc.umount2(a.path, sc.MNT_DETACH | UMOUNT_NOFOLLOW)
        return
    for _ in range(64):
        if not any(m.id == a.mnt_id and m.point == a.path for m in mountinfo.read()):
            return
        try:
            sc.umount2(a.path, sc.MNT_DETACH | UMOUNT_NOFOLLOW)
        except OSError as e:
            raise OnggiError(f"unmounting the container's mounts at {a.path}: "
                             f"{strerror(e.errno)}") from None
    raise OnggiError(f"{a.path}: mounts keep appearing over the container's root")
