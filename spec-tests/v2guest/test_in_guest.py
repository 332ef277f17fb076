"""`make test` covers pure cgroup v2 and systemd for real: this boots the throw-away v2 guest
(conformance/v2vm; built on first use, about two minutes) once, and runs inside it
  - marked:    every test marked cgroupv2 or systemd (guestmarks.py), which skip on this host;
  - lifecycle: onggi's lifecycle and cgroup-mount tests, which must pass on a pure-v2 host too.
Each fails here with the guest's pytest output; a guest that fails to boot or runs past
ONGGI_V2GUEST_TIMEOUT fails them with its console tail. Inside the guest this module skips
itself (no guest in a guest).

Knobs: ONGGI_V2GUEST_SUITES=marked,lifecycle (which suites run), ONGGI_V2GUEST_ARGS='-k freeze -x'
(more pytest arguments for the marked suite), ONGGI_V2GUEST_TIMEOUT=1500 (seconds for the boot and
all suites), ONGGI_SKIP_V2GUEST=1 (skip it all, e.g. on a machine without qemu: say so).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from guestmarks import SELECT
from guesttools import IN_GUEST, guest, in_guest

REPO = guest.REPO
GUEST_TIMEOUT = int(os.environ.get("ONGGI_V2GUEST_TIMEOUT", "1500"))
SUITES = os.environ.get("ONGGI_V2GUEST_SUITES", "marked,lifecycle").split(",")
# onggi's own tests that say whether it works on a pure-v2 host (they need no marker)
LIFECYCLE = ["spec-tests/fs/test_cgroup_mounts.py", "spec-tests/runtime/test_lifecycle.py"]
# per test, in the guest: code there runs 10-16 times slower than here
IN_GUEST_TEST_TIMEOUT = "600"

pytestmark = [
    pytest.mark.skipif(bool(IN_GUEST), reason="already inside the v2 guest"),
    pytest.mark.skipif(os.environ.get("ONGGI_SKIP_V2GUEST") == "1",
                       reason="ONGGI_SKIP_V2GUEST=1: the v2 guest suites were not run"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the v2 guest needs root (qemu, debootstrap)"),
    # the guest's own timeout ends a hung run first; the first run also builds the guest
    pytest.mark.timeout(GUEST_TIMEOUT + 1200),
]


def marked_files() -> list[str]:
    """Test files holding cgroupv2/systemd tests, found here (collecting all of spec-tests in
    the guest would take 10-15 s of emulated CPU)."""
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p",
                          "no:cacheprovider", "-m", SELECT, "spec-tests"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    ids = [line for line in res.stdout.splitlines() if "::" in line]
    assert ids, f"no test is marked {SELECT}:\n{res.stdout}{res.stderr}"
    return sorted({i.split("::")[0] for i in ids})


def plan() -> dict[str, list[str]]:
    suites = {}
    if "marked" in SUITES:
        extra = shlex.split(os.environ.get("ONGGI_V2GUEST_ARGS", ""))
        suites["marked"] = ["-m", SELECT, *extra, *marked_files()]
    if "lifecycle" in SUITES:
        suites["lifecycle"] = LIFECYCLE
    return suites


def guest_script(results: Path, suites: dict[str, list[str]]) -> str:
    """One boot, each suite in turn; its output and exit status go to results/<name>.{out,rc}."""
    lines = ["PY=.venv/bin/python"]
    for name, args in suites.items():
        argv = shlex.join(["-p", "no:cacheprovider", "-q", "-rfEs",
                           f"--timeout={IN_GUEST_TEST_TIMEOUT}", *args])
        out = shlex.quote(str(results / name))
        say = shlex.quote(f"== {name}: pytest {shlex.join(args)}")
        lines += [f"echo {say}; t0=$(cut -d' ' -f1 /proc/uptime)",
                  f"$PY -m pytest {argv} > {out}.out 2>&1",
                  f"echo $? > {out}.rc; tail -n 1 {out}.out",
                  f"echo \"== {name}: from uptime $t0 to $(cut -d' ' -f1 /proc/uptime)\""]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def suites():
    build_s = guest.build()
    suites = plan()
    # not under /tmp/pytest-of-root: the guest's pytest prunes old numbered dirs there
    results = Path(tempfile.mkdtemp(prefix="onggi-v2results-"))
    try:
        run = in_guest(guest_script(results, suites), timeout=GUEST_TIMEOUT,
                       shares=(f"{results}:rw",), console=results / "console.log")
        print(f"v2 guest: build check {build_s:.1f}s, boot and suites {run.seconds:.1f}s\n"
              f"{run.output}")
        if run.rc is None:
            pytest.fail(run.report(), pytrace=False)
        got = {}
        for name in suites:
            rc, out = results / f"{name}.rc", results / f"{name}.out"
            got[name] = (int(rc.read_text()) if rc.exists() else None,
                         out.read_text(errors="replace") if out.exists() else run.report())
        return got
    finally:
        shutil.rmtree(results, ignore_errors=True)


def _suite(suites: dict, name: str) -> tuple[int | None, str]:
    if name not in suites:
        pytest.skip(f"ONGGI_V2GUEST_SUITES={','.join(SUITES)} leaves out {name}")
    return suites[name]


def test_marked_suites_pass_in_the_guest(suites):
    rc, output = _suite(suites, "marked")
    assert rc == 0, f"in the v2 guest, pytest -m '{SELECT}' exited {rc}:\n{output}"
    # guestmarks fails (not skips) a marked test whose need the guest does not meet
    assert re.search(r"\b[1-9]\d* passed", output), output


def test_lifecycle_passes_on_pure_v2(suites):
    rc, output = _suite(suites, "lifecycle")
    assert rc == 0, f"in the v2 guest, pytest {' '.join(LIFECYCLE)} exited {rc}:\n{output}"


def test_guest_failure_is_told_apart_from_the_command_status():
    """The command's own 255 is an exit status; a guest that never finishes is a failure that
    names its cause and shows the guest's console."""
    own = in_guest("echo out; echo err >&2; exit 255", mode="minimal", timeout=300)
    assert (own.rc, own.output.split()) == (255, ["out", "err"]), own.report()
    hung = in_guest("sleep 600", mode="minimal", timeout=30)
    assert hung.rc is None and "timed out after" in hung.failure, hung.report()
    assert "guest console tail" in hung.diagnostics, hung.diagnostics
    assert "v2vm-init:" in hung.diagnostics, hung.diagnostics  # printed by the guest's init
