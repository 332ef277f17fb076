"""Where the host's cgroups are: the mounted hierarchies and a process's place in them.

Cheap enough for the hot path: one stat to tell the layout, and /proc/<pid>/cgroup.
"""

from __future__ import annotations

import os

from runtime.cgroups import ROOT  # the one definition; hierarchy.ROOT for the rest
from runtime.linux import mountinfo
from runtime.record import Record

UNIFIED = ROOT + "/unified"  # the cgroup2 part of a hybrid host


class Hierarchy(Record):
    """One host cgroup mount under /sys/fs/cgroup."""

    name: str  # directory name under ROOT, e.g. "cpu,cpuacct", "unified"; "" for a v2 ROOT
    fstype: str  # cgroup or cgroup2
    data: str  # super options, e.g. "cpu,cpuacct" or "name=systemd" ("" for cgroup2)
    host_path: str  # where the host has it mounted
    links: tuple[str, ...] = ()  # "cpu" and "cpuacct" -> "cpu,cpuacct"


def mode() -> str:
    """"v2" (unified: ROOT is cgroup2), "hybrid" (v1 controllers plus a cgroup2 at
    ROOT/unified) or "v1"."""
    if os.path.exists(ROOT + "/cgroup.controllers"):
        return "v2"
    if os.path.exists(UNIFIED + "/cgroup.controllers"):
        return "hybrid"
    return "v1"


def host() -> tuple[Hierarchy, ...]:
    """The host's cgroup mounts under ROOT (v1 hierarchies and/or the v2 one)."""
    out = []
    seen = set()
    for m in mountinfo.read(fstypes=("cgroup", "cgroup2")):
        if m.root != "/":
            continue
        point = m.point
        if point != ROOT and os.path.dirname(point) != ROOT:
            continue
        if point in seen:
            continue
        seen.add(point)
        name = "" if point == ROOT else os.path.basename(point)
        data = ""
        if m.fstype == "cgroup":
            keep = [o for o in m.super.split(",")
                    if o not in ("rw", "ro") and not o.startswith("release_agent")]
            data = ",".join(keep)
        links = tuple(x for x in name.split(",") if x != name) if "," in name else ()
        out.append(Hierarchy(name, m.fstype, data, point, links))
    return tuple(out)


def own(pid: int | str = "self") -> dict[str, str]:
    """A process's cgroup path per hierarchy, from /proc/<pid>/cgroup. The key is the
    hierarchy's controllers as listed there ("cpu,cpuacct", "name=systemd"), "" for v2."""
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrl, path = line.rstrip("\n").split(":", 2)
            out[ctrl] = path
    return out
