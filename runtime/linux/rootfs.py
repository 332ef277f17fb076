"""The container's filesystem: config mounts, /dev, pivot_root, masked/readonly paths.

`plan` runs in the parent before fork and turns every mount into flags and checked paths, so
the init only executes. `mount_all`, `pivot` and `finish` run in the init (already in its own
mount namespace): no imports inside functions, no logging, no threads. Every destination is
resolved inside the root with openat2(RESOLVE_IN_ROOT) and mounted onto through its fd
(pathsafe), so no symlink in the rootfs can make us mount on the host.
"""

from __future__ import annotations

import errno
import os
import stat

from runtime.errors import ConfigError, OnggiError
from runtime.linux import devices, idmap, mountopts, pathsafe, procfs
from runtime.linux import syscalls as sc
from runtime.linux.mountopts import Options
from runtime.record import Record

# ---------------------------------------------------------------- the plan (parent side)
# Records (runtime.record), not dataclasses: generated methods cost import time,
# and `create` pays for every millisecond.

_TOP_FLAGS = sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT  # not passed through to a new fs mount
_CGROUP_ROOT = "/sys/fs/cgroup"


class CgroupHierarchy(Record):
    """One host cgroup mount, to be recreated under the container's cgroup mount."""

    name: str  # directory name under the mount, e.g. "cpu,cpuacct", "unified"
    fstype: str  # cgroup or cgroup2
    data: str  # super options, e.g. "cpu,cpuacct" or "name=systemd"
    host_path: str  # where the host has it mounted
    links: tuple[str, ...] = ()  # "cpu" and "cpuacct" -> "cpu,cpuacct"


class MountPlan(Record):
    where: str  # "mounts[3]" for errors
    destination: str  # absolute and clean, inside the container
    fstype: str  # "bind" for bind mounts, else the filesystem type
    source: str | None  # absolute host path for binds
    opts: Options
    uid_mappings: tuple = ()
    gid_mappings: tuple = ()
    cgroups: tuple[CgroupHierarchy, ...] = ()
    tree: int = -1  # idmapped binds: the detached tree the parent prepared (an fd)

    @property
    def bind(self) -> bool:
        return self.fstype == "bind"


class Plan(Record):
    mounts: tuple[MountPlan, ...]
    setup_dev: bool  # /dev is a tmpfs or not mounted: make devices and links
    devices: tuple[devices.Node, ...]
    userns: bool  # mknod is refused: bind host nodes
    cgroupns: bool
    start_propagation: int  # MS_* for "/" before any mount
    final_propagation: int | None  # MS_* for "/" after pivot (rootfsPropagation)
    mount_label: str | None  # only when SELinux is enabled
    kcore: bool  # the host has /proc/kcore: make /dev/core
    notes: tuple[str, ...] = ()  # debug lines for the parent


def selinux_enabled() -> bool:
    return os.path.exists("/sys/fs/selinux/enforce")


def plan(cfg) -> Plan:
    """Check and convert every mount of `cfg` (a runtime.spec.Config); raises ConfigError."""
    lx = cfg.linux
    if lx.ns("mount") is None:
        # every mount below would land in the host's mount table
        raise ConfigError("linux.namespaces", "a mount namespace is required")
    notes: list[str] = []
    label = lx.mount_label
    if label and not selinux_enabled():
        notes.append(f"linux.mountLabel {label!r} ignored: SELinux is not enabled")
        label = None
    mounts = tuple(_plan_mount(cfg, i, m, label) for i, m in enumerate(cfg.mounts))
    # runc: a bind-mounted /dev is the user's own; anything else gets our devices and links
    setup_dev = not any(m.bind and m.destination == "/dev" for m in mounts)
    nodes = devices.merged(devices.from_spec(lx.devices))
    for i, d in enumerate(lx.devices):
        if d.type not in ("c", "b", "u", "p"):
            raise ConfigError(f"linux.devices[{i}].type", f"unknown device type {d.type!r}")
        if not pathsafe.clean(d.path):
            raise ConfigError(f"linux.devices[{i}].path", "cannot be the root")
    prop = lx.rootfs_propagation
    final = mountopts.PROPAGATION[prop] if prop else None
    start = sc.MS_REC | (sc.MS_SHARED if prop in ("shared", "rshared") else sc.MS_SLAVE)
    for i, p in enumerate(lx.masked_paths):
        _check_abs(p, f"linux.maskedPaths[{i}]")
    for i, p in enumerate(lx.readonly_paths):
        _check_abs(p, f"linux.readonlyPaths[{i}]")
    return Plan(
        mounts=_idmapped_trees(mounts),
        setup_dev=setup_dev,
        devices=nodes,
        userns=lx.ns("user") is not None,
        cgroupns=lx.ns("cgroup") is not None,
        start_propagation=start,
        final_propagation=final,
        mount_label=label,
        kcore=os.path.exists("/proc/kcore"),
        notes=tuple(notes),
    )


