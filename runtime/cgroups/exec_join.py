"""The cgroups a process started in an existing container (exec) joins: the container's
own (state.json's {controller, or "" for v2: dir}), or sub-cgroups of them given as runc's
`exec --cgroup [CONTROLLER[,CONTROLLER...]:]PATH`.

    dirs = exec_dirs(st.cgroup_paths, parse_sub(args))   # before the fork
    plan = Plan(dirs, paused)                             # clone3 and the child's own moves
    plan.join_rest(failed, pid)                           # the parent: the rest, by pid

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


class Plan:
    """How exec's process gets into `dirs` without the kernel's global lock (see
    files.join_self): born in the cgroup2 dir (clone3), and it writes "0" to each v1 dir's
    `tasks` itself, first thing after the fork. Not into a paused container's cgroups
    (--ignore-paused): the process would freeze before it could report; there, and for what
    it could not do itself, the parent writes its pid once it is in the namespaces (runc)."""

    def __init__(self, dirs: list[tuple[str, str]], paused: bool) -> None:
        self.dirs = dirs
        self.v2 = None if paused else next((d for k, d in dirs if k == ""), None)
        self.tasks = [] if paused else [d + "/tasks" for k, d in dirs if k != ""]
        self.born_in: str | None = None  # the cgroup2 dir clone3 put the process into

    def fork(self, forker, child) -> int:
        """forker(child) (runtime.linux.process.fork), in the cgroup2 dir when it can."""
        if self.v2 is not None:
            from runtime.cgroups import clone3

            try:
                pid = clone3.fork(self.v2, child)
                self.born_in = self.v2
                return pid
            except OSError:
                pass  # too old a kernel, not a leaf: fork, and the parent joins it
        return forker(child)

    def by_pid(self, failed: list[str]) -> list[tuple[str, str]]:
        """The dirs the parent is still to write the pid to: the cgroup2 one unless clone3
        put the process there, the v1 ones it was not to join or could not."""
        def left(k: str, d: str) -> bool:
            if k == "":
                return d != self.born_in
            return d + "/tasks" not in self.tasks or d + "/tasks" in failed

        return [(k, d) for k, d in self.dirs if left(k, d)]

    def join_rest(self, failed: list[str], pid: int) -> None:
        """The parent's part, once the process is in the namespaces (runc's order)."""
        join(self.by_pid(failed), pid, [k for k, _ in self.dirs])


def join(dirs: list[tuple[str, str]], pid: int, keys: list[str] | None = None) -> None:
    """Write `pid` to cgroup.procs of each dir (O_NOFOLLOW: nothing in a cgroupfs is a
    link, and the container may write in its own cgroup). `keys`: all the container's
    (for the best-effort ones), when `dirs` is a part of them."""
    keys = [k for k, _ in dirs] if keys is None else keys
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
