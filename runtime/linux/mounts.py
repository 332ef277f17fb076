"""The init's mounts, before pivot_root: the rootfs bound onto itself, each planned mount by
kind (bind, filesystem; cgroup ones in cgroupmounts.py, tmpfs copy-up in copyup.py), then
/dev.

Runs in the init, already in its own mount namespace: no imports inside functions, no
logging, no threads. Every destination is resolved inside the root with
openat2(RESOLVE_IN_ROOT) and mounted onto through its fd (pathsafe), so no symlink in the
rootfs can make us mount on the host.
"""

from __future__ import annotations

import errno
import os
import stat

from runtime.errors import OnggiError, reason  # reason: pivot and hostmounts take it here
from runtime.linux import devices, idmap, mountinfo, mountopts, pathsafe
from runtime.linux import syscalls as sc
from runtime.linux.cgroupmounts import bind_host, mount_cgroup
from runtime.linux.copyup import tmpfs_copyup
from runtime.linux.mountopts import TOP_FLAGS, attrs_of

TYPE_CHECKING = False  # not `typing`: create imports nothing it does not need
if TYPE_CHECKING:
    from runtime.linux.mountplan import MountPlan, Plan

class RootfsContext:
    """What the init keeps between the mount steps: before pivot, an fd of the rootfs mount
    (from the self-bind); after it, an fd of the new "/" for the in-root lookups of finish."""

    def __init__(self, rootfd: int) -> None:
        self.rootfd = rootfd
        self.cur_root = -1

    def root(self) -> int:
        """An fd of the current "/" (after pivot), opened once."""
        if self.cur_root < 0:
            self.cur_root = pathsafe.open_root("/")
        return self.cur_root

    def forget_root(self) -> None:
        if self.cur_root >= 0:
            os.close(self.cur_root)
            self.cur_root = -1

    def close(self) -> None:
        if self.rootfd >= 0:
            os.close(self.rootfd)
            self.rootfd = -1
        self.forget_root()


def mount_all(cfg, plan: Plan, anchor_fd: int = -1) -> RootfsContext:
    """Before pivot: "/" non-propagating, rootfs bound onto itself, config mounts in order,
    then /dev (devices, links, ptmx). Without a mount namespace of our own (`anchor_fd`, the
    rootfs bind the parent made, see runtime.linux.hostmounts) the host's propagation is
    left alone and everything is mounted under the anchor."""
    root = cfg.root_path
    if plan.host_mntns:
        rootfd = anchor_fd
    else:
        # nothing we mount may propagate back to the host
        sc.mount(None, "/", None, plan.start_propagation)
        if plan.start_propagation & sc.MS_SHARED:
            _unshare_parent(root)
        rootfd = bind_root(root)
    ctx = RootfsContext(rootfd)
    for m in plan.mounts:
        try:
            _mount(ctx.rootfd, m, plan)
            if m.destination == "/":
                # A mount on the container's root (allowed, as runc 1.1 does) covers the
                # rootfs: go on from its top, or later lookups and pivot_root would reach
                # the mount under it.
                _reopen_root(ctx, root)
            _after(ctx.rootfd, m)
        except OSError as e:
            raise OnggiError(f"{m.where}: mount {m.source or m.fstype} on {m.destination}: "
                             f"{reason(e)}") from None
    if plan.setup_dev:
        setup_dev(ctx.rootfd, plan)
    return ctx


def _reopen_root(ctx: RootfsContext, root: str) -> None:
    fd = pathsafe.open_root(root)  # the path reaches the top mount on it
    os.close(ctx.rootfd)
    ctx.rootfd = fd


def bind_root(root: str) -> int:
    """Bind the rootfs onto itself (pivot_root needs a mount); returns an fd of the new
    mount's root (the attached tree), so nothing later looks the path up again."""
    root_fd = pathsafe.open_root(root)
    try:
        tree = sc.open_tree(root_fd, "", sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC
                            | sc.AT_RECURSIVE | sc.AT_EMPTY_PATH)
        try:
            sc.move_mount(tree, "", root_fd, "",
                          sc.MOVE_MOUNT_F_EMPTY_PATH | sc.MOVE_MOUNT_T_EMPTY_PATH)
        except BaseException:
            os.close(tree)
            raise
    finally:
        os.close(root_fd)
    return tree


