"""The container's mounts as a checked plan, made in the parent before fork.

`plan` turns every mount of the config into flags and checked paths (and prepares idmapped
binds as detached trees, which needs the host's user namespace), so the init only executes
it (runtime.linux.mounts, then runtime.linux.pivot).
"""

from __future__ import annotations

import os

from runtime.cgroups import hierarchy
from runtime.cgroups.hierarchy import Hierarchy
from runtime.errors import ConfigError, reason
from runtime.linux import devices, mountopts, pathsafe
from runtime.linux import syscalls as sc
from runtime.linux.mountopts import Options
from runtime.linux.mounts import prepare_tree
from runtime.record import Record

# Records (runtime.record), not dataclasses: generated methods cost import time,
# and `create` pays for every millisecond.

class MountPlan(Record):
    where: str  # "mounts[3]" for errors
    destination: str  # absolute and clean, inside the container
    fstype: str  # "bind" for bind mounts, else the filesystem type
    source: str | None  # absolute host path for binds
    opts: Options
    uid_mappings: tuple = ()
    gid_mappings: tuple = ()
    cgroups: tuple[Hierarchy, ...] = ()
    tree: int = -1  # a bind's detached tree the parent prepared (an fd), see Plan
    # "ro" is applied after the other mounts and the console (pivot.finish), as runc does
    # for every tmpfs and for /dev: mounts under it must be made first
    ro_later: bool = False

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
    host_mntns: bool = False  # no mount namespace: see runtime.linux.hostmounts
    notes: tuple[str, ...] = ()  # warnings for the parent's --log
    # In a new user namespace the bind sources are opened by the parent's helper, with the
    # host's credentials, inside the init's mount namespace (open_sources): a source only
    # host root can reach still works, and flags the host locked stay locked (runc's
    # mount-source fds). Otherwise the init opens them itself (idmapped ones: the parent).
    sources_in_parent: bool = False


def plan(cfg) -> Plan:
    """Check and convert every mount of `cfg` (a runtime.spec.Config); raises ConfigError."""
    lx = cfg.linux
    notes: list[str] = []
    label = lx.mount_label
    if label:
        from runtime.linux import lsm  # probed only when the config has a label

        if not lsm.selinux_enabled():
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
    userns = lx.ns("user") is not None
    late = userns and any(_source_bind(m) for m in mounts)
    return Plan(
        mounts=mounts if userns else _idmapped_trees(mounts),
        setup_dev=setup_dev,
        devices=nodes,
        userns=userns,
        cgroupns=lx.ns("cgroup") is not None,
        start_propagation=start,
        final_propagation=final,
        mount_label=label,
        kcore=os.path.exists("/proc/kcore"),
        host_mntns=lx.ns("mount") is None,
        notes=tuple(notes),
        sources_in_parent=late,
    )


def _source_bind(m: MountPlan) -> bool:
    """A bind that attaches a source (not a "bind,remount" of what is there already)."""
    return m.bind and not m.opts.flags & sc.MS_REMOUNT


def open_sources(init_pid: int, plan: Plan) -> list[tuple[int, int]]:
    """[(mount index, detached tree fd)] for every bind of `plan`, made by a helper that
    joins the init's mount namespace with the host's credentials (Plan.sources_in_parent).
    Raises OnggiError naming the mount when a source cannot be opened."""
    from runtime import messages
    from runtime.linux import process

    try:
        ns = os.open(f"/proc/{init_pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        raise messages.Gone() from None  # the init died meanwhile: say so, as the sync does
    ours, theirs = messages.pair()
    try:
        pid = process.fork(lambda: _sources_helper(ns, theirs, plan))
    finally:
        os.close(ns)
        theirs.close()
    out: list[tuple[int, int]] = []
    try:
        while True:
            kind, fields, fds = messages.expect(ours, messages.MOUNT_SOURCE,
                                                messages.MOUNT_SOURCES_DONE)
            if kind == messages.MOUNT_SOURCES_DONE:
                return out
            out.append((fields["index"], fds[0]))
    except BaseException:
        for _, fd in out:
            os.close(fd)
        raise
    finally:
        ours.close()
        os.waitpid(pid, 0)


def _sources_helper(ns: int, sock, plan: Plan) -> None:
    """In a forked child (single-threaded, as setns needs): enter the init's mount
    namespace, clone each bind source there and send the trees. Never returns."""
    from runtime import messages

    code = 1
    where = "mount sources"
    try:
        sc.setns(ns, sc.CLONE_NEWNS)  # also moves our root and cwd to that namespace's
        for i, m in enumerate(plan.mounts):
            if not _source_bind(m):
                continue
            where = f"{m.where}: mount {m.source} on {m.destination}"
            tree = prepare_tree(m, userns=True)
            messages.send(sock, messages.MOUNT_SOURCE, fds=[tree], index=i)
            os.close(tree)
        messages.send(sock, messages.MOUNT_SOURCES_DONE)
        code = 0
    except BaseException as e:  # noqa: BLE001 - the parent reports it
        try:
            messages.send_error(sock, "mount-sources", getattr(e, "errno", None),
                                f"{where}: {reason(e) if isinstance(e, OSError) else e}")
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(code)


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
                                      f"{reason(e)}") from None
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
    if (opts.idmap or opts.ridmap) and not is_bind:
        raise ConfigError(f"{where}.options", "idmap and ridmap need a bind mount")
    if (opts.idmap or opts.ridmap) and not (m.uid_mappings and m.gid_mappings):
        raise ConfigError(f"{where}.uidMappings", "idmap needs uidMappings and gidMappings")
    if opts.tmpcopyup and fstype != "tmpfs":
        raise ConfigError(f"{where}.options", "tmpcopyup works only on a tmpfs mount")
    ro_later = bool(opts.flags & sc.MS_RDONLY) and (fstype == "tmpfs" or dest == "/dev")
    if ro_later:
        opts = Options(**{**opts.__dict__, "flags": opts.flags & ~sc.MS_RDONLY})
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
        return MountPlan(where, dest, "bind", src, opts, m.uid_mappings, m.gid_mappings,
                         ro_later=ro_later)
    cgroups: tuple[Hierarchy, ...] = ()
    if fstype in ("cgroup", "cgroup2"):
        cgroups = hierarchy.host()
        if "rw" not in m.options:  # read-only unless asked otherwise
            opts = Options(**{**opts.__dict__, "flags": opts.flags | sc.MS_RDONLY})
    return MountPlan(where, dest, fstype, m.source, opts, (), (), cgroups, ro_later=ro_later)


