"""Joining and creating namespaces, and checking a joined one is of the right type."""

from __future__ import annotations

import fcntl
import os

from runtime.errors import ConfigError, reason
from runtime.linux import syscalls
from runtime.spec import CLONE_FLAGS, Linux

_NS_GET_NSTYPE = 0xB703
# setns order: user first (it grants the rights for the rest), mount last (it moves our root).
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")


def open_joins(lx: Linux) -> list[tuple[str, int]]:
    """Open every namespace path (parent side), checking each is of its stated type."""
    fds = []
    index = {n.type: i for i, n in enumerate(lx.namespaces)}
    try:
        for kind in JOIN_ORDER:
            ns = lx.ns(kind)
            if ns is None or ns.path is None:
                continue
            field = f"linux.namespaces[{index[kind]}].path"
            try:
                fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise ConfigError(field, f"{ns.path}: {reason(e)}") from None
            fds.append((kind, fd))
            try:
                got = fcntl.ioctl(fd, _NS_GET_NSTYPE)
            except OSError:
                raise ConfigError(field, f"{ns.path} is not a namespace file") from None
            if got != CLONE_FLAGS[kind]:
                have = next((k for k, v in CLONE_FLAGS.items() if v == got), hex(got))
                raise ConfigError(field, f"{ns.path} is a {have} namespace, not {kind}")
    except BaseException:
        for _, fd in fds:
            os.close(fd)
        raise
    return fds


# /proc/<pid>/ns/ names of the spec's namespace types
PROC_NAME = {"mount": "mnt", "network": "net", "ipc": "ipc", "uts": "uts", "pid": "pid",
             "user": "user", "cgroup": "cgroup", "time": "time"}


def paths(lx: Linux, init_pid: int) -> dict[str, str]:
    """Where each namespace of the container can be joined, for state.json (runc's
    namespace_paths): the config's path, else the init's /proc entry. Types the config
    does not list are the host's, as the init sees them."""
    out = {}
    for kind, name in PROC_NAME.items():
        ns = lx.ns(kind)
        out[kind] = ns.path if ns is not None and ns.path else f"/proc/{init_pid}/ns/{name}"
    return out


def open_container(ns_paths: dict[str, str], init_pid: int) -> tuple[list[tuple[str, int]], int]:
    """Parent side of exec: the container's namespaces (state.json's {type: path}) as
    (type, fd) in JOIN_ORDER, and an O_PATH fd of the init's root. A namespace that is
    already ours (a type the config did not list: the host's) is left out: joining one's
    own user namespace is EINVAL, and the rest would change nothing.

    The paths name the init by pid; the caller checks afterwards that the pid is still the
    init (its start time), so these fds are the init's and not a successor's."""
    fds: list[tuple[str, int]] = []
    root = -1
    try:
        for kind in JOIN_ORDER:
            path = ns_paths.get(kind)
            if path is None:
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise OSError(e.errno, f"opening the container's {kind} namespace: "
                                       f"{os.strerror(e.errno)}", path) from None
            st = os.fstat(fd)
            try:
                own = os.stat(f"/proc/self/ns/{PROC_NAME[kind]}")
            except OSError:
                own = None  # a kernel without that type: it cannot be ours
            if own is not None and (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
                os.close(fd)
                continue
            fds.append((kind, fd))
        root = os.open(f"/proc/{init_pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except BaseException:
        for _, fd in fds:
            os.close(fd)
        raise
    return fds, root


def enter(fds: list[tuple[str, int]], root_fd: int) -> None:
    """Child side of exec: join the container's namespaces (user first, for the rights to
    join the rest) and take the init's root as ours. setns(mnt) alone gives the namespace's
    root, which is not the container's when it has no mount namespace of its own (or its
    init chrooted). A pid namespace is not among `fds`: setns(CLONE_NEWPID) moves only the
    children of the caller, so exec's parent joins it and forks the process into it."""
    for kind, fd in fds:
        join([(kind, fd)])
        if kind == "user":
            _become_root()
    os.fchdir(root_fd)
    os.chroot(".")


def _become_root() -> None:
    """Root of the joined user namespace, when its maps have a root (else we keep the
    capabilities setns gave us, and the process's own ids come later)."""
    for set_ids in (os.setresgid, os.setresuid):
        try:
            set_ids(0, 0, 0)
        except OSError:
            pass
    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)  # a credential change resets it


def new_flags(lx: Linux, *, without: tuple[str, ...] = ()) -> int:
    flags = 0
    for n in lx.namespaces:
        if n.path is None and n.type not in without:
            flags |= CLONE_FLAGS[n.type]
    return flags


def join(fds: list[tuple[str, int]]) -> None:
    for kind, fd in fds:
        try:
            syscalls.setns(fd, CLONE_FLAGS[kind])
        except OSError as e:
            raise OSError(e.errno, f"joining the {kind} namespace: {os.strerror(e.errno)}") from None


def write_id_maps(pid: int, lx: Linux) -> None:
    """Parent side: /proc/<pid>/{uid,gid}_map for a child that unshared its user ns."""
    if os.geteuid() != 0:
        # Without CAP_SETGID over the parent namespace, gid_map needs setgroups denied.
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
    for name, maps in (("uid_map", lx.uid_mappings), ("gid_map", lx.gid_mappings)):
        text = "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(text)
        except OSError as e:
            field = "linux.uidMappings" if name == "uid_map" else "linux.gidMappings"
            raise ConfigError(field, f"writing {name}: {reason(e)}") from None


def write_time_offsets(lx: Linux) -> None:
    """In the child, right after unshare(CLONE_NEWTIME) and before any child is born."""
    text = "".join(f"{clock} {secs} {nsecs}\n" for clock, secs, nsecs in lx.time_offsets)
    with open("/proc/self/timens_offsets", "w") as f:
        f.write(text)
