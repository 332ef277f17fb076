"""Helpers for the cgroup suites: the host's layout, a container's cgroup dirs (from its
state.json, as engines read them from /proc/<pid>/cgroup), leftovers, runc side by side.

The tests detect the host's mode: v1/hybrid tests run on this host, v2-only tests skip here
with a reason and run in a pure-v2 guest (conformance/v2vm)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from runtime.cgroups import hierarchy

ROOT = "/sys/fs/cgroup"
MODE = hierarchy.mode()
V1 = MODE in ("v1", "hybrid")

v1_host = pytest.mark.skipif(not V1, reason=f"needs v1 cgroup controllers (this host is {MODE})")
v2_host = pytest.mark.skipif(
    MODE != "v2", reason=f"needs a pure cgroup v2 host (this one is {MODE}): runs in the "
    "pure-v2 guest (conformance/v2vm)")
has_cgroup2 = pytest.mark.skipif(MODE == "v1", reason="the host has no cgroup2 hierarchy")


def mounted(ctrl: str) -> bool:
    """Is this controller usable here (a v1 mount, or enabled at the v2 root)?"""
    if MODE == "v2":
        return ctrl in Path(ROOT, "cgroup.subtree_control").read_text().split()
    return any(ctrl in m for m in os.listdir(ROOT) if os.path.isdir(os.path.join(ROOT, m)))


def uid(prefix: str = "cg") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def cgpaths(bundle, cid: str) -> dict[str, str]:
    doc = json.loads((bundle.root / cid / "state.json").read_text())
    return doc["cgroup_paths"]


def read(bundle, cid: str, ctrl: str, name: str) -> str:
    return Path(cgpaths(bundle, cid)[ctrl], name).read_text().strip()


def proc_cgroups(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(",") if ctrls else [""]:
            out[c] = path
    return out


def leftovers(name: str, depth: int = 6) -> list[str]:
    """Every cgroup dir named `name` anywhere under /sys/fs/cgroup (to `depth`)."""
    found = []
    for top, dirs, _ in os.walk(ROOT):
        if top[len(ROOT):].count("/") >= depth:
            dirs[:] = []
            continue
        for d in dirs:
            if d == name:
                found.append(os.path.join(top, d))
    return found


def resources(bundle, **res) -> None:
    bundle.config["linux"].setdefault("resources", {}).update(res)


def running(bundle, script: str = "sleep 1000", cid: str | None = None, start: bool = True) -> str:
    cid = bundle.create(cid, args=["sh", "-c", script])
    if start:
        assert bundle.onggi("start", cid).returncode == 0
    return cid


def create_fails(bundle, cid: str | None = None) -> str:
    """A create that must fail: its one-line error; nothing of it left (state, cgroups)."""
    cid = cid or bundle.new_id()
    bundle.write()
    res = bundle.onggi("create", "-b", str(bundle.path), cid, stdin=subprocess.DEVNULL)
    assert res.returncode != 0, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("onggi: "), res.stderr
    assert not (bundle.root / cid).exists()
    assert leftovers(cid) == [], "a failed create left cgroups behind"
    return lines[0]


def wait_for(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def block_device() -> tuple[int, int] | None:
    """A real disk of this host (major, minor), for the throttle files."""
    for name in sorted(os.listdir("/sys/block")):
        if name.startswith(("loop", "ram", "zram", "dm-", "sr", "nbd")):
            continue
        major, minor = Path(f"/sys/block/{name}/dev").read_text().strip().split(":")
        return int(major), int(minor)
    return None


class Runc:
    """runc 1.1.5 with a private root, to compare what it writes for the same config."""

    def __init__(self, tmp: Path) -> None:
        self.bin = shutil.which("runc")
        self.root = tmp / "runc-root"
        self.ids: list[str] = []

    def __call__(self, *args: str, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run([self.bin, "--root", str(self.root), *args], timeout=30, **kw)

    def create(self, bundle, cid: str, args: list[str] | None = None) -> None:
        self.ids.append(cid)
        bundle.write(args or ["sleep", "1000"])
        err = bundle.path.parent / f"{cid}.runc.err"
        with open(err, "w") as fe:  # the init inherits it: a pipe would stay open
            res = self("create", "-b", str(bundle.path), cid, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=fe, capture_output=False)
        assert res.returncode == 0, err.read_text()

    def paths(self, cid: str) -> dict[str, str]:
        doc = json.loads((self.root / cid / "state.json").read_text())
        return doc["cgroup_paths"]

    def cleanup(self) -> None:
        for cid in self.ids:
            self("delete", "--force", cid)


@pytest.fixture
def runc(tmp_path):
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    r = Runc(tmp_path)
    yield r
    r.cleanup()
