"""The verbs that work through a container's cgroups: pause, resume, ps (update.py and
events.py have the longer ones). Each is `cmd_X(argv, global_args) -> exit status`, named in
runtime.cli.VERBS and imported only when it runs."""

from __future__ import annotations

import os
import sys

from runtime import state
from runtime.errors import OnggiError


def _parser(verb: str):
    from runtime.cli import _verb_parser

    return _verb_parser(verb)


def simple(argv: list[str], flags: dict[str, str] | None = None,
           values: dict[str, str] | None = None) -> dict | None:
    """The plain command lines engines send ("ID", "--format json ID", "--stats ID"),
    parsed without argparse (its import costs more than the verb); None for anything
    else, which argparse then parses and, if need be, refuses."""
    flags, values = flags or {}, values or {}
    out: dict[str, object] = {v: False for v in flags.values()}
    rest = list(argv)
    while len(rest) > 1:
        name, eq, value = rest[0].partition("=")
        if rest[0] in flags:
            out[flags[rest.pop(0)]] = True
        elif name in values:
            rest.pop(0)
            if not eq:
                value = rest.pop(0)
            out[values[name]] = value
        else:
            return None
    if len(rest) != 1 or rest[0].startswith("-"):
        return None
    out["id"] = rest[0]
    return out


def load(root: str, cid: str):
    """(state dir, state, manager) of a container."""
    from runtime import cgroups

    path, st = state.load(root, cid)
    return path, st, cgroups.from_state(st)


def _id_only(verb: str, argv: list[str]) -> str:
    fast = simple(argv)
    if fast is not None:
        return fast["id"]
    p = _parser(verb)
    p.add_argument("id")
    return p.parse_args(argv).id


def cmd_pause(argv: list[str], g) -> int:
    cid = _id_only("pause", argv)
    path, st, mgr = load(g.root, cid)
    with state.Lock(path):
        status = state.status(path, st)
        if status not in ("running", "created"):
            raise OnggiError(f"container {cid} is not running (it is {status})")
        if not st.cgroup_paths:
            raise OnggiError(f"cannot pause container {cid}: it has no cgroups")
        mgr.freeze()
    return 0


def cmd_resume(argv: list[str], g) -> int:
    cid = _id_only("resume", argv)
    path, st, mgr = load(g.root, cid)
    with state.Lock(path):
        status = state.status(path, st)
        if status != "paused":
            raise OnggiError(f"container {cid} is not paused (it is {status})")
        mgr.thaw()
    return 0


def ps_pids(st) -> list[int]:
    """From the cgroup when the container has one, as runc; else (no cgroups of its own)
    its pid namespace or the init's descendants."""
    if st.cgroup_paths:
        from runtime import cgroups

        return sorted(set(cgroups.from_state(st).pids()))
    from runtime import container

    return container.container_pids(st)


def cmd_ps(argv: list[str], g) -> int:
    fast = simple(argv, values={"-f": "format", "--format": "format"})
    if fast is not None:
        cid, fmt, ps_args = fast["id"], fast.get("format", "table"), []
    else:
        import argparse

        p = _parser("ps")
        p.add_argument("-f", "--format", default="table", help="table or json (default table)")
        p.add_argument("id")
        p.add_argument("ps_args", nargs=argparse.REMAINDER, help="options for ps(1), default -ef")
        a = p.parse_args(argv)
        cid, fmt, ps_args = a.id, a.format, a.ps_args
    if fmt not in ("table", "json"):
        raise OnggiError(f"ps: invalid --format {fmt!r}: use table or json")
    _, st = state.load(g.root, cid)
    pids = ps_pids(st)
    if fmt == "json":  # compact, as runc's Go encoder writes it
        sys.stdout.write("[" + ",".join(map(str, pids)) + "]\n")
        return 0
    sys.stdout.write(ps_table(pids, ps_args or ["-ef"]))
    return 0


def ps_table(pids: list[int], args: list[str]) -> str:
    """The host's ps(1) output with its header and the container's rows only (runc)."""
    import subprocess

    try:
        res = subprocess.run(["ps", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise OnggiError("ps: the ps command is not installed (procps)") from None
    if res.returncode != 0:
        raise OnggiError(f"ps {' '.join(args)}: exit status {res.returncode}: "
                         f"{res.stderr.strip() or res.stdout.strip()}")
    lines = res.stdout.splitlines()
    if not lines:
        return ""
    header = lines[0].split()
    if "PID" not in header:
        raise OnggiError(f"ps {' '.join(args)}: couldn't find PID field in ps output")
    col = header.index("PID")
    want = set(pids)
    out = [lines[0]]
    for line in lines[1:]:
        fields = line.split(None, col + 1)
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in want:
            out.append(line)
    return "".join(x + os.linesep for x in out)
