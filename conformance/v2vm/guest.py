"""Run a command in the throw-away pure cgroup v2 guest, from Python (tests, scripts).

    from conformance.v2vm import guest
    res = guest.run(".venv/bin/python -m pytest -q -m cgroupv2 spec-tests/cgroups")
    res.check()            # AssertionError with the output (and console tail) unless rc == 0

The checkout is shared read-write at its own path and is the command's cwd; ../shared is shared
read-only when it exists (the harness reads the schemas there). Inside, ONGGI_V2GUEST is the mode
("systemd" or "minimal"): guestmarks.py uses it so that marked tests fail instead of skipping
there, and the host-side wrapper uses it to not start a guest from inside a guest.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = Path(os.environ.get("ONGGI_V2VM_CACHE", "/var/tmp/onggi-v2vm"))
RUN_SH = HERE / "run.sh"
BUILD_SH = HERE / "build.sh"
# Inside the guest: "systemd" or "minimal"; empty on a host.
IN_GUEST = os.environ.get("ONGGI_V2GUEST", "")
GUEST_FAILURE = 255


class GuestBuildError(RuntimeError):
    pass


@dataclass
class GuestRun:
    """One boot: the command's exit status (None when the guest itself failed), its output
    (stdout and stderr merged, as the guest's console gave them), and run.sh's diagnostics."""

    command: str
    mode: str
    rc: int | None
    output: str
    diagnostics: str  # run.sh's stderr: build messages, guest failure reason, console tail
    seconds: float
    failure: str = ""  # why the guest failed, when rc is None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def report(self, tail: int = 200) -> str:
        lines = self.output.splitlines()
        shown = "\n".join(lines[-tail:])
        cut = f"(last {tail} of {len(lines)} lines)\n" if len(lines) > tail else ""
        head = (f"guest failure ({self.failure})" if self.rc is None
                else f"exit status {self.rc}")
        diag = f"\n--- run.sh stderr ---\n{self.diagnostics.strip()}" if self.rc is None else ""
        return (f"in the {self.mode} v2 guest, {self.command!r}: {head} after "
                f"{self.seconds:.1f}s\n--- output ---\n{cut}{shown}{diag}")

    def check(self) -> GuestRun:
        if self.rc != 0:
            raise AssertionError(self.report())
        return self


def built() -> bool:
    """True when the guest exists and is up to date (builds nothing)."""
    return subprocess.run([str(BUILD_SH), "--check"], capture_output=True).returncode == 0


def build(timeout: float = 1800) -> float:
    """Build the guest (or nothing, when it is up to date); returns the seconds it took."""
    t0 = time.monotonic()
    res = subprocess.run([str(BUILD_SH)], capture_output=True, text=True, timeout=timeout,
                         env=_env({}))
    if res.returncode != 0:
        out = (res.stdout + res.stderr).strip().splitlines()
        raise GuestBuildError(f"{BUILD_SH} failed ({res.returncode}):\n" + "\n".join(out[-40:]))
    return time.monotonic() - t0


def run(command: str, *, mode: str = "systemd", timeout: float = 900, cwd: Path = REPO,
        env: dict[str, str] | None = None, shares: tuple[str, ...] = (),
        console: Path | None = None) -> GuestRun:
    """Boot the guest, run `command` with /bin/sh in `cwd` (shared read-write), return the result.

    env: variables exported before the command. shares: more host dirs, at the same path inside,
    read-only unless they end in ":rw". timeout covers boot and command. console: keep the guest's
    kernel/systemd console there. Builds the guest first when it is missing or stale.
    """
    if IN_GUEST:
        raise RuntimeError("already inside the v2 guest (ONGGI_V2GUEST is set)")
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in (env or {}).items())
    all_shares = list(shares)
    shared = REPO.parent / "shared"
    if shared.is_dir() and not any(s.split(":")[0] == str(shared) for s in shares):
        all_shares.append(str(shared))
    with tempfile.TemporaryDirectory(prefix="v2vm-") as tmp:
        status = Path(tmp) / "status"
        knobs = {"V2_MODE": mode, "V2_TIMEOUT": str(int(timeout)),
                 "V2_STATUS_FILE": str(status), "V2_EXTRA_SHARES": " ".join(all_shares)}
        if console is not None:
            knobs["V2_CONSOLE"] = str(console)
        t0 = time.monotonic()
        out, err = _run_group([str(RUN_SH), str(cwd), exports + command], _env(knobs),
                              timeout + 120)  # run.sh's own V2_TIMEOUT fires first
        seconds = time.monotonic() - t0
        word, _, rest = (status.read_text().strip() if status.exists()
                         else "guest-failure no status from run.sh").partition(" ")
    if word == "rc":
        return GuestRun(command, mode, int(rest), out, err, seconds)
    return GuestRun(command, mode, None, out, err, seconds, failure=rest)


def _env(knobs: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(knobs)
    env["ONGGI_V2VM_CACHE"] = str(CACHE)
    return env


def _run_group(argv: list[str], env: dict[str, str], timeout: float) -> tuple[str, str]:
    """run.sh in a process group of its own (qemu included), killed whole on timeout or on any
    exception (pytest-timeout, ^C), so no guest outlives the test that started it."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        _kill_group(proc)
        raise
    return out.decode(errors="replace"), err.decode(errors="replace")


def _kill_group(proc: subprocess.Popen) -> None:
    """TERM first (run.sh's trap stops qemu and removes its control dir), then KILL whatever of
    the group is left, qemu included."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
    proc.wait()