def _idmapped_trees(mounts: tuple[MountPlan, ...]) -> tuple[MountPlan, ...]:
    """MOUNT_ATTR_IDMAP needs the host's user namespace, so idmapped binds are prepared here,
    in the parent, as detached trees (fds the init inherits and only attaches)."""
    out: list[MountPlan] = []
    try:
        for m in mounts:
            if m.bind and (m.opts.idmap or m.opts.ridmap):
                try:
                    m = MountPlan(**{**m.__dict__, "tree": prepare_tree(m, userns=False)})
                except OSError as e:
                    raise ConfigError(f"{m.where}.options", f"idmapped mount of {m.source}: "
                                      f"{_reason(e)}") from None
            out.append(m)
    except BaseException:
        close_trees(out)
        raise
    return tuple(out)


def close_trees(mounts) -> None:
    """Close the parent's copies of prepared trees (after fork, or on an error)."""
    for m in mounts:
        if m.tree >= 0:
            try:
                os.close(m.tree)
            except OSError:
                pass


def _check_abs(path: str, where: str) -> None:
    if not path.startswith("/"):
        raise ConfigError(where, f"{path!r} must be an absolute path")


def _plan_mount(cfg, i: int, m, label: str | None) -> MountPlan:
    where = f"mounts[{i}]"
    opts = mountopts.parse(m.options)
    # spec 1.2: a relative destination is relative to the container's "/"
    dest = "/" + pathsafe.clean(m.destination)
    fstype = m.type or ""
    is_bind = opts.bind or fstype == "bind"
    if not fstype and not is_bind:
        raise ConfigError(f"{where}.type", "is required unless the mount is a bind mount")
    if dest == "/":
        raise ConfigError(f"{where}.destination", "cannot mount over the container's root")
    if (opts.idmap or opts.ridmap) and not is_bind:
        raise ConfigError(f"{where}.options", "idmap and ridmap need a bind mount")
    if (opts.idmap or opts.ridmap) and not (m.uid_mappings and m.gid_mappings):
        raise ConfigError(f"{where}.uidMappings", "idmap needs uidMappings and gidMappings")
    if opts.tmpcopyup and fstype != "tmpfs":
        raise ConfigError(f"{where}.options", "tmpcopyup works only on a tmpfs mount")
    data = opts.data
    if label and fstype not in ("proc", "sysfs", "cgroup", "cgroup2", "bind", "") \
            and not is_bind:
        data = ",".join(x for x in (data, f'context="{label}"') if x)
    if data != opts.data:
        opts = Options(**{**opts.__dict__, "data": data})
    if is_bind:
        if not m.source:
            raise ConfigError(f"{where}.source", "a bind mount needs a source")
        src = os.path.normpath(os.path.join(cfg.bundle, m.source))
        if not opts.bind:
            opts = Options(**{**opts.__dict__, "flags": opts.flags | sc.MS_BIND})
        # a source that appears later (a hook, an earlier mount) is looked at when mounting
        return MountPlan(where, dest, "bind", src, opts, m.uid_mappings, m.gid_mappings)
    cgroups: tuple[CgroupHierarchy, ...] = ()
    if fstype in ("cgroup", "cgroup2"):
        cgroups = host_cgroups()
        if "rw" not in m.options:  # read-only unless asked otherwise
            opts = Options(**{**opts.__dict__, "flags": opts.flags | sc.MS_RDONLY})
    return MountPlan(where, dest, fstype, m.source, opts, (), (), cgroups)


def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
        .replace("\\134", "\\")


def mountinfo(pid: str = "self") -> list[dict]:
    """/proc/<pid>/mountinfo as dicts: id, parent, root, point, opts, optional, fstype, source,
    super."""
    out = []
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            left, _, right = line.rstrip("\n").partition(" - ")
            a = left.split(" ")
            b = right.split(" ")
            out.append({
                "id": int(a[0]), "parent": int(a[1]), "dev": a[2], "root": _unescape(a[3]),
                "point": _unescape(a[4]), "opts": a[5], "optional": a[6:],
                "fstype": b[0], "source": _unescape(b[1]), "super": b[2] if len(b) > 2 else "",
            })
    return out