def _unshare_parent(root: str) -> None:
    """pivot_root refuses a shared parent of the new root: make the mount the rootfs sits on
    a slave (it keeps receiving from the host, as "shared" wants, but stops sending). That
    is the rootfs itself when it is a mount point (containerd's overlay): the topmost mount
    at the deepest point on the way, as runc's rootfsParentMountPrivate finds it."""
    best = None
    for m in mountinfo.read():
        p = m.point
        if root == p or root.startswith(p.rstrip("/") + "/"):
            if best is None or len(p) >= len(best):  # later lines are mounted on top
                best = p
    if best:
        sc.mount(None, best, None, sc.MS_SLAVE)


def _mount(rootfd: int, m: MountPlan, plan: Plan) -> None:
    if m.bind and m.opts.flags & sc.MS_REMOUNT:
        _remount_bind(rootfd, m, plan)
    elif m.bind:
        _mount_bind(rootfd, m, plan)
    elif m.fstype in ("cgroup", "cgroup2"):
        mount_cgroup(rootfd, m, plan)
    else:
        _mount_fs(rootfd, m)


def _dest(rootfd: int, m: MountPlan, is_dir: bool) -> int:
    if m.fstype in ("proc", "sysfs"):
        # runc: never mount these through a symlink or onto a non-directory
        fd = pathsafe.ensure(rootfd, m.destination, True) if not _lexists(rootfd, m) else \
            pathsafe.resolve(rootfd, m.destination, nofollow=True)
        if not pathsafe.is_dir_fd(fd):
            os.close(fd)
            raise OSError(errno.ENOTDIR, f"{m.fstype} must be mounted on an ordinary directory",
                          m.destination)
        return fd
    return pathsafe.ensure(rootfd, m.destination, is_dir)


def _lexists(rootfd: int, m: MountPlan) -> bool:
    try:
        fd = pathsafe.resolve(rootfd, m.destination, nofollow=True)
    except FileNotFoundError:
        return False
    os.close(fd)
    return True


def _mount_fs(rootfd: int, m: MountPlan) -> None:
    existed = m.fstype == "tmpfs" and pathsafe.exists(rootfd, m.destination)
    fd = _dest(rootfd, m, True)
    try:
        flags = m.opts.flags & ~TOP_FLAGS
        src = m.source or m.fstype
        data = m.opts.data
        if existed:
            data = _tmpfs_mode(fd, data)
        if m.opts.tmpcopyup:
            tmpfs_copyup(rootfd, fd, m, flags, data)
            return
        try:
            pathsafe.mount_on(fd, src, m.fstype, flags | (m.opts.flags & sc.MS_REMOUNT),
                              data)
        except PermissionError:
            if m.fstype == "sysfs":
                _sysfs_fallback(fd, flags)
            elif m.fstype == "mqueue" and os.path.isdir("/dev/mqueue"):
                # no ipc namespace of our own: the host's queues, as runc does
                bind_host(fd, "/dev/mqueue", flags)
            else:
                raise
    finally:
        os.close(fd)


def _tmpfs_mode(fd: int, data: str | None) -> str | None:
    """A tmpfs on an existing directory starts with that directory's mode (runc >= 1.2):
    mode=%04o goes first, so a mode= in the options still wins."""
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode):
        return data
    mode = f"mode={stat.S_IMODE(st.st_mode):04o}"
    return f"{mode},{data}" if data else mode


def _sysfs_fallback(fd: int, flags: int) -> None:
    """No new network namespace (so no sysfs of our own): the host's, read-only."""
    tree = sc.open_tree(-100, "/sys", sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC
                        | sc.AT_RECURSIVE)
    try:
        attr = sc.MountAttr(sc.MOUNT_ATTR_RDONLY | attrs_of(flags)[0], 0, 0, 0)
        sc.mount_setattr(tree, "", sc.AT_EMPTY_PATH | sc.AT_RECURSIVE, attr)
        sc.move_mount(tree, "", fd, "", sc.MOVE_MOUNT_F_EMPTY_PATH | sc.MOVE_MOUNT_T_EMPTY_PATH)
    finally:
        os.close(tree)


