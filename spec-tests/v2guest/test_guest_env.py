"""The v2 guest is what later tests build on: pure cgroup v2, systemd as PID 1 with D-Bus, and
runc's systemd driver creating a .scope with the config's limits. Skipped on this v1-hybrid
host; run in the guest by test_in_guest.py (make test / make test-v2)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest
from guesttools import (
    cgroup_dir,
    manager_property,
    own_cgroup,
    read_cgroup,
    runc,
    systemctl_show,
    unit_gone,
)

MIB64 = 64 * 1024 * 1024
SHOW = "cat /proc/self/cgroup /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max"


def statfs_type(path: str) -> str:
    return subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.cgroupv2
def test_only_cgroup2_is_mounted():
    assert statfs_type("/sys/fs/cgroup") == "cgroup2fs"
    with open("/proc/self/mountinfo") as f:
        fstypes = {line.split(" - ")[1].split()[0] for line in f}
    assert "cgroup" not in fstypes, "a cgroup v1 hierarchy is mounted"
    controllers = read_cgroup("/", "cgroup.controllers").split()
    assert {"cpuset", "cpu", "io", "memory", "pids", "hugetlb"} <= set(controllers)


@pytest.mark.cgroupv2
def test_venv_runs_with_its_c_extensions():
    """The host-built .venv (on /usr/bin/python3.11) works here, C extensions included."""
    assert os.path.realpath(os.sys.executable) == "/usr/bin/python3.11"
    import prctl  # noqa: F401  (python-prctl: a C extension linked to libcap)
    import pyroute2  # noqa: F401
    import pyseccomp
    import zstandard  # noqa: F401
    assert pyseccomp.SyscallFilter is not None


@pytest.mark.systemd
def test_systemd_is_pid1_and_the_bus_answers():
    assert os.readlink("/proc/1/exe").endswith("/systemd")
    assert manager_property("Version").startswith('s "252')
    # this test runs in v2run.service, which systemd placed and delegated
    assert own_cgroup() == "/system.slice/v2run.service"
    assert systemctl_show("v2run.service", "Delegate")["Delegate"] == "yes"


def _limits(bundle, cgroups_path: str, args: list[str]) -> None:
    bundle.config["linux"]["cgroupsPath"] = cgroups_path
    bundle.config["linux"]["resources"].update(
        {"memory": {"limit": MIB64}, "pids": {"limit": 100}})
    bundle.write(args)


@pytest.mark.cgroupv2
def test_runc_cgroupfs_driver_applies_limits(bundle, tmp_path):
    """runc's own cgroupfs driver on pure v2: the reference for onggi's v2 manager."""
    cid = "v2s" + uuid.uuid4().hex[:8]
    rel = f"/onggi-smoke-{cid}/{cid}"
    _limits(bundle, rel, ["sh", "-c", SHOW])
    res = runc("run", "-b", str(bundle.path), cid, root=tmp_path / "runc")
    try:
        assert res.returncode == 0, res.stderr
        assert res.stdout.split() == ["0::/", str(MIB64), "100"]
        assert not cgroup_dir(rel).exists(), "runc left the container's cgroup behind"
    finally:
        runc("delete", "--force", cid, root=tmp_path / "runc")
        if cgroup_dir(rel).parent.exists():
            cgroup_dir(rel).parent.rmdir()


@pytest.mark.systemd
@pytest.mark.cgroupv2
def test_runc_systemd_driver_creates_a_scope(bundle, tmp_path):
    """`runc --systemd-cgroup` with slice:prefix:name makes systemd create prefix-name.scope in the
    slice over D-Bus, with MemoryMax and TasksMax, holding the container's init."""
    cid = "v2s" + uuid.uuid4().hex[:8]
    unit, root = f"onggi-{cid}.scope", tmp_path / "runc"
    _limits(bundle, f"system.slice:onggi:{cid}", ["sh", "-c", SHOW])
    out, err = tmp_path / "out", tmp_path / "err"
    # files, not pipes: the container's init inherits them and would hold a pipe open
    with open(out, "w") as fo, open(err, "w") as fe:
        res = runc("create", "-b", str(bundle.path), cid, root=root, systemd=True,
                   capture_output=False, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL)
    try:
        assert res.returncode == 0, err.read_text()
        show = systemctl_show(unit, "ControlGroup", "MemoryMax", "TasksMax", "ActiveState",
                              "Delegate")
        assert show["ControlGroup"] == f"/system.slice/{unit}", show
        assert show["ActiveState"] == "active", show
        assert (show["MemoryMax"], show["TasksMax"]) == (str(MIB64), "100"), show
        rel = show["ControlGroup"]
        assert read_cgroup(rel, "memory.max") == str(MIB64)
        assert read_cgroup(rel, "pids.max") == "100"
        init = json.loads(runc("state", cid, root=root, check=True).stdout)["pid"]
        assert str(init) in read_cgroup(rel, "cgroup.procs").split()

        assert runc("start", cid, root=root).returncode == 0
        deadline = time.monotonic() + 60
        while json.loads(runc("state", cid, root=root).stdout)["status"] != "stopped":
            assert time.monotonic() < deadline, "the container did not stop"
            time.sleep(0.1)
        assert out.read_text().split() == ["0::/", str(MIB64), "100"]
    finally:
        runc("delete", "--force", cid, root=root)
    assert unit_gone(unit), systemctl_show(unit, "LoadState", "ActiveState")


@pytest.mark.systemd
@pytest.mark.cgroupv2
def test_podman_with_systemd_cgroup_manager(busybox_rootfs, tmp_path):
    """podman (cgroup_manager=systemd) runs runc with --systemd-cgroup: the container gets its
    limits in a libpod scope. The same with --runtime onggi: spec-tests/cgroups/
    test_cg_systemd.py."""
    runroot = tempfile.mkdtemp(prefix="pm", dir="/run")  # podman wants under 50 characters
    res = subprocess.run(
        ["podman", "--root", str(tmp_path / "storage"), "--runroot", runroot,
         "--runtime", "runc", "--cgroup-manager", "systemd", "run", "--rm", "--network", "none",
         "--memory", "64m", "--pids-limit", "50", "--rootfs", str(busybox_rootfs), "sh", "-c", SHOW],
        capture_output=True, text=True, timeout=110)
    shutil.rmtree(runroot, ignore_errors=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["0::/", str(MIB64), "50"], res.stdout + res.stderr
