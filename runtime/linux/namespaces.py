"""Joining and creating namespaces, and checking a joined one is of the right type."""

from __future__ import annotations

import fcntl
import os

from runtime.errors import ConfigError
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
                raise ConfigError(field, f"{ns.path}: {e.strerror.lower()}") from None
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
            raise ConfigError(field, f"writing {name}: {e.strerror.lower()}") from None


def write_time_offsets(lx: Linux) -> None:
    """In the child, right after unshare(CLONE_NEWTIME) and before any child is born."""
    text = "".join(f"{clock} {secs} {nsecs}\n" for clock, secs, nsecs in lx.time_offsets)
    with open("/proc/self/timens_offsets", "w") as f:
        f.write(text)
