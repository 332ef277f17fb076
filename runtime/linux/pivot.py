"""After the mounts: pivot_root (or --no-pivot's move and chroot), then readonly and masked
paths, root.readonly and rootfsPropagation; and the console bind. Runs in the init.
"""

from __future__ import annotations

import errno
import os
import stat

from runtime.errors import OnggiError
from runtime.linux import mountinfo, pathsafe
from runtime.linux import syscalls as sc
from runtime.linux.mounts import RootfsContext, reason


def pivot(ctx: RootfsContext, cfg, no_pivot: bool) -> None:
    """Make the rootfs "/": pivot_root and detach the old root, or with --no-pivot move the
    rootfs onto "/" and chroot. Afterwards the cwd is "/" inside the container."""
    rootfd = ctx.rootfd
    try:
        if cfg.linux.ns("mount") is None:
            _chroot(rootfd)  # the host's mount namespace: nothing to pivot or detach
        elif no_pivot:
            _move_root(rootfd, cfg.root_path)
        else:
            _pivot_root(rootfd)
    except OSError as e:
        op = "move the rootfs onto / (--no-pivot)" if no_pivot else "pivot_root"
        raise OnggiError(f"{op} {cfg.root_path}: {reason(e)}") from None
    finally:
        ctx.close()


def _pivot_root(rootfd: int) -> None:
    # pivot_root refuses a shared old root; nothing may propagate from here anyway
    sc.mount(None, "/", None, sc.MS_SLAVE)
    oldroot = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(rootfd)
        # pivot_root(".", ".") stacks the old root on top of the new one (no put_old dir)
        sc.pivot_root(".", ".")
        os.fchdir(oldroot)
        # keep the unmount from propagating to the host's mounts
        sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
        sc.umount2(".", sc.MNT_DETACH)
    finally:
        os.close(oldroot)
    os.chdir("/")


def _chroot(rootfd: int) -> None:
    os.fchdir(rootfd)
    os.chroot(".")
    os.chdir("/")


def _move_root(rootfd: int, root: str) -> None:
    _drop_host_mounts(root)
    # MS_MOVE, like pivot_root, refuses a move out of a shared parent (made a slave above)
    sc.mount(None, "/", None, sc.MS_SLAVE)
    os.fchdir(rootfd)
    sc.mount(".", "/", None, sc.MS_MOVE)
    os.chroot(".")
    os.chdir("/")


def _drop_host_mounts(root: str) -> None:
    """--no-pivot leaves the old root under the chroot: detach every mount of it that is
    neither the rootfs (or under it) nor on the way to it, as runc's msMoveRoot does.

    No unmount may reach the host. An unmount propagates to the peers of the unmounted
    mount's *parent* when that parent is shared (systemd makes "/" and everything under it
    shared, and so does rootfsPropagation shared/rshared here), whatever the propagation of
    the mount itself. So first every parent involved stops sending: the mounts on the way to
    the rootfs each become a slave (not recursively: the rootfs and the config's mounts in
    it keep their own propagation), and each mount to be dropped becomes a slave with all
    below it. They still receive from the host; they send nothing. A mount covered by
    another at the same point cannot be reached by its path: if it stays shared, the mounts
    on it stay too (the chroot hides them), and so does everything it hangs from."""
    def dropped(p: str) -> bool:
        inside = p == root or p.startswith(root.rstrip("/") + "/")
        return not inside and not root.startswith(p.rstrip("/") + "/")

    mounts = mountinfo.read()
    for p in sorted({m.point for m in mounts if not dropped(m.point)
                     and root.startswith(m.point.rstrip("/") + "/")}, key=len):
        sc.mount(None, p, None, sc.MS_SLAVE)
    for p in sorted({m.point for m in mounts if dropped(m.point)}, key=lambda x: x.count("/")):
        try:
            sc.mount(None, p, None, sc.MS_SLAVE | sc.MS_REC)
        except OSError:
            pass  # covered, or gone
    mounts = mountinfo.read()
    by_id = {m.id: m for m in mounts}
    keep: set[int] = set()
    for m in mounts:
        parent = by_id.get(m.parent)
        if dropped(m.point) and parent is not None and _shared(parent):
            cur: mountinfo.Mount | None = m  # its unmount would propagate: it stays,
            while cur is not None and dropped(cur.point) and cur.id not in keep:
                keep.add(cur.id)  # and so does every mount whose unmount takes it along
                cur = by_id.get(cur.parent)
    # deepest first; of mounts stacked at one point the upper one (later in mountinfo) first
    order = [(m.point.count("/"), i, m.point) for i, m in enumerate(mounts)
             if dropped(m.point) and m.id not in keep]
    for _, _, p in sorted(order, reverse=True):
        try:
            sc.umount2(p, sc.MNT_DETACH)
        except OSError:
            pass  # already gone with its parent, or busy: the chroot still hides it


