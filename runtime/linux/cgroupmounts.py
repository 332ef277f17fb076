"""Mounts of type cgroup and cgroup2 in the container: a cgroup2 mount, or for v1 a tmpfs
with one directory per host hierarchy (and the cpu,cpuacct style links); without a cgroup
namespace of its own, the container's cgroup of each hierarchy is bound from the host, as
runc does.

Runs in the init (its own mount namespace): no imports inside functions, no logging.
"""

from __future__ import annotations

import errno
import os

from runtime.cgroups import hierarchy
from runtime.linux import pathsafe
from runtime.linux import syscalls as sc
from runtime.linux.mountopts import TOP_FLAGS, attrs_of

TYPE_CHECKING = False  # not `typing`: create imports nothing it does not need
if TYPE_CHECKING:
    from runtime.cgroups.hierarchy import Hierarchy
    from runtime.linux.mountplan import MountPlan, Plan


def mount_cgroup(rootfd: int, m: MountPlan, plan: Plan) -> None:
    flags = m.opts.flags & ~TOP_FLAGS
    unified = next((h for h in m.cgroups if h.name == ""), None)
    if m.fstype == "cgroup2" or unified is not None:
        # a pure v2 host, or an explicit cgroup2 mount (on a hybrid host: its unified part)
        v2 = unified or next((h for h in m.cgroups if h.fstype == "cgroup2"), None)
        _mount_cgroup2(rootfd, m.destination, flags, plan, v2)
        return
    # v1 (or hybrid): a tmpfs with one directory per hierarchy
    fd = pathsafe.ensure(rootfd, m.destination, True)
    try:
        pathsafe.mount_on(fd, "tmpfs", "tmpfs", (flags & ~sc.MS_RDONLY), "mode=755")
    finally:
        os.close(fd)
    own = hierarchy.own()
    for h in m.cgroups:
        path = m.destination + "/" + h.name
        if h.fstype == "cgroup2":
            _mount_cgroup2(rootfd, path, flags, plan, h, own.get(""))
            continue
        sub = pathsafe.mkdir_all(rootfd, path)
        try:
            _mount_v1(sub, h, flags, plan, own)
        finally:
            os.close(sub)
        for link in h.links:
            parent = pathsafe.mkdir_all(rootfd, m.destination)
            try:
                try:
                    os.symlink(h.name, link, dir_fd=parent)
                except FileExistsError:
                    pass
            finally:
                os.close(parent)
    if flags & sc.MS_RDONLY:
        fd = pathsafe.resolve(rootfd, m.destination)
        try:
            sc.mount(None, pathsafe.fd_path(fd), None,
                     sc.MS_REMOUNT | sc.MS_BIND | (flags & ~sc.MS_REMOUNT))
        finally:
            os.close(fd)


def _mount_v1(fd: int, h: Hierarchy, flags: int, plan: Plan, own: dict) -> None:
    if plan.cgroupns:
        pathsafe.mount_on(fd, "cgroup", "cgroup", flags, h.data)
        return
    # without a cgroup namespace: bind our own cgroup of that hierarchy from the host
    path = own.get(h.data) or own.get(h.name) or "/"
    bind_host(fd, h.host_path + path, flags)


def bind_host(fd: int, host: str, flags: int) -> None:
    tree = sc.open_tree(-100, host, sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC)
    try:
        set_, clr = attrs_of(flags)
        if set_:
            sc.mount_setattr(tree, "", sc.AT_EMPTY_PATH, sc.MountAttr(set_, clr, 0, 0))
        sc.move_mount(tree, "", fd, "", sc.MOVE_MOUNT_F_EMPTY_PATH | sc.MOVE_MOUNT_T_EMPTY_PATH)
    finally:
        os.close(tree)


def _mount_cgroup2(rootfd: int, dest: str, flags: int, plan: Plan,
                   h: Hierarchy | None, own: str | None = None) -> None:
    fd = pathsafe.ensure(rootfd, dest, True)
    try:
        # a hybrid host's unified tree beside the v1 binds (own given) is bound like them
        if own is None or plan.cgroupns:
            try:
                pathsafe.mount_on(fd, "cgroup2", "cgroup2", flags, None)
                return
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EBUSY) or h is None:
                    raise
        # no cgroup namespace of our own: bind our cgroup from the host, like runc
        if own is None:
            own = hierarchy.own().get("", "/")
        bind_host(fd, h.host_path + own, flags)
    finally:
        os.close(fd)
