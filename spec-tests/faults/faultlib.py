"""Fault injection: run a verb with ONGGI_FAULT=STEP (runtime/faults.py), so that the runtime,
or its child, is SIGKILLed at that step; then `delete --force` and look for what is left.

The steps are read from the sources (every faults.point("verb:step") and every init step()),
so a step added later is tested without touching this file.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

from harness import REPO, Bundle, FdServer
from leakcheck import TAG_VAR, Probe, state_dirs

# Init steps reached only once `start` opened the exec fifo.
AFTER_START = ("init:start-container-hooks", "init:exec")


def discover() -> tuple[list[str], set[str]]:
    """(every point, those of a child process). Literal faults.point("verb:step") calls run
    in the verb's own process; a module with a step = faults.Steps("prefix:", ...) (init.py,
    exec's child) adds prefix + each of its step("...") names, in the child."""
    points: set[str] = set()
    child: set[str] = set()
    for path in sorted((REPO / "runtime").rglob("*.py")):
        text = path.read_text()
        points |= set(re.findall(r'faults\.point\("([a-z0-9-]+:[a-z0-9-]+)"\)', text))
        prefix = re.search(r'\bstep = faults\.Steps\("([a-z0-9-]+:)"', text)
        if prefix:
            child |= {prefix[1] + s for s in re.findall(r'\bstep\("([a-z0-9-]+)"\)', text)}
    return sorted(points | child), child


POINTS, CHILD_POINTS = discover()


def _with(prefix: str) -> list[str]:
    return [p for p in POINTS if p.startswith(prefix)]


VERBS: dict[str, list[str]] = {
    "create": _with("create:") + [p for p in _with("init:") if p not in AFTER_START],
    "start": _with("start:") + [p for p in AFTER_START if p in POINTS],
    "delete": _with("delete:"),
    "delete-broken": _with("delete:"),  # delete --force of a container whose state.json is cut
    "run": _with("create:") + _with("init:") + _with("start:") + _with("run:")
    + [p for p in _with("delete:") if p != "delete:killed"],  # run deletes a stopped one
    "exec": _with("exec:"),
}
CELLS = [(verb, point) for verb, points in VERBS.items() for point in points]

def _rootless_binds(cfg: dict, rig) -> None:
    """A user namespace and a bind mount: their sources are opened from the parent."""
    from runtime.spec_default import default_spec

    rootless = default_spec(rootless=True)
    cfg["linux"]["namespaces"] = rootless["linux"]["namespaces"]
    for key in ("uidMappings", "gidMappings"):
        cfg["linux"][key] = rootless["linux"][key]
    cfg["mounts"] = rootless["mounts"]
    cfg["linux"].pop("resources", None)


# Steps that only some configs reach: the config change that reaches each. A step missing
# here that the default config does not reach fails its cell with "was not reached".
NEEDS = {
    "init:seccomp": lambda cfg, rig: cfg["linux"].__setitem__(
        "seccomp", {"defaultAction": "SCMP_ACT_ALLOW"}),
    "init:seccomp-notify": lambda cfg, rig: cfg["linux"].__setitem__(
        "seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": rig.console.path,
                    "syscalls": [{"names": ["getcpu"], "action": "SCMP_ACT_NOTIFY"}]}),
    "init:mount-sources": _rootless_binds,
}
NEEDS["exec:seccomp-notify"] = NEEDS["init:seccomp-notify"]

# How a verb says its child died under it (create, or run's create; run's start).
CHILD_DIED = ("container init exited before it was ready", "cannot start")

MATRIX: dict[str, dict[str, str]] = {}  # point -> verb -> outcome
SUMMARY: list[str] = []  # lines for the end of the run (the kill loops' figures)


def format_matrix() -> str:
    verbs = [v for v in VERBS if any(v in row for row in MATRIX.values())]
    width = max(len(p) for p in MATRIX) + 2
    cols = {v: max(len(v), *(len(r.get(v, "")) for r in MATRIX.values())) + 2 for v in verbs}
    lines = ["step".ljust(width) + "".join(v.ljust(cols[v]) for v in verbs)]
    for point in sorted(MATRIX):
        row = MATRIX[point]
        lines.append(point.ljust(width) + "".join(row.get(v, "-").ljust(cols[v]) for v in verbs))
    return "\n".join(lines)


class ConsoleSink(FdServer):
    """A --console-socket that keeps each pty master it is sent, as an engine does (closing
    it would hang the container up)."""

    def __init__(self, path: Path) -> None:
        self.fds: list[int] = []
        super().__init__(path, lambda _msg, fds: self.fds.extend(fds))

    def close(self) -> None:
        super().close()
        for fd in self.fds:
            os.close(fd)


