"""What a process started in an existing container (exec) must join: the container's
cgroup dirs, or sub-cgroups of them given as runc's `exec --cgroup [CONTROLLER[,...]:]PATH`.

    dirs = join.exec_dirs(st, join.parse_sub(args.cgroup))   # before the fork
    join.join(dirs, pid)                                     # the parent, for the child
On pure v2 `exec` may instead be born in exec_dirs(...)[0] with clone3.fork(fd, child).
"""

from __future__ import annotations

import os
import posixpath

from runtime.cgroups import files
from runtime.cgroups.files import CgroupError
from runtime.errors import OnggiError


def parse_sub(args: list[str] | None) -> dict[str, str]:
    """runc's getSubCgroupPaths: "PATH" (one, v2 or every v1 controller) or
    "ctrl[,ctrl]:PATH" per v1 controller."""
    out: dict[str, str] = {}
    for a in args or ():
        ctrls, sep, path = a.partition(":")
        if not sep:
            if len(args) != 1:
                raise OnggiError(f"invalid --cgroup argument: {a} (missing <controller>: prefix)")
            out[""] = a
            continue
        for c in ctrls.split(","):
            if not c:
                raise OnggiError(f"invalid --cgroup argument: {a} (empty <controller> prefix)")
            if c in out:
                raise OnggiError(f"invalid --cgroup argument(s): controller {c} specified "
                                 "multiple times")
            out[c] = path
    return out


def _below(base: str, sub: str) -> str:
    d = posixpath.normpath(posixpath.join(base, sub.lstrip("/")))
    if d != base and not d.startswith(base + "/"):
        raise OnggiError(f"--cgroup: bad sub-cgroup path {sub!r}: it leaves {base}")
    return d


def exec_dirs(st, subs: dict[str, str] | None = None) -> list[str]:
    """The dirs (each once) whose cgroup.procs the exec'd process is written to. An empty
    list: the container has no cgroups of its own."""
    paths = dict(st.cgroup_paths)
    if not paths:
        if subs:
            raise OnggiError("--cgroup: the container has no cgroups")
        return []
    subs = subs or {}
    if "" in subs and len(subs) == 1 and set(paths) != {""}:
        subs = {k: subs[""] for k in paths}  # one path for every controller (v1)
    for ctrl, sub in subs.items():
        if ctrl not in paths:
            raise OnggiError(f"--cgroup: unknown controller {ctrl or 'v2'!r} for this container")
        paths[ctrl] = _below(paths[ctrl], sub)
        if not os.path.isdir(paths[ctrl]):
            raise OnggiError(f"--cgroup: {paths[ctrl]}: no such cgroup (it must exist)")
    seen, out = set(), []
    for d in paths.values():
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def join(dirs: list[str], pid: int, rootless: bool = False) -> None:
    """Move `pid` into each dir; rootless skips what it may not write (runc)."""
    for d in dirs:
        try:
            files.add_pid(d, pid)
        except CgroupError as e:
            if not rootless:
                raise OnggiError(f"exec: joining the container's cgroup {d}: {e}") from None