def host_cgroups() -> tuple[CgroupHierarchy, ...]:
    """The host's cgroup mounts under /sys/fs/cgroup (v1 hierarchies and/or the v2 one)."""
    out = []
    seen = set()
    for m in mountinfo():
        if m["fstype"] not in ("cgroup", "cgroup2") or m["root"] != "/":
            continue
        point = m["point"]
        if point != _CGROUP_ROOT and os.path.dirname(point) != _CGROUP_ROOT:
            continue
        if point in seen:
            continue
        seen.add(point)
        name = "" if point == _CGROUP_ROOT else os.path.basename(point)
        data = ""
        if m["fstype"] == "cgroup":
            keep = [o for o in m["super"].split(",")
                    if o not in ("rw", "ro") and not o.startswith("release_agent")]
            data = ",".join(keep)
        links = tuple(x for x in name.split(",") if x != name) if "," in name else ()
        out.append(CgroupHierarchy(name, m["fstype"], data, point, links))
    return tuple(out)


# ---------------------------------------------------------------- the init side


class _Ctx:
    """What the init keeps between steps: before pivot, an fd of the rootfs mount (from the
    self-bind); after it, an fd of "/" for the in-root lookups of finish."""

    rootfd: int = -1
    cur_root: int = -1


_ctx = _Ctx()


def mount_all(cfg, plan: Plan) -> None:
    """Before pivot: "/" non-propagating, rootfs bound onto itself, config mounts in order,
    then /dev (devices, links, ptmx)."""
    root = cfg.root_path
    # nothing we mount may propagate back to the host
    sc.mount(None, "/", None, plan.start_propagation)
    if plan.start_propagation & sc.MS_SHARED:
        _unshare_parent(root)
    _ctx.rootfd = rootfd = _bind_root(root)
    for m in plan.mounts:
        try:
            _mount(rootfd, m, plan)
        except OSError as e:
            raise OnggiError(f"{m.where}: mount {m.source or m.fstype} on {m.destination}: "
                             f"{_reason(e)}") from None
    if plan.setup_dev:
        setup_dev(rootfd, plan)


def _bind_root(root: str) -> int:
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


def _reason(e: OSError) -> str:
    """Our own message when we wrote one, else the errno's text in runc's lower case."""
    std = os.strerror(e.errno or 0)
    msg = e.strerror or std
    return std.lower() if std in msg else msg


def _unshare_parent(root: str) -> None:
    """pivot_root refuses a shared parent of the new root: make that mount a slave (it keeps
    receiving from the host, as "shared" wants, but stops sending)."""
    best = None
    for m in mountinfo():
        p = m["point"]
        if root == p or root.startswith(p.rstrip("/") + "/"):
            if root != p and (best is None or len(p) >= len(best)):
                best = p
    if best:
        sc.mount(None, best, None, sc.MS_SLAVE)


def _mount(rootfd: int, m: MountPlan, plan: Plan) -> None:
    if m.bind and m.opts.flags & sc.MS_REMOUNT:
        _remount_bind(rootfd, m, plan)
    elif m.bind:
        _mount_bind(rootfd, m, plan)
    elif m.fstype in ("cgroup", "cgroup2"):
        _mount_cgroup(rootfd, m, plan)
    else:
        _mount_fs(rootfd, m)
    _after(rootfd, m)


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
    fd = _dest(rootfd, m, True)
    try:
        flags = m.opts.flags & ~_TOP_FLAGS
        src = m.source or m.fstype
        if m.opts.tmpcopyup:
            _tmpfs_copyup(rootfd, fd, m, flags)
            return
        try:
            pathsafe.mount_on(fd, src, m.fstype, flags | (m.opts.flags & sc.MS_REMOUNT),
                              m.opts.data)
        except PermissionError:
            if m.fstype == "sysfs":
                _sysfs_fallback(fd, flags)
            elif m.fstype == "mqueue" and os.path.isdir("/dev/mqueue"):
                # no ipc namespace of our own: the host's queues, as runc does
                _bind_fallback(fd, "/dev/mqueue", flags)
            else:
                raise
    finally:
        os.close(fd)


