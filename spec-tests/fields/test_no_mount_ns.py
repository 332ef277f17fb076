"""Containers without a mount namespace: they run in the host's mount namespace, chrooted
into the rootfs with the config's mounts, and delete (or a failed create) leaves the host's
mount table exactly as before. Other tests mount things at the same time, so the host's
table is compared on what concerns us: every mount under the test's dir, and the mounts on
the way to it (their propagation must not change either)."""

from __future__ import annotations

import json
import os

import pytest


def _without_mount_ns(bundle, keep=("pid", "ipc", "uts", "network", "cgroup")) -> None:
    bundle.config["linux"]["namespaces"] = [{"type": t} for t in keep]


def _ours(top) -> list[str]:
    """mountinfo lines (ids and all) under `top`, plus those of the mounts above it."""
    top = os.path.realpath(top)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            if point == top or point.startswith(top + "/") or top.startswith(
                    point.rstrip("/") + "/"):
                out.append(line)
    return out


def _under(top) -> list[str]:
    top = os.path.realpath(top)
    return [line for line in _ours(top) if line.split()[4].startswith(top)]


def test_runs_in_the_hosts_mount_namespace_chrooted(bundle):
    _without_mount_ns(bundle)
    before = _ours(bundle.path)
    res = bundle.sh("readlink /proc/self/ns/mnt; ls /; grep -c . /proc/self/mountinfo; "
                    "grep ' /proc ' /proc/self/mountinfo")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == os.readlink("/proc/self/ns/mnt")
    assert {"bin", "etc", "proc", "dev"} <= set(lines) and "work" not in lines
    assert " - proc " in res.stdout  # its own /proc (it has its own pid namespace)
    assert _ours(bundle.path) == before
    assert os.listdir(bundle.root) == []


def test_create_start_delete_leave_the_mount_table_as_before(bundle):
    _without_mount_ns(bundle)
    before = _ours(bundle.path)
    cid = bundle.create(args=["sleep", "60"])
    try:
        st = json.loads((bundle.root / cid / "state.json").read_text())
        anchor = st["host_mounts"]
        made = _under(bundle.rootfs)
        assert anchor["path"] == os.path.realpath(bundle.rootfs)
        assert any(int(line.split()[0]) == anchor["mnt_id"] for line in made)
        points = {line.split()[4] for line in made}
        for sub in ("proc", "dev", "dev/pts", "dev/shm", "dev/mqueue", "sys"):
            assert os.path.join(anchor["path"], sub) in points
        bundle.onggi("start", cid, check=True)
        assert bundle.state(cid)["status"] == "running"
    finally:
        res = bundle.onggi("delete", "--force", cid)
    assert res.returncode == 0, res.stderr
    assert _ours(bundle.path) == before


def test_delete_after_the_container_exited(bundle):
    _without_mount_ns(bundle)
    before = _ours(bundle.path)
    cid = bundle.create(args=["true"])
    bundle.onggi("start", cid, check=True)
    bundle.wait_stopped(cid)
    assert _under(bundle.rootfs)  # the mounts stay until delete, as runc's do
    bundle.onggi("delete", cid, check=True)
    assert _ours(bundle.path) == before


@pytest.mark.parametrize("breakage", ["mount", "cwd"])
def test_failed_create_removes_every_mount(bundle, breakage):
    """A mount that fails after others were made, or a failure in the init after all of
    them: nothing is left in the host's table, and no state."""
    _without_mount_ns(bundle)
    if breakage == "mount":
        bundle.config["mounts"].append({"destination": "/late", "type": "bind",
                                        "source": str(bundle.path / "no-such-dir"),
                                        "options": ["bind"]})
    else:
        bundle.config["process"]["cwd"] = "/etc/passwd/x"
    before = _ours(bundle.path)
    res = bundle.run(["true"])
    assert res.returncode != 0
    assert len(res.stderr.splitlines()) == 1, res.stderr
    assert _ours(bundle.path) == before
    assert os.listdir(bundle.root) == []


def test_no_namespaces_at_all(bundle):
    """linux_ns_itype's case: every namespace is the host's."""
    _without_mount_ns(bundle, keep=())
    bundle.config.pop("hostname", None)
    before = _ours(bundle.path)
    res = bundle.sh("for n in mnt pid net ipc uts cgroup; do readlink /proc/self/ns/$n; done")
    assert res.returncode == 0, res.stderr
    want = [os.readlink(f"/proc/self/ns/{n}") for n in ("mnt", "pid", "net", "ipc", "uts",
                                                        "cgroup")]
    assert res.stdout.split() == want
    assert _ours(bundle.path) == before


def test_masked_and_readonly_paths_apply(bundle):
    _without_mount_ns(bundle)
    bundle.config["linux"]["maskedPaths"] = ["/proc/version", "/sys/firmware"]
    bundle.config["linux"]["readonlyPaths"] = ["/proc/sys"]
    before = _ours(bundle.path)
    res = bundle.sh("wc -c < /proc/version; ls /sys/firmware | wc -l; "
                    "grep ' /proc/sys ' /proc/self/mountinfo")
    assert res.returncode == 0, res.stderr
    out = res.stdout.split("\n")
    assert out[0].strip() == "0" and out[1].strip() == "0"
    assert " ro," in out[2]
    assert _ours(bundle.path) == before


def test_root_readonly(bundle):
    _without_mount_ns(bundle)
    bundle.config["root"]["readonly"] = True
    before = _ours(bundle.path)
    res = bundle.sh("touch /x 2>&1; echo rc=$?")
    assert "rc=1" in res.stdout and "Read-only" in res.stdout
    assert _ours(bundle.path) == before


def test_rootfs_propagation_needs_a_mount_namespace(bundle):
    _without_mount_ns(bundle)
    bundle.config["linux"]["rootfsPropagation"] = "private"
    res = bundle.run(["true"])
    assert res.returncode != 0
    assert res.stderr.startswith("onggi: config: linux.rootfsPropagation: needs a mount "
                                 "namespace")
