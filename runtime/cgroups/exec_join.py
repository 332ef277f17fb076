"""The cgroups a process started in an existing container (exec) joins: the container's
own (state.json's {controller, or "" for v2: dir}), or sub-cgroups of them given as runc's
`exec --cgroup [CONTROLLER[,CONTROLLER...]:]PATH`.

    dirs = exec_dirs(st.cgroup_paths, parse_sub(args))   # before the fork
    join(dirs, pid)                                       # the parent, for the child

Generic over the dict: a container whose state has no cgroup paths joins none.
"""

from __future__ import annotations

import os
import posixpath

from runtime.errors import OnggiError, reason


def parse_sub(args: list[str] | tuple[str, ...]) -> dict[str, str]:
    """runc's getSubCgroupPaths: one plain PATH (v2, or every v1 controller) or
    "ctrl[,ctrl]:PATH" entries, one per v1 controller."""
    out: dict[str, str] = {}
    for a in args:
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


def _key_for(ctrl: str, paths: dict[str, str]) -> str | None:
    """The state key of a controller: itself, or a co-mounted hierarchy ("cpu,cpuacct")."""
    if ctrl in paths:
        return ctrl
    return next((k for k in paths if ctrl in k.split(",")), None)


def exec_dirs(paths: dict[str, str], subs: dict[str, str]) -> list[tuple[str, str]]:
    """(key, dir) pairs, each dir once, whose cgroup.procs the process is written to."""
    paths = dict(paths)
    if not paths:
        if subs:
            raise OnggiError("--cgroup: the container has no cgroups of its own")
        return []
    if set(subs) == {""} and set(paths) != {""}:
        subs = dict.fromkeys(paths, subs[""])  # one path for every controller (v1)
    base = dict(paths)
    for ctrl, sub in subs.items():
        key = _key_for(ctrl, base)
        if key is None:
            raise OnggiError(f"--cgroup: unknown controller {ctrl or 'v2'!r} for this container")
        d = _below(base[key], sub)
        if not os.path.isdir(d):
            raise OnggiError(f"--cgroup: {d}: no such cgroup (it must exist)")
        # co-mounted controllers ("cpu" and "cpuacct" in one hierarchy) share the dir: a
        # later write of the base would move the process out of the sub-cgroup again
        for k, b in base.items():
            if b == base[key] and (k == key or _key_for(k, subs) is None):
                paths[k] = d
    seen: set[str] = set()
    out = []
    for key, d in paths.items():
        if d not in seen:
            seen.add(d)
            out.append((key, d))
    return out


def _best_effort(key: str, keys: list[str]) -> bool:
    """runc joins name=systemd and a hybrid host's unified dir when it can."""
    return key.startswith("name=") or (key == "" and len(keys) > 1)


def join(dirs: list[tuple[str, str]], pid: int) -> None:
    """Write `pid` to cgroup.procs of each dir (O_NOFOLLOW: nothing in a cgroupfs is a
    link, and the container may write in its own cgroup)."""
    keys = [k for k, _ in dirs]
    for key, d in dirs:
        try:
            fd = os.open(d + "/cgroup.procs", os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.write(fd, str(pid).encode())
            finally:
                os.close(fd)
        except OSError as e:
            if _best_effort(key, keys):
                continue
            raise OnggiError(f"joining the container's cgroup {d}: "
                             f"{reason(e)}") from None