def _sysfs_fallback(fd: int, flags: int) -> None:
    """No new network namespace (so no sysfs of our own): the host's, read-only."""
    tree = sc.open_tree(-100, "/sys", sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC
                        | sc.AT_RECURSIVE)
    try:
        attr = sc.MountAttr(sc.MOUNT_ATTR_RDONLY | _attrs_of(flags)[0], 0, 0, 0)
        sc.mount_setattr(tree, "", sc.AT_EMPTY_PATH | sc.AT_RECURSIVE, attr)
        sc.move_mount(tree, "", fd, "", sc.MOVE_MOUNT_F_EMPTY_PATH | sc.MOVE_MOUNT_T_EMPTY_PATH)
    finally:
        os.close(tree)


def _bind_fallback(fd: int, host: str, flags: int) -> None:
    tree = sc.open_tree(-100, host, sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC)
    try:
        set_, clr = _attrs_of(flags)
        if set_:
            sc.mount_setattr(tree, "", sc.AT_EMPTY_PATH, sc.MountAttr(set_, clr, 0, 0))
        sc.move_mount(tree, "", fd, "", sc.MOVE_MOUNT_F_EMPTY_PATH | sc.MOVE_MOUNT_T_EMPTY_PATH)
    finally:
        os.close(tree)


_SB_FLAGS = ((sc.MS_SYNCHRONOUS, "sync"), (sc.MS_DIRSYNC, "dirsync"),
             (sc.MS_LAZYTIME, "lazytime"), (sc.MS_MANDLOCK, "mand"), (sc.MS_SILENT, "silent"))


def _tmpfs_copyup(rootfd: int, fd: int, m: MountPlan, flags: int) -> None:
    """tmpcopyup: a fresh tmpfs that starts with what the image had at the destination."""
    # Superblock flags travel as fsconfig flags with the new mount API.
    sb = [name for bit, name in _SB_FLAGS if flags & bit]
    tmp = sc.fsopen_mount("tmpfs", ",".join(filter(None, [m.opts.data, *sb])))
    try:
        copy_tree(fd, tmp)
        # flags only now: the copy needed a writable tmpfs
        set_, clr = _attrs_of(flags)
        if set_ or clr:
            sc.mount_setattr(tmp, "", sc.AT_EMPTY_PATH, sc.MountAttr(set_, clr, 0, 0))
        sc.move_mount(tmp, "", fd, "", sc.MOVE_MOUNT_F_EMPTY_PATH | sc.MOVE_MOUNT_T_EMPTY_PATH)
    finally:
        os.close(tmp)


def copy_tree(src: int, dst: int) -> None:
    """Copy the directory `src` (an fd) into `dst` (an fd): files, dirs, links, nodes, with
    owner, mode and times; never following a symlink."""
    sfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=src)
    try:
        st = os.fstat(sfd)
        dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dst)
        try:
            os.chmod(dfd, stat.S_IMODE(st.st_mode))
            os.chown(dfd, st.st_uid, st.st_gid)
            _copy_entries(sfd, dfd)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def _copy_entries(sfd: int, dfd: int) -> None:
    for name in os.listdir(sfd):
        st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=dfd)
            s2 = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=sfd)
            d2 = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=dfd)
            try:
                _copy_entries(s2, d2)
            finally:
                os.close(s2)
                os.close(d2)
        elif stat.S_ISREG(mode):
            _copy_file(sfd, dfd, name)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=sfd), name, dir_fd=dfd)
        else:
            os.mknod(name, mode, st.st_rdev, dir_fd=dfd)
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False)
        if not stat.S_ISLNK(mode):
            os.chmod(name, stat.S_IMODE(mode), dir_fd=dfd)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)


def _copy_file(sfd: int, dfd: int, name: str) -> None:
    s = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
    try:
        d = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600, dir_fd=dfd)
        try:
            while True:
                chunk = os.read(s, 1 << 20)
                if not chunk:
                    break
                os.write(d, chunk)
        finally:
            os.close(d)
    finally:
        os.close(s)


def _attrs_of(flags: int) -> tuple[int, int]:
    """(attr_set, attr_clr) for mount_setattr from MS_* per-mount flags."""
    set_ = 0
    clr = 0
    for ms, attr in mountopts.MS_TO_ATTR.items():
        if flags & ms:
            set_ |= attr
    if flags & sc.MS_NOATIME:
        set_, clr = set_ | sc.MOUNT_ATTR_NOATIME, clr | sc.MOUNT_ATTR__ATIME
    elif flags & sc.MS_STRICTATIME:
        set_, clr = set_ | sc.MOUNT_ATTR_STRICTATIME, clr | sc.MOUNT_ATTR__ATIME
    elif flags & sc.MS_RELATIME:
        clr |= sc.MOUNT_ATTR__ATIME
    return set_, clr