def _shared(m: mountinfo.Mount) -> bool:
    return any(o.startswith("shared:") for o in m.optional)


def finish(ctx: RootfsContext, cfg, plan) -> None:
    """After pivot: readonly paths, masked paths, root.readonly, then rootfsPropagation on
    "/": "slave" keeps receiving the host's mounts under the rootfs, "private" and
    "unbindable" receive nothing, "shared" makes "/" shared (a bind of "/" sees later
    mounts) while still receiving from the host. Nothing ever propagates to the host."""
    lx = cfg.linux
    for m in plan.mounts:
        if m.ro_later:
            _readonly_mount(ctx, m)
    for p in lx.readonly_paths:
        readonly_path(ctx, p)
    for p in lx.masked_paths:
        mask_path(ctx, p, plan.mount_label)
    if cfg.root_readonly:
        _remount_ro(ctx, "/")
    if plan.final_propagation is not None:
        try:
            sc.mount(None, "/", None, plan.final_propagation)
        except OSError as e:
            raise OnggiError(f"linux.rootfsPropagation: {reason(e)}") from None
    ctx.forget_root()


def bind_console(slave_fd: int) -> None:
    """After pivot, with a terminal: bind the pty slave over /dev/console, as runc does.
    The mount point is made inside the root through fds (a container that made
    /dev/console a symlink cannot redirect the bind, CVE-2025-52565), and the source is the
    slave's own fd, never a path in the container's devpts."""
    try:
        st = os.fstat(slave_fd)
        if not stat.S_ISCHR(st.st_mode):
            raise OSError(errno.ENOTTY, "the console is not a character device", "/dev/console")
        root = pathsafe.open_root("/")
        try:
            parent, name = pathsafe.open_parent(root, "/dev/console")
        finally:
            os.close(root)
        try:
            try:
                here = os.stat(name, dir_fd=parent, follow_symlinks=False)
                if not stat.S_ISREG(here.st_mode):
                    os.unlink(name, dir_fd=parent)
            except FileNotFoundError:
                pass
            dest = pathsafe.create_file(parent, name, 0o600, "/dev/console")
        finally:
            os.close(parent)
        try:
            tree = sc.open_tree(slave_fd, "", sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC
                                | sc.AT_EMPTY_PATH)
            try:
                sc.move_mount(tree, "", dest, "",
                              sc.MOVE_MOUNT_F_EMPTY_PATH | sc.MOVE_MOUNT_T_EMPTY_PATH)
            finally:
                os.close(tree)
        finally:
            os.close(dest)
    except OSError as e:
        raise OnggiError(f"/dev/console: bind the terminal: {reason(e)}") from None


def _open_in_root(ctx: RootfsContext, path: str) -> int | None:
    """An O_PATH fd of `path` in the current root (after pivot), or None when missing."""
    try:
        return pathsafe.resolve(ctx.root(), path)
    except FileNotFoundError:
        return None


