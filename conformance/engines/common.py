"""What both engines' harnesses share: the runtime under test, commands, packages, cleanup."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ONGGI = REPO / ".venv" / "bin" / "onggi"
RUNTIME_ENV = "ONGGI_ENGINE_RUNTIME"  # onggi (default), runc, crun, or a path
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def exit_on_term() -> None:
    """SIGTERM (timeout(1), CI) unwinds like ^C, so that every cleanup still runs."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


class StepFailed(AssertionError):
    """A step's real effect is not what a user of the engine would see with runc."""


@dataclass(frozen=True)
class Runtime:
    name: str  # what the engines call it (podman's runtime name, the CRI handler)
    path: str

    @classmethod
    def select(cls, spec: str | None = None) -> Runtime:
        spec = spec or os.environ.get(RUNTIME_ENV) or "onggi"
        if spec == "onggi":
            return cls("onggi", str(ONGGI))
        if "/" in spec:
            return cls(Path(spec).name, str(Path(spec).resolve()))
        path = shutil.which(spec, path=SBIN_PATH)
        if not path:
            raise SystemExit(f"{RUNTIME_ENV}={spec}: no such runtime on PATH")
        return cls(spec, path)

    def has_verb(self, verb: str) -> bool:
        """Whether the runtime knows `verb` at all (runc and onggi exit non-zero otherwise)."""
        res = subprocess.run([self.path, verb, "--help"], capture_output=True, timeout=30)
        return res.returncode == 0

    def claims_cgroups(self) -> bool:
        """`features` says whether cgroups (v1 or v2) are applied."""
        res = subprocess.run([self.path, "features"], capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            return True  # no features verb (runc 1.1 has one): assume what runc does
        cg = json.loads(res.stdout).get("linux", {}).get("cgroup", {})
        return bool(cg.get("v1") or cg.get("v2"))


def run(argv: list[str], *, check: bool = True, timeout: float = 60, env: dict | None = None,
        cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; `check` turns a non-zero exit into StepFailed."""
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                             stdin=subprocess.DEVNULL, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        raise StepFailed(f"timed out after {timeout}s: {shlex.join(argv)}") from e
    if check and res.returncode != 0:
        said = (res.stderr.strip() or res.stdout.strip()).splitlines()
        raise StepFailed(f"exit {res.returncode}: {said[-1] if said else ''}\n"
                         f"{shlex.join(argv)}\n{res.stderr.strip()}\n{res.stdout.strip()}")
    return res


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise StepFailed(what)


def wait_for(pred: Callable[[], object], what: str, timeout: float = 15) -> object:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise StepFailed(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


# What an exec'd process sees: PID 1's command line, its own pid/mnt/net namespaces, cgroups
EXEC_PROBE = ("cat /proc/1/cmdline | tr '\\0' ' '; echo; for k in pid mnt net; do "
              "readlink /proc/self/ns/$k; done; cat /proc/self/cgroup")


def ns_of(pid: int | str, kind: str) -> str:
    """The namespace `kind` of `pid` ('self' for ours), as readlink shows it."""
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def is_sleep(pid: int, cmdline: bytes = b"sleep\x001000\x00") -> None:
    """`pid` runs the container's command: `start` returns once the init is released, and
    the execve may follow a moment later (with runc as with onggi)."""
    wait_for(lambda: Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline,
             f"pid {pid} to be the container's {cmdline!r}", 5)


def check_exec_probe(output: str, init_pid: int, init_cmd: str = "sleep 1000 ") -> None:
    """EXEC_PROBE's output shows the exec'd process inside the container of `init_pid`."""
    is_sleep(init_pid)  # so PID 1's command line is settled whenever the probe ran
    out = output.splitlines()
    expect(out[:1] == [init_cmd], f"PID 1 seen by exec: {out[:1]}")
    want_ns = [ns_of(init_pid, k) for k in ("pid", "mnt", "net")]
    expect(out[1:4] == want_ns, f"exec's namespaces {out[1:4]} are not the container's")
    want = sorted(Path(f"/proc/{init_pid}/cgroup").read_text().splitlines())
    expect(sorted(out[4:]) == want, f"exec's cgroups {out[4:]} differ from init's {want}")


def in_pty(cmd: list[str], env: dict | None = None, timeout: float = 60,
           cwd: str | None = None) -> subprocess.CompletedProcess:
    """`cmd` on a pseudo-terminal, as a person at a terminal runs it (script(1) makes the
    pty). script's stdin is a pipe left open and silent: at EOF on /dev/null it would end
    the session (and the container's output) early."""
    r, w = os.pipe()
    try:
        res = subprocess.run(["script", "-qec", shlex.join(cmd), "/dev/null"], stdin=r,
                             capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        raise StepFailed(f"timed out after {timeout}s on a pty: {shlex.join(cmd)}") from e
    finally:
        os.close(r)
        os.close(w)
    res.stdout = res.stdout.replace("\r\n", "\n")
    return res


def ensure_packages(pkgs: list[str]) -> None:
    """apt-get install what is missing; raises RuntimeError naming what could not be had."""
    missing = [p for p in pkgs if subprocess.run(["dpkg", "-s", p], capture_output=True)
               .returncode != 0]
    if not missing:
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"needs root to install {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
        res = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} {' '.join(missing)} failed: "
                               f"{res.stderr.strip().splitlines()[-1:] or res.returncode}")


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@dataclass
class Workdir:
    """A private temp dir whose cleanups run in reverse order, each even if another fails."""

    path: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(
        prefix="onggi-engines-", dir="/var/tmp")))
    _undo: list[tuple[str, Callable[[], object]]] = field(default_factory=list)

    def on_cleanup(self, what: str, fn: Callable[[], object]) -> None:
        self._undo.append((what, fn))

    def cleanup(self) -> list[str]:
        """Undo everything; returns what failed (cleanup never raises)."""
        errors = []
        while self._undo:
            what, fn = self._undo.pop()
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - go on with the rest, report at the end
                errors.append(f"{what}: {e}")
        unmount_under(self.path)
        shutil.rmtree(self.path, ignore_errors=True)
        if self.path.exists():
            errors.append(f"{self.path} could not be removed")
        return errors