def prepare_tree(m: MountPlan, userns: bool) -> int:
    """A detached clone of the bind source with its flags, recursive attrs and idmap already
    set: nothing is ever visible rw or unmapped on the destination."""
    o = m.opts
    flags = sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC
    if o.recursive_bind or o.ridmap:
        flags |= sc.AT_RECURSIVE
    tree = sc.open_tree(-100, m.source, flags)
    try:
        set_, clr = _attrs_of(o.flags)
        clr |= _attrs_of(o.clear)[0]
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
        set_, clr = _attrs_of(m.opts.flags)
        clr |= _attrs_of(m.opts.clear)[0]
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


def _mount_cgroup(rootfd: int, m: MountPlan, plan: Plan) -> None:
    flags = m.opts.flags & ~_TOP_FLAGS
    unified = next((h for h in m.cgroups if h.name == ""), None)
    if m.fstype == "cgroup2" or unified is not None:
        # a pure v2 host, or an explicit cgroup2 mount (on a hybrid host: its unified part)
        v2 = unified or next((h for h in m.cgroups if h.fstype == "cgroup2"), None)
        _mount_cgroup2(rootfd, m.destination, flags, plan, v2)
        return
    # v1 (or hybrid): a tmpfs with one directory per hierarchy
    fd = _dest(rootfd, m, True)
    try:
        pathsafe.mount_on(fd, "tmpfs", "tmpfs", (flags & ~sc.MS_RDONLY), "mode=755")
    finally:
        os.close(fd)
    own = _own_cgroups()
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


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per hierarchy (key: its controllers or name=..., "" for
    v2), from /proc/self/cgroup."""
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrl, path = line.rstrip("\n").split(":", 2)
            out[ctrl] = path
    return out


def _mount_v1(fd: int, h: CgroupHierarchy, flags: int, plan: Plan, own: dict) -> None:
    if plan.cgroupns:
        pathsafe.mount_on(fd, "cgroup", "cgroup", flags, h.data)
        return
    # without a cgroup namespace: bind our own cgroup of that hierarchy from the host
    path = own.get(h.data) or own.get(h.name) or "/"
    _bind_host(fd, h.host_path + path, flags)


def _bind_host(fd: int, host: str, flags: int) -> None:
    tree = sc.open_tree(-100, host, sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC)
    try:
        set_, clr = _attrs_of(flags)
        if set_:
            sc.mount_setattr(tree, "", sc.AT_EMPTY_PATH, sc.MountAttr(set_, clr, 0, 0))
        sc.move_mount(tree, "", fd, "", sc.MOVE_MOUNT_F_EMPTY_PATH | sc.MOVE_MOUNT_T_EMPTY_PATH)
    finally:
        os.close(tree)


def _mount_cgroup2(rootfd: int, dest: str, flags: int, plan: Plan,
                   h: CgroupHierarchy | None, own: str | None = None) -> None:
    fd = pathsafe.ensure(rootfd, dest, True)
    try:
        try:
            pathsafe.mount_on(fd, "cgroup2", "cgroup2", flags, None)
            return
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EBUSY) or h is None:
                raise
        # no cgroup namespace of our own: bind our cgroup from the host, like runc
        if own is None:
            own = _own_cgroups().get("", "/")
        _bind_host(fd, h.host_path + own, flags)
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
                raise OnggiError(f"linux.devices: {node.path}: {_reason(e)}") from None
    finally:
        os.umask(old)
    try:
        devices.make_links(rootfd, "/dev", plan.kcore)
        devices.make_ptmx(rootfd)
    except OSError as e:
        raise OnggiError(f"/dev symlinks: {_reason(e)}") from None


# ---------------------------------------------------------------- pivot and after


def pivot(cfg, no_pivot: bool) -> None:
    """Make the rootfs "/": pivot_root and detach the old root, or with --no-pivot move the
    rootfs onto "/" and chroot. Afterwards the cwd is "/" inside the container."""
    rootfd = _ctx.rootfd if _ctx.rootfd >= 0 else pathsafe.open_root(cfg.root_path)
    try:
        if no_pivot:
            _move_root(rootfd, cfg.root_path)
        else:
            _pivot_root(rootfd)
    except OSError as e:
        op = "move the rootfs onto / (--no-pivot)" if no_pivot else "pivot_root"
        raise OnggiError(f"{op} {cfg.root_path}: {_reason(e)}") from None
    finally:
        os.close(rootfd)
        _ctx.rootfd = -1


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


def _move_root(rootfd: int, root: str) -> None:
    _drop_host_mounts(root)
    # MS_MOVE, like pivot_root, refuses a move out of a shared parent
    sc.mount(None, "/", None, sc.MS_SLAVE)
    os.fchdir(rootfd)
    sc.mount(".", "/", None, sc.MS_MOVE)
    os.chroot(".")
    os.chdir("/")


def _drop_host_mounts(root: str) -> None:
    """--no-pivot leaves the old root under the chroot: detach every mount of it that is
    neither the rootfs (or under it) nor on the way to it, as runc's msMoveRoot does. Each
    is made a slave first, so the unmount cannot propagate to the host."""
    points = []
    for m in mountinfo():
        p = m["point"]
        inside = p == root or p.startswith(root.rstrip("/") + "/")
        on_the_way = root == p or root.startswith(p.rstrip("/") + "/")
        if not inside and not on_the_way:
            points.append(p)
    for p in sorted(set(points), key=lambda x: x.count("/"), reverse=True):
        try:
            sc.mount(None, p, None, sc.MS_SLAVE | sc.MS_REC)
            sc.umount2(p, sc.MNT_DETACH)
        except OSError:
            pass  # already gone with its parent, or busy: the chroot still hides it


def finish(cfg, plan: Plan) -> None:
    """After pivot: readonly paths, masked paths, root.readonly, then rootfsPropagation on
    "/": "slave" keeps receiving the host's mounts under the rootfs, "private" and
    "unbindable" receive nothing, "shared" makes "/" shared (a bind of "/" sees later
    mounts) while still receiving from the host. Nothing ever propagates to the host."""
    lx = cfg.linux
    for p in lx.readonly_paths:
        readonly_path(p)
    for p in lx.masked_paths:
        mask_path(p, plan.mount_label)
    if cfg.root_readonly:
        _remount_ro("/")
    if plan.final_propagation is not None:
        try:
            sc.mount(None, "/", None, plan.final_propagation)
        except OSError as e:
            raise OnggiError(f"linux.rootfsPropagation: {_reason(e)}") from None
    _forget_root()


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
        raise OnggiError(f"/dev/console: bind the terminal: {_reason(e)}") from None


def _open_in_root(path: str) -> int | None:
    """An O_PATH fd of `path` in the current root (after pivot), or None when missing."""
    try:
        return pathsafe.resolve(_cur_root(), path)
    except FileNotFoundError:
        return None


def _cur_root() -> int:
    if _ctx.cur_root < 0:
        _ctx.cur_root = pathsafe.open_root("/")
    return _ctx.cur_root


def _forget_root() -> None:
    if _ctx.cur_root >= 0:
        os.close(_ctx.cur_root)
        _ctx.cur_root = -1


def readonly_path(path: str) -> None:
    """A read-only bind of `path` over itself (recursive); a missing path is skipped."""
    fd = _open_in_root(path)
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
        raise OnggiError(f"readonlyPaths: {path}: {_reason(e)}") from None
    finally:
        os.close(fd)


def _devnull() -> int:
    """The container's /dev/null, checked to really be the null device (CVE-2025-31133: a
    container that swaps it for a symlink must not get another file bound over a path)."""
    fd = pathsafe.resolve(_cur_root(), "/dev/null", nofollow=True)
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
        os.close(fd)
        raise OSError(errno.EINVAL, "/dev/null is not the null device (1:3)", "/dev/null")
    return fd


def mask_path(path: str, label: str | None = None) -> None:
    """Cover a file with /dev/null, a directory with a read-only tmpfs; missing: skipped."""
    fd = _open_in_root(path)
    if fd is None:
        return
    try:
        if pathsafe.is_dir_fd(fd):
            data = f'context="{label}"' if label else None
            tmp = sc.fsopen_mount("tmpfs", data, sc.MOUNT_ATTR_RDONLY)
        else:
            null = _devnull()
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
        raise OnggiError(f"maskedPaths: {path}: {_reason(e)}") from None
    finally:
        os.close(fd)


def _remount_ro(path: str) -> None:
    """root.readonly: only the root mount itself; mounts under it keep their own flags."""
    fd = pathsafe.resolve(_cur_root(), path)
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
        raise OnggiError(f"root.readonly: remount / read-only: {_reason(e)}") from None
    finally:
        os.close(fd)
    _forget_root()


__all__ = ["plan", "mount_all", "pivot", "finish", "procfs"]