class Rig:
    """One bundle and --root; each call gets a fresh id, tag and cgroupsPath."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.root = bundle.root
        self.console = ConsoleSink(bundle.path.parent / "console.sock")

    def new(self, args: list[str], terminal: bool = False,
            point: str | None = None) -> tuple[str, str]:
        cid = "f" + uuid.uuid4().hex[:12]
        self.bundle.ids.append(cid)  # the module's teardown deletes (or kills) what is left
        tag = uuid.uuid4().hex
        cfg = copy.deepcopy(self.bundle.config)
        cfg["process"]["args"] = args
        cfg["process"]["terminal"] = terminal
        if point in NEEDS:
            NEEDS[point](cfg, self)
        cfg["process"]["env"] = list(cfg["process"]["env"]) + [f"{TAG_VAR}={tag}"]
        cfg["linux"]["cgroupsPath"] = "/" + cid  # named after the id: the probe finds it
        (self.bundle.path / "config.json").write_text(json.dumps(cfg))
        return cid, tag

    def probe(self, cid: str, tag: str) -> Probe:
        return Probe(paths=[self.bundle.path, self.root], ids=[cid], tag=tag)

    def onggi(self, *args: str, fault: str | None = None, timeout: float = 30,
              cid: str | None = None) -> subprocess.CompletedProcess:
        """Any verb; stdout/stderr through files (an init would hold a pipe open)."""
        env = dict(os.environ)
        env.pop("ONGGI_FAULT", None)
        if fault:
            env["ONGGI_FAULT"] = fault
        log = self.bundle.path.parent / f"{cid or 'x'}-{uuid.uuid4().hex[:6]}.log"
        with open(log, "w+") as f:
            res = subprocess.run(
                ["/usr/bin/env", *self._cmd(), "--root", str(self.root), *args],
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=env,
                timeout=timeout)
            f.seek(0)
            res.stdout = f.read()
        log.unlink()
        return res

    @staticmethod
    def _cmd() -> list[str]:
        from harness import ONGGI

        return list(ONGGI)

    def create(self, cid: str, fault: str | None = None, terminal: bool = False):
        extra = ["--console-socket", self.console.path] if terminal else []
        return self.onggi("create", "-b", str(self.bundle.path), *extra, cid, fault=fault,
                          cid=cid)

    def status(self, cid: str) -> str:
        res = self.onggi("state", cid)
        if res.returncode != 0:
            return "absent" if "does not exist" in res.stdout else "broken"
        return json.loads(res.stdout)["status"]

    def wait_status(self, cid: str, want: str, timeout: float = 5) -> str:
        deadline = time.monotonic() + timeout
        while (got := self.status(cid)) != want and time.monotonic() < deadline:
            time.sleep(0.02)
        return got


def outcome(res: subprocess.CompletedProcess) -> str:
    """How the faulted command ended, in a few words."""
    if res.returncode == -9:
        return "killed"
    if res.returncode == 0:
        return "ok"
    lines = res.stdout.splitlines()
    if lines and lines[-1].startswith("onggi: "):
        assert len(lines) == 1, f"more than one line: {res.stdout!r}"
        assert "Traceback" not in res.stdout
        return "failed"
    return f"exit {res.returncode}"


def run_cell(rig: Rig, verb: str, point: str) -> str:
    """Run `verb` with the fault at `point`; then delete --force and check that nothing is
    left and the id can be used again. Returns the cell's text for the matrix."""
    long_lived = ["sleep", "30"]
    terminal = point == "init:console"
    if verb == "run" and point in ("run:exited", "delete:removing"):
        args = ["true"]  # these steps come after the container exits
    elif verb == "run" and point in AFTER_START:
        args = ["true"]
    else:
        args = long_lived
    cid, tag = rig.new(args, terminal=terminal, point=point)
    probe = rig.probe(cid, tag)
    before = probe.snapshot()
    # A step of the verb's own process (it must die there), or of its child.
    runtime_point = point not in CHILD_POINTS

    if verb == "create":
        res = rig.create(cid, fault=point, terminal=terminal)
        got = outcome(res)
        if got == "ok":  # the child died after create returned (waiting for state, or fifo)
            got = "ok, " + rig.wait_status(cid, "stopped")
    elif verb == "start":
        res = rig.create(cid, fault=point if point in AFTER_START else None)
        assert res.returncode == 0, res.stdout
        res = rig.onggi("start", cid, fault=None if point in AFTER_START else point)
        got = outcome(res)
        if got == "ok":
            got = "ok, " + rig.wait_status(cid, "stopped")
    elif verb in ("delete", "delete-broken"):
        assert rig.create(cid).returncode == 0
        assert rig.onggi("start", cid).returncode == 0
        if verb == "delete-broken":
            (rig.root / cid / "state.json").write_text(f'{{"id": "{cid}", "pid": ')
        res = rig.onggi("delete", "--force", cid, fault=point)
        got = outcome(res)
    elif verb == "run":
        extra = ["--console-socket", rig.console.path] if terminal else []
        res = rig.onggi("run", "-b", str(rig.bundle.path), *extra, cid, fault=point,
                        timeout=60)
        got = outcome(res)
    elif verb == "exec":
        assert rig.create(cid).returncode == 0
        assert rig.onggi("start", cid).returncode == 0
        tty = ["-t", "--console-socket", rig.console.path] if point == "exec:console" else []
        res = rig.onggi("exec", "--detach", *tty, cid, "sleep", "30", fault=point)
        got = outcome(res)
    else:
        raise AssertionError(verb)

    if runtime_point:
        assert got == "killed", f"{verb} was not killed at {point}: {got}"
    else:
        assert got not in ("ok", "ok, running", "ok, created"), f"{point} was not reached: {got}"
        if got == "failed" and verb != "exec":  # the child died there, it did not just fail
            assert any(w in res.stdout for w in CHILD_DIED), f"{point}: {res.stdout}"

    res = rig.onggi("delete", "--force", cid)
    assert res.returncode == 0, f"delete --force after {verb} x {point}: {res.stdout}"
    left = probe.leaks(before) + state_dirs(rig.root, [cid])
    assert not left, f"{verb} x {point}: left {left}"
    again = rig.create(cid, terminal=terminal)
    assert again.returncode == 0, f"the id cannot be used again: {again.stdout}"
    assert rig.onggi("delete", "--force", cid).returncode == 0
    assert not state_dirs(rig.root, [cid])
    cell = got + (" (lingered)" if probe.lingering else "")
    MATRIX.setdefault(point, {})[verb] = cell
    return cell
