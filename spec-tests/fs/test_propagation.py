"""linux.rootfsPropagation, checked both ways against a host-side mount.

The bundle sits on a shared host tmpfs. While the container runs, the host mounts something
under the rootfs (host -> container) and the container mounts something of its own
(container -> host); then each side looks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import fs_harness
import pytest
from fs_harness import FsBundle

# waits for the host's mount, reports, mounts its own, reports back, waits to be let go
SCRIPT = r"""
touch /ready
while [ ! -e /go ]; do sleep 0.02; done
grep -q " /mnt/host " /proc/self/mountinfo && echo host-visible
mount -t tmpfs ctr /mnt/ctr && echo ctr-mounted
mkdir -p /tgt /m1 /m1src
if mount -o rbind / /tgt 2>/dev/null; then
  echo bind-ok
  mount -t tmpfs late /m1 && test -n "$(grep ' /tgt/m1 ' /proc/self/mountinfo)" && echo shared-ok
fi
awk '$5 == "/"' /proc/self/mountinfo >&2
touch /done
while [ ! -e /go2 ]; do sleep 0.02; done
"""


@pytest.fixture
def shared_bundle(tmp_path, busybox_rootfs):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    top = tmp_path / "sharedfs"
    top.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(top)], check=True)
    subprocess.run(["mount", "--make-shared", str(top)], check=True)
    try:
        shutil.copytree(busybox_rootfs, top / "rootfs", symlinks=True)
        for d in ("mnt/host", "mnt/ctr"):
            (top / "rootfs" / d).mkdir(parents=True)
        yield FsBundle(top)
    finally:
        subprocess.run(["umount", "-R", "-l", str(top)], check=False)
    leaked = [m for m in fs_harness.host_mounts() if str(tmp_path) in m]
    assert not leaked, leaked


def _wait_for(path, timeout=10):
    end = time.time() + timeout
    while not path.exists():
        if time.time() > end:
            raise TimeoutError(path)
        time.sleep(0.02)


def run_both_ways(b: FsBundle, propagation: str | None, no_pivot: bool = False):
    if propagation:
        b.config["linux"]["rootfsPropagation"] = propagation
    running = b.start(SCRIPT, no_pivot=no_pivot)
    rootfs = b.path / "rootfs"
    try:
        # the container is set up (rootfsPropagation applied) once it runs the script; /go
        # lets it go on
        _wait_for(rootfs / "ready", timeout=60)
        subprocess.run(["mount", "-t", "tmpfs", "hostside", str(rootfs / "mnt/host")],
                       check=True)
        (rootfs / "go").touch()
        _wait_for(rootfs / "done", timeout=60)
        host = fs_harness.host_mounts()
        leaked_back = any(m.endswith(str(rootfs / "mnt/ctr")) for m in host)
    finally:
        (rootfs / "go").touch()
        (rootfs / "go2").touch()
        res = running.wait()
    assert res.rc == 0, res.err
    assert "ctr-mounted" in res.out, res.err
    return res.out.split(), leaked_back, res.err


@pytest.mark.parametrize("prop,host_to_ctr", [
    (None, True),  # runc's default: rslave
    ("slave", True),
    ("shared", True),
    ("private", False),
    ("unbindable", False),
])
def test_rootfs_propagation(shared_bundle, prop, host_to_ctr):
    words, leaked_back, mi = run_both_ways(shared_bundle, prop)
    assert ("host-visible" in words) == host_to_ctr, (words, mi)
    # never does a container mount reach the host
    assert not leaked_back
    if prop in ("unbindable", "runbindable"):
        assert "bind-ok" not in words  # runtime-tools: binding "/" fails with EINVAL
        assert "unbindable" in mi
    else:
        assert "bind-ok" in words
    # runtime-tools' linux_rootfs_propagation: a new mount shows in a bind of "/" only
    # when "/" is shared
    assert ("shared-ok" in words) == (prop in ("shared", "rshared")), (words, mi)


def _system_mounts() -> set[str]:
    """The host's own mount points that other tests never touch."""
    keep = {"/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/run",
            "/run/lock", "/sys/fs/cgroup", "/sys/kernel/security", "/sys/fs/bpf", "/tmp"}
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f} & keep


@pytest.mark.guest_too  # there "/" is shared, as on any systemd host
@pytest.mark.parametrize("prop", [None, "shared", "rshared", "private", "rprivate"])
def test_rootfs_propagation_no_pivot(shared_bundle, prop):
    """--no-pivot detaches the host's mounts in the container's namespace: never the host's
    own (on a systemd host "/" is shared, and an unmount under a shared parent propagates)."""
    before = _system_mounts()
    words, leaked_back, mi = run_both_ways(shared_bundle, prop, no_pivot=True)
    assert _system_mounts() == before, "the host lost mounts"
    assert ("host-visible" in words) == (prop not in ("private", "rprivate")), (words, mi)
    assert not leaked_back
    assert ("shared-ok" in words) == (prop in ("shared", "rshared")), (words, mi)


@pytest.mark.parametrize("prop", ["shared", "rshared"])
def test_rootfs_that_is_a_shared_mount_point(shared_bundle, prop):
    """containerd's rootfs is a mount of its own (an overlay), shared like the host's: the
    mount pivot_root sees as the new root's parent must stop being shared (critest's
    "mount propagation rshared" spec failed with pivot_root: invalid argument)."""
    rootfs = shared_bundle.path / "rootfs"
    subprocess.run(["mount", "--bind", str(rootfs), str(rootfs)], check=True)
    subprocess.run(["mount", "--make-shared", str(rootfs)], check=True)
    words, leaked_back, mi = run_both_ways(shared_bundle, prop)
    assert "host-visible" in words and "shared-ok" in words, (words, mi)
    assert not leaked_back