def readonly_path(ctx: RootfsContext, path: str) -> None:
    """A read-only bind of `path` over itself (recursive); a missing path is skipped."""
    fd = _open_in_root(ctx, path)
    if fd is None:
        return
    try:
        tree = sc.open_tree(fd, "", sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC
                            | sc.AT_RECURSIVE | sc.AT_EMPTY_PATH)
        try:
            sc.mount_setattr(tree, "", sc.AT_EMPTY_PATH | sc.AT_RECURSIVE,
                             sc.MountAttr(sc.MOUNT_ATTR_RDONLY, 0, 0, 0))
            sc.move_mount(tree, "", fd, "",
                          sc.MOVE_MOUNT_F_EMPTY_PATH | sc.MOVE_MOUNT_T_EMPTY_PATH)
        finally:
            os.close(tree)
    except OSError as e:
        raise OnggiError(f"readonlyPaths: {path}: {reason(e)}") from None
    finally:
        os.close(fd)


def _devnull(ctx: RootfsContext) -> int:
    """The container's /dev/null, checked to really be the null device (CVE-2025-31133: a
    container that swaps it for a symlink must not get another file bound over a path)."""
    fd = pathsafe.resolve(ctx.root(), "/dev/null", nofollow=True)
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
        os.close(fd)
        raise OSError(errno.EINVAL, "/dev/null is not the null device (1:3)", "/dev/null")
    return fd


def mask_path(ctx: RootfsContext, path: str, label: str | None = None) -> None:
    """Cover a file with /dev/null, a directory with a read-only tmpfs; missing: skipped."""
    fd = _open_in_root(ctx, path)
    if fd is None:
        return
    try:
        if pathsafe.is_dir_fd(fd):
            data = f'context="{label}"' if label else None
            tmp = sc.fsopen_mount("tmpfs", data, sc.MOUNT_ATTR_RDONLY)
        else:
            null = _devnull(ctx)
            try:
                tmp = sc.open_tree(null, "", sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC
                                   | sc.AT_EMPTY_PATH)
            finally:
                os.close(null)
        try:
            sc.move_mount(tmp, "", fd, "",
                          sc.MOVE_MOUNT_F_EMPTY_PATH | sc.MOVE_MOUNT_T_EMPTY_PATH)
        finally:
            os.close(tmp)
    except OSError as e:
        raise OnggiError(f"maskedPaths: {path}: {reason(e)}") from None
    finally:
        os.close(fd)


def _readonly_mount(ctx: RootfsContext, m) -> None:
    """The "ro" of a tmpfs or /dev mount, made once what lies under it is mounted (runc's
    finalizeRootfs): that mount alone, not the ones under it."""
    fd = pathsafe.resolve(ctx.root(), m.destination)
    try:
        sc.mount_setattr(fd, "", sc.AT_EMPTY_PATH, sc.MountAttr(sc.MOUNT_ATTR_RDONLY, 0, 0, 0))
    except OSError as e:
        raise OnggiError(f"{m.where}: remount {m.destination} read-only: {reason(e)}") from None
    finally:
        os.close(fd)


def _remount_ro(ctx: RootfsContext, path: str) -> None:
    """root.readonly: only the root mount itself; mounts under it keep their own flags."""
    fd = pathsafe.resolve(ctx.root(), path)
    try:
        try:
            sc.mount_setattr(fd, "", sc.AT_EMPTY_PATH,
                             sc.MountAttr(sc.MOUNT_ATTR_RDONLY, 0, 0, 0))
        except PermissionError:
            # locked flags in a user namespace: keep them and add rdonly (runc's fallback)
            have = os.fstatvfs(fd).f_flag
            sc.mount(None, pathsafe.fd_path(fd), None,
                     sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY | (have & 0x3C0E))
    except OSError as e:
        raise OnggiError(f"root.readonly: remount / read-only: {reason(e)}") from None
    finally:
        os.close(fd)
    ctx.forget_root()
