"""Real containers (`onggi create/start/delete`): no mounts leak onto the host, not after
delete and not after a failed create; cwd through a symlink; propagation with a host mount."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import fs_harness
import pytest
from harness import Bundle  # spec-tests/harness.py: the real-container harness


def host_mounts_under(path: Path) -> list[str]:
    return [m for m in fs_harness.host_mounts() if str(path) in m]


def no_process_with(marker: str) -> bool:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    return False
        except OSError:
            pass
    return True


def wait_stopped(bundle, cid: str, timeout: float = 10) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if bundle.state(cid)["status"] == "stopped":
            return
        time.sleep(0.05)
    raise TimeoutError(cid)


def test_no_mounts_leak_after_delete(bundle, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    bundle.config["mounts"].append({"destination": "/vol", "type": "bind",
                                    "source": str(vol), "options": ["rbind", "ro"]})
    before = fs_harness.host_mounts()
    cid = bundle.create(args=["sleep", "30"])
    assert bundle.state(cid)["status"] == "created"
    # the container's mounts live in its own namespace only
    assert host_mounts_under(tmp_path) == []
    res = bundle.onggi("delete", "--force", cid)
    assert res.returncode == 0, res.stderr
    assert host_mounts_under(tmp_path) == []
    assert [m for m in fs_harness.host_mounts() if m not in before] == []


@pytest.mark.parametrize("breakage", ["bad-fstype", "missing-source", "symlinked-proc"])
def test_failed_create_leaves_nothing(bundle, tmp_path, breakage):
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    if breakage == "bad-fstype":
        bundle.config["mounts"].append({"destination": "/x", "type": "nosuchfs",
                                        "source": "none"})
    elif breakage == "missing-source":
        bundle.config["mounts"].append({"destination": "/x", "type": "bind",
                                        "source": str(tmp_path / "nope"), "options": ["bind"]})
    else:
        (bundle.rootfs / "proc").rmdir()
        os.symlink("/", bundle.rootfs / "proc")
    before = fs_harness.host_mounts()
    cid = bundle.new_id()
    bundle.write(["sleep", marker])
    res = bundle.onggi("create", "-b", str(bundle.path), cid)
    assert res.returncode != 0
    err = res.stderr.strip().splitlines()[-1]
    assert ("mounts[" in err) or ("proc must be mounted" in err), err
    assert [m for m in fs_harness.host_mounts() if m not in before] == []
    assert not (bundle.root / cid).exists()
    assert no_process_with(marker)
    assert bundle.onggi("state", cid).returncode != 0


@pytest.mark.parametrize("link", ["absolute", "dotdot"])
def test_cwd_through_a_symlink_stays_inside(bundle, link):
    host_dir = Path("/tmp") / f"onggi-cwd-{uuid.uuid4().hex[:8]}"
    host_dir.mkdir()
    try:
        inside = bundle.rootfs / str(host_dir).lstrip("/")
        inside.mkdir(parents=True)
        (inside / "here").write_text("inside")
        target = str(host_dir) if link == "absolute" else "../../../../.." + str(host_dir)
        os.symlink(target, bundle.rootfs / "work")
        bundle.config["process"]["cwd"] = "/work"
        bundle.config["root"]["readonly"] = False
        res = bundle.run(["sh", "-c", "cat here; touch made; pwd -P"])
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("inside")
        assert (inside / "made").exists()
        assert list(host_dir.iterdir()) == []  # the host's directory is untouched
    finally:
        for p in host_dir.iterdir():
            p.unlink()
        host_dir.rmdir()


SCRIPT = r"""
while [ ! -e /go ]; do sleep 0.02; done
grep -q " /mnt/host " /proc/self/mountinfo && echo host-visible > /result
mount -t tmpfs ctr /mnt/ctr && echo ctr-mounted >> /result
touch /done
while [ ! -e /go2 ]; do sleep 0.02; done
"""


@pytest.mark.parametrize("prop,visible", [(None, True), ("slave", True), ("shared", True),
                                          ("private", False), ("unbindable", False)])
def test_propagation_with_a_host_mount(tmp_path, busybox_rootfs, state_root, prop, visible):
    """The bundle sits on a shared host mount; the host mounts under the rootfs while the
    container runs, and the container mounts something of its own."""
    top = tmp_path / "sharedfs"
    top.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(top)], check=True)
    subprocess.run(["mount", "--make-shared", str(top)], check=True)
    b = Bundle(top, state_root)
    try:
        shutil.copytree(busybox_rootfs, top / "rootfs", symlinks=True)
        for d in ("mnt/host", "mnt/ctr"):
            (top / "rootfs" / d).mkdir(parents=True)
        b.config["root"]["readonly"] = False
        b.config["process"]["capabilities"] = {k: ["CAP_SYS_ADMIN"] for k in
                                               ("bounding", "effective", "permitted")}
        b.config["process"]["noNewPrivileges"] = False
        if prop:
            b.config["linux"]["rootfsPropagation"] = prop
        log = open(tmp_path / "out", "w")
        cid = b.new_id()
        b.write(["sh", "-c", SCRIPT])
        res = b.onggi("create", "-b", str(top), cid, capture_output=False, stdout=log,
                      stderr=log)
        assert res.returncode == 0
        assert b.onggi("start", cid).returncode == 0
        subprocess.run(["mount", "-t", "tmpfs", "hostside", str(top / "rootfs/mnt/host")],
                       check=True)
        (top / "rootfs" / "go").touch()
        end = time.time() + 10
        while not (top / "rootfs" / "done").exists() and time.time() < end:
            time.sleep(0.02)
        leaked_back = [m for m in fs_harness.host_mounts() if m.endswith("/mnt/ctr")
                       and str(top) in m]
        (top / "rootfs" / "go2").touch()
        wait_stopped(b, cid)
        result = (top / "rootfs" / "result").read_text().split()
        assert "ctr-mounted" in result, (tmp_path / "out").read_text()
        assert ("host-visible" in result) == visible, result
        assert leaked_back == []
    finally:
        b.cleanup()
        subprocess.run(["umount", "-R", "-l", str(top)], check=False)
    assert host_mounts_under(tmp_path) == []
