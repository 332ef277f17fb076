"""linux.cgroupsPath -> one host directory per hierarchy (runc's fs/fs2 path rules).

  absolute "/a/b"  relative to each hierarchy's root
  relative "a/b"   relative to the runtime's own cgroup (v1); on pure v2 to the parent of
                   our own cgroup, which holds processes already (so may hold no child
                   with domain controllers); on a hybrid host's unified tree to its root
  none             "<id>", relative
".." cannot climb out: the path is cleaned as if rooted first (runc's CleanPath).
"""

from __future__ import annotations

import os
import posixpath

from runtime.errors import ConfigError
from runtime.record import Record

# runc's subsystem order (fs.go): apply, set, stats and destroy walk them in this order.
SUBSYSTEMS = ("cpuset", "devices", "memory", "cpu", "cpuacct", "pids", "blkio", "hugetlb",
              "net_cls", "net_prio", "perf_event", "freezer", "rdma", "misc", "name=systemd")
UNIFIED = ""  # the key of the cgroup2 dir, on v2 and hybrid hosts


class Layout(Record):
    """Where the host's hierarchies are and where we sit in them."""

    mode: str  # "v1", "hybrid" or "v2"
    v2_root: str = ""  # the cgroup2 mount: ROOT on v2, ROOT/unified on hybrid, "" on v1
    v1: dict = {}  # subsystem -> (mount point, the mount's root within its hierarchy)
    own: dict = {}  # subsystem (or "" for cgroup2) -> our own cgroup path (/proc/self/cgroup)


def clean(path: str) -> str:
    if not path:
        return ""
    if path.startswith("/"):
        return posixpath.normpath(path).replace("//", "/")
    return posixpath.relpath(posixpath.normpath("/" + path), "/")


def inner(cgroups_path: str | None, cid: str) -> str:
    """The cgroup path within a hierarchy: absolute, or relative to our own cgroup."""
    p = clean(cgroups_path or "")
    if p == "/":
        raise ConfigError("linux.cgroupsPath", "'/' is the root cgroup, which no container may own")
    if p in ("", "."):
        p = clean(cid)
    return p


def host_layout() -> Layout:
    # imported here: the verbs on an existing container (delete, kill) need no discovery
    from runtime.cgroups import hierarchy

    mode = hierarchy.mode()
    own = _own()
    v1 = {}
    if mode != "v2":
        for m in _v1_mounts():
            for name in m[0]:
                v1.setdefault(name, (m[1], m[2]))
    v2_root = {"v2": hierarchy.ROOT, "hybrid": hierarchy.UNIFIED}.get(mode, "")
    return Layout(mode, v2_root, v1, own)


def _v1_mounts() -> list[tuple[tuple[str, ...], str, str]]:
    """(subsystems, mount point, root) of every v1 mount, those under ROOT first."""
    from runtime.cgroups import hierarchy
    from runtime.linux import mountinfo

    found = []
    for m in mountinfo.read(fstypes=("cgroup",)):  # the other lines are not even parsed
        if m.fstype != "cgroup":
            continue
        names = tuple(o for o in m.super.split(",") if o in SUBSYSTEMS)
        if names:
            under = os.path.dirname(m.point) == hierarchy.ROOT
            found.append((not under, names, m.point, m.root))
    found.sort(key=lambda t: t[0])  # stable: mountinfo order within each group
    return [t[1:] for t in found]


def _own() -> dict[str, str]:
    from runtime.cgroups import hierarchy

    out = {}
    for ctrls, path in hierarchy.own().items():
        if ctrls == "":
            out[UNIFIED] = path
            continue
        for name in ctrls.split(","):
            out[name] = path
    return out


def resolve(layout: Layout, path: str) -> dict[str, str]:
    """{subsystem, or "" for cgroup2: absolute host dir} for an inner path."""
    out = {}
    rel = not path.startswith("/")
    for name in SUBSYSTEMS:
        if name not in layout.v1:
            continue
        point, mroot = layout.v1[name]
        if rel:
            own = layout.own.get(name, "/")
            base = posixpath.relpath(own, mroot) if own.startswith(mroot) else own
            base = "" if base == "." else "/" + base.strip("/")
            out[name] = point + base + "/" + path
        else:
            out[name] = point + path
    if layout.mode == "hybrid":
        out[UNIFIED] = layout.v2_root + ("/" + path if rel else path)
    elif layout.mode == "v2":
        if rel:
            parent = posixpath.dirname(layout.own.get(UNIFIED, "/"))
            out[UNIFIED] = layout.v2_root + parent.rstrip("/") + "/" + path
        else:
            out[UNIFIED] = layout.v2_root + path
    return {k: posixpath.normpath(v) for k, v in out.items()}