def prepare_tree(m: MountPlan, userns: bool) -> int:
    """A detached clone of the bind source with its flags, recursive attrs and idmap already
    set: nothing is ever visible rw or unmapped on the destination."""
    o = m.opts
    flags = sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC
    if o.recursive_bind or o.ridmap:
        flags |= sc.AT_RECURSIVE
    tree = sc.open_tree(-100, m.source, flags)
    try:
        set_, clr = attrs_of(o.flags)
        clr |= attrs_of(o.clear)[0]
        if o.clear & (sc.MS_NOATIME | sc.MS_STRICTATIME) and not clr & sc.MOUNT_ATTR__ATIME:
            clr |= sc.MOUNT_ATTR__ATIME  # "atime"/"nostrictatime": back to relatime
        clr &= ~set_ | sc.MOUNT_ATTR__ATIME
        if set_ or clr:
            _setattr_locked(tree, 0, set_, clr, userns)
        if o.attr_set or o.attr_clr:
            _setattr_locked(tree, sc.AT_RECURSIVE, o.attr_set, o.attr_clr, userns)
        if o.idmap or o.ridmap:
            idmap.apply(tree, m.uid_mappings, m.gid_mappings, recursive=o.ridmap)
    except BaseException:
        os.close(tree)
        raise
    return tree


def _mount_bind(rootfd: int, m: MountPlan, plan: Plan) -> None:
    """Attach the prepared clone of the source onto the destination fd."""
    tree = m.tree if m.tree >= 0 else prepare_tree(m, plan.userns)
    try:
        dest = pathsafe.ensure(rootfd, m.destination, pathsafe.is_dir_fd(tree))
        try:
            sc.move_mount(tree, "", dest, "",
                          sc.MOVE_MOUNT_F_EMPTY_PATH | sc.MOVE_MOUNT_T_EMPTY_PATH)
        finally:
            os.close(dest)
    finally:
        os.close(tree)


def _remount_bind(rootfd: int, m: MountPlan, plan: Plan) -> None:
    """"bind,remount": change the flags of the mount already at the destination."""
    fd = pathsafe.resolve(rootfd, m.destination)
    try:
        set_, clr = attrs_of(m.opts.flags)
        clr |= attrs_of(m.opts.clear)[0]
        _setattr_locked(fd, 0, set_, clr & ~set_ | (clr & sc.MOUNT_ATTR__ATIME), plan.userns)
    finally:
        os.close(fd)


def _setattr_locked(fd: int, rec: int, set_: int, clr: int, userns: bool) -> None:
    """mount_setattr; in a user namespace a flag the host locked (e.g. nosuid) stays set,
    as runc keeps locked flags on a bind remount."""
    attr = sc.MountAttr(set_, clr, 0, 0)
    try:
        sc.mount_setattr(fd, "", sc.AT_EMPTY_PATH | rec, attr)
    except PermissionError:
        if not userns:
            raise
        have = os.fstatvfs(fd).f_flag
        locked = 0
        for ms, a in mountopts.MS_TO_ATTR.items():
            if have & ms:
                locked |= a
        # the atime mode is locked as a whole: keep the source's
        set_, clr = set_ & ~sc.MOUNT_ATTR__ATIME, clr & ~sc.MOUNT_ATTR__ATIME
        attr = sc.MountAttr(set_ | locked, clr & ~locked, 0, 0)
        if attr.attr_set or attr.attr_clr:
            sc.mount_setattr(fd, "", sc.AT_EMPTY_PATH | rec, attr)


def _after(rootfd: int, m: MountPlan) -> None:
    """Recursive attrs and propagation, on the mount now at the destination."""
    o = m.opts
    need_attrs = (o.attr_set or o.attr_clr) and not m.bind
    if not need_attrs and not o.propagation:
        return
    fd = pathsafe.resolve(rootfd, m.destination)
    try:
        if need_attrs:
            sc.mount_setattr(fd, "", sc.AT_EMPTY_PATH | sc.AT_RECURSIVE,
                             sc.MountAttr(o.attr_set, o.attr_clr, 0, 0))
        for p in o.propagation:
            sc.mount(None, pathsafe.fd_path(fd), None, p)
    finally:
        os.close(fd)


def setup_dev(rootfd: int, plan: Plan) -> None:
    """Devices, /dev symlinks and /dev/ptmx (runc's createDevices/setupDevSymlinks/setupPtmx)."""
    old = os.umask(0)
    try:
        for node in plan.devices:
            try:
                devices.create(rootfd, node, plan.userns)
            except OSError as e:
                raise OnggiError(f"linux.devices: {node.path}: {reason(e)}") from None
    finally:
        os.umask(old)
    try:
        devices.make_links(rootfd, "/dev", plan.kcore)
        devices.make_ptmx(rootfd)
    except OSError as e:
        raise OnggiError(f"/dev symlinks: {reason(e)}") from None