def mounts_under(top: Path) -> list[str]:
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].replace("\\040", " ")
            if mnt == str(top) or mnt.startswith(str(top) + "/"):
                found.append(mnt)
    return found


def unmount_under(top: Path) -> None:
    """Detach every mount at or below `top`, deepest first (engines leave overlay and shm
    mounts in their state dirs when a container is not removed cleanly)."""
    for mnt in sorted(set(mounts_under(top)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mnt], capture_output=True)


def kill_pid(pid: int, grace: float = 5) -> None:
    """TERM, then KILL after `grace` seconds, one process we started."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                if not Path(f"/proc/{pid}").exists():
                    return
            time.sleep(0.05)


def write_wrapper(path: Path, runtime: Runtime, calls_log: Path, root: Path | None = None,
                  record_dir: Path | None = None) -> Path:
    """A shell wrapper that logs each call, optionally copies config.json on create, and
    execs the runtime (with a private --root when `root` is given: podman passes none)."""
    lines = ["#!/bin/sh", f'printf "%s\\n" "$*" >> {shlex.quote(str(calls_log))}']
    if record_dir is not None:
        lines += [
            'b=; prev=; for a; do',
            '  case "$a" in --bundle=*) b=${a#--bundle=};; esac',
            '  case "$prev" in --bundle|-b) b=$a;; esac; prev=$a',
            'done',
            'case " $* " in *" create "*) [ -n "$b" ] && '
            f'cp "$b/config.json" {shlex.quote(str(record_dir))}/"$a.json";; esac',
        ]
    root_args = f" --root {shlex.quote(str(root))}" if root else ""
    lines.append(f'exec {shlex.quote(runtime.path)}{root_args} "$@"')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o755)
    return path


def runtime_calls(calls_log: Path, cid: str) -> list[str]:
    """The runtime invocations the wrapper logged for container `cid`."""
    if not calls_log.exists():
        return []
    return [ln for ln in calls_log.read_text().splitlines() if cid in ln.split()]


def called(calls: list[str], verb: str) -> bool:
    """Whether one of the logged runtime calls is `verb` (global options come first)."""
    return any(verb in ln.split() for ln in calls)
