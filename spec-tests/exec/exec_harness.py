"""Helpers for the exec tests: a running container, `onggi exec` against it, and a
caller that is a subreaper (as conmon and the containerd shim are)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from harness import ONGGI, userns  # noqa: F401 - the exec tests take it from here

from runtime.state import proc_start_time

CGROOT = Path("/sys/fs/cgroup")


def start(bundle, args: list[str] | None = None, *extra: str) -> str:
    """create + start; the container runs `args` (default: sleep)."""
    args = args or ["sleep", "1000"]
    cid = bundle.create(None, *extra, args=args)
    bundle.onggi("start", cid, check=True)
    pid = init_pid(bundle, cid)
    # start returns once the init is released; it execs the process a moment later
    wait_for(lambda: _argv0(pid) in (args[0], None))
    return cid


def _argv0(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode()
    except FileNotFoundError:
        return None


def ex(bundle, *argv: str, **kw) -> subprocess.CompletedProcess:
    """`onggi exec ARGV...` (flags, the id, the command) against the bundle's root. Its
    output goes through files: a detached process keeps onggi's stdio, and a pipe would
    stay open as long as it runs."""
    kw.setdefault("stdin", subprocess.DEVNULL if "input" not in kw else None)
    out = bundle.path.parent / f"exec-{uuid.uuid4().hex[:8]}"
    with open(f"{out}.out", "w+") as fo, open(f"{out}.err", "w+") as fe:
        res = bundle.onggi("exec", *argv, capture_output=False, stdout=fo, stderr=fe, **kw)
        fo.seek(0)
        fe.seek(0)
        res.stdout, res.stderr = fo.read(), fe.read()
    return res


def init_pid(bundle, cid: str) -> int:
    return bundle.state(cid)["pid"]


def status_field(pid: int | str, name: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    raise KeyError(name)


def wait_for(pred, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    return proc_start_time(pid) is not None  # neither gone nor a zombie


SUBREAPER_CALLER = """
import ctypes, json, os, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER, like conmon and the shim
argv, pid_file = json.loads(sys.argv[1]), sys.argv[2]
with open(pid_file + ".err", "w+") as err:
    res = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    err.seek(0)
    out = {"me": os.getpid(), "rc": res.returncode, "err": err.read()}
if res.returncode == 0:
    pid = int(open(pid_file).read())
    out["pid"] = pid
    out["ppid"] = int([l for l in open(f"/proc/{pid}/status")
                       if l.startswith("PPid:")][0].split()[1])
    os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)  # ours to reap: we are its subreaper
    out["reaped"] = os.WIFSIGNALED(status)
print(json.dumps(out))
"""


def exec_from_subreaper(bundle, *argv: str, pid_file: Path) -> dict:
    """Run `onggi exec --pid-file PID_FILE ARGV` from a subreaper; what it saw."""
    cmd = ONGGI + ["--root", str(bundle.root), "exec", "--pid-file", str(pid_file), *argv]
    out = subprocess.run([sys.executable, "-c", SUBREAPER_CALLER, json.dumps(cmd),
                          str(pid_file)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


class ExecCgroups:
    """The container's cgroups as exec sees them: state.json's cgroup_paths. When create
    made none (before cgroup support), per-test ones (uuid names, in some v1 hierarchies
    and the cgroup2 one) stand in: the init is moved in and state.json names them. cleanup()
    moves every process back to the root, removes what was made here and restores state."""

    HIERARCHIES = ("pids", "memory", "cpu,cpuacct", "freezer", "unified")

    def __init__(self, bundle, cid: str) -> None:
        self.state_file = bundle.root / cid / "state.json"
        self.saved = self.state_file.read_text()
        self.made: list[Path] = []
        paths = json.loads(self.saved).get("cgroup_paths") or {}
        self.stand_in = not paths
        self.dirs = {k: Path(v) for k, v in paths.items()}
        if self.stand_in:
            name = "onggi-exec-test-" + uuid.uuid4().hex[:8]
            pid = init_pid(bundle, cid)
            for h in self.HIERARCHIES:
                if (CGROOT / h / "cgroup.procs").exists():
                    d = self._mkdir(CGROOT / h / name)
                    self.dirs["" if h == "unified" else h] = d
                    (d / "cgroup.procs").write_text(str(pid))
            self.write_state({k: str(v) for k, v in self.dirs.items()})

    def _mkdir(self, d: Path) -> Path:
        d.mkdir()
        self.made.append(d)
        # a new v1 cpuset cgroup has no CPUs or memory nodes: nothing can join it until it
        # has its parent's (runc copies them the same way)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (d / name).exists() and not (d / name).read_text().strip():
                (d / name).write_text((d.parent / name).read_text())
        return d

    def write_state(self, paths: dict[str, str]) -> None:
        doc = json.loads(self.saved)
        doc["cgroup_paths"] = paths
        self.state_file.write_text(json.dumps(doc))

    def sub(self, name: str) -> dict[str, Path]:
        """A sub-cgroup `name` under each dir (--cgroup needs it to exist)."""
        return {k: self._mkdir(d / name) for k, d in self.dirs.items() if not (d / name).exists()}

    def cleanup(self) -> None:
        for d in reversed(self.made):
            root = CGROOT / d.relative_to(CGROOT).parts[0]
            _empty(d, root)
            d.rmdir()
        if self.stand_in and self.state_file.exists():
            self.state_file.write_text(self.saved)


def _empty(d: Path, to: Path) -> None:
    for pid in (d / "cgroup.procs").read_text().split():
        try:
            (to / "cgroup.procs").write_text(pid)
        except OSError:
            pass  # gone meanwhile
    wait_for(lambda: not (d / "cgroup.procs").read_text().split(), 5)


def own_cgroups(pid: int) -> dict[str, str]:
    """/proc/<pid>/cgroup as {hierarchy: path}."""
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrl, path = line.split(":", 2)
        out[ctrl] = path
    return out


def fd_owner(path: str | os.PathLike) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_uid, st.st_gid
