"""Attack bundles: symlinks in the rootfs that point out of it must never make onggi create,
mount or write anything on the host. Every assertion that matters is on the HOST side."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest


@pytest.fixture
def host_dir(tmp_path):
    """A host directory the attacks aim at; it must stay empty."""
    d = Path("/tmp") / f"onggi-attack-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    (d / "victim").write_text("original")
    yield d
    for p in sorted(d.rglob("*"), reverse=True):
        if p.is_dir() and not p.is_symlink():
            p.rmdir()
        else:
            p.unlink()
    d.rmdir()


def untouched(host_dir: Path) -> None:
    assert sorted(p.name for p in host_dir.iterdir()) == ["victim"]
    assert (host_dir / "victim").read_text() == "original"
    assert not os.path.ismount(host_dir)


def link_targets(host_dir: Path) -> list[str]:
    return [str(host_dir), "../../../../../../../../.." + str(host_dir),
            "/proc/self/root" + str(host_dir)]


@pytest.mark.parametrize("how", ["absolute", "dotdot", "magic"])
def test_symlinked_mount_destination(fsb, host_dir, how):
    target = link_targets(host_dir)[["absolute", "dotdot", "magic"].index(how)]
    os.symlink(target, fsb.rootfs / "evil")
    fsb.mount("/evil/made", "tmpfs", "tmpfs", ["size=1m"])
    fsb.mount("/evil", "tmpfs", "tmpfs", ["size=1m"])
    r = fsb.sh("grep -c ' /' /proc/self/mountinfo")
    untouched(host_dir)
    if how == "magic":
        # /proc is the container's own by then; magic links are refused in the root walk
        assert r.rc != 0 and "mounts[" in r.err
    else:
        assert r.rc == 0, r.err
        # it went inside the rootfs instead
        assert (fsb.rootfs / str(host_dir).lstrip("/") / "made").is_dir()


def test_symlinked_bind_file_destination(fsb, host_dir, tmp_path):
    src = tmp_path / "payload"
    src.write_text("payload")
    os.symlink(str(host_dir / "victim"), fsb.rootfs / "etc" / "evil")
    fsb.mount("/etc/evil", "bind", str(src), ["bind"])
    r = fsb.sh(f"cat {host_dir}/victim")
    assert r.rc == 0, r.err
    untouched(host_dir)
    assert r.out == "payload"  # mounted over the in-root path the link names


@pytest.mark.parametrize("target", ["host", "dotdot"])
def test_symlinked_proc_is_refused(fsb, host_dir, target):
    (fsb.rootfs / "proc").rmdir()
    dest = str(host_dir) if target == "host" else "../../../../../.." + str(host_dir)
    os.symlink(dest, fsb.rootfs / "proc")
    r = fsb.sh("true")
    assert r.rc != 0
    assert "proc must be mounted on an ordinary directory" in r.err
    untouched(host_dir)


def test_symlinked_sys_is_refused(fsb, host_dir):
    (fsb.rootfs / "sys").rmdir()
    os.symlink(str(host_dir), fsb.rootfs / "sys")
    r = fsb.sh("true")
    assert r.rc != 0
    assert "sysfs must be mounted on an ordinary directory" in r.err
    untouched(host_dir)


def test_device_path_through_a_symlink(fsb, host_dir):
    os.symlink(str(host_dir), fsb.rootfs / "etc" / "evil")
    fsb.config["linux"]["devices"] = [
        {"path": "/etc/evil/null2", "type": "c", "major": 1, "minor": 3},
        {"path": "/etc/evil/victim", "type": "c", "major": 1, "minor": 3},
    ]
    r = fsb.sh(f"stat -c '%n %t:%T' {host_dir}/null2 {host_dir}/victim")
    assert r.rc == 0, r.err
    untouched(host_dir)
    assert "null2 1:3" in r.out
    assert (fsb.rootfs / str(host_dir).lstrip("/") / "null2").is_char_device()


def test_dev_itself_a_symlink_without_a_dev_mount(fsb, host_dir):
    fsb.config["mounts"] = [m for m in fsb.config["mounts"]
                            if not m["destination"].startswith("/dev")]
    fsb.config["linux"]["maskedPaths"] = []
    (fsb.rootfs / "dev").rmdir()
    os.symlink(str(host_dir), fsb.rootfs / "dev")
    r = fsb.sh("true")
    assert r.rc == 0, r.err
    untouched(host_dir)
    assert (fsb.rootfs / str(host_dir).lstrip("/") / "null").is_char_device()


def test_masked_and_readonly_paths_through_symlinks(fsb, host_dir):
    os.symlink(str(host_dir / "victim"), fsb.rootfs / "etc" / "mask-me")
    os.symlink(str(host_dir), fsb.rootfs / "etc" / "ro-me")
    fsb.config["linux"]["maskedPaths"] = ["/etc/mask-me"]
    fsb.config["linux"]["readonlyPaths"] = ["/etc/ro-me"]
    r = fsb.sh("true")
    assert r.rc == 0, r.err  # both resolve inside the root, where nothing is: skipped
    untouched(host_dir)


def test_masking_needs_the_real_null_device(fsb):
    """CVE-2025-31133: masking binds the container's /dev/null; if that is not the 1:3 node
    (a container could swap in a symlink to some file), the file must not get bound over
    the masked path: onggi refuses."""
    fsb.config["linux"]["devices"] = [{"path": "/dev/null", "type": "c", "major": 1,
                                       "minor": 5}]
    fsb.config["linux"]["maskedPaths"] = ["/etc/passwd"]
    r = fsb.sh("cat /etc/passwd")
    assert r.rc != 0
    assert "/dev/null is not the null device" in r.err


def test_relative_destination_is_inside_the_root(fsb, host_dir):
    fsb.mount("rel/dir", "tmpfs", "tmpfs", ["size=1m"])
    fsb.mount("../../../../" + str(host_dir).lstrip("/") + "/x", "tmpfs", "tmpfs", [])
    r = fsb.sh("grep -E ' /rel/dir | " + str(host_dir) + "/x ' /proc/self/mountinfo")
    assert r.rc == 0, r.err
    assert " /rel/dir " in r.out
    assert f" {host_dir}/x " in r.out
    untouched(host_dir)


def test_errors_name_the_mount(fsb):
    fsb.mount("/x", "nosuchfs", "none", [])
    r = fsb.sh("true")
    assert r.rc != 0
    assert "mounts[" in r.err and "/x" in r.err and "no such device" in r.err


def test_missing_bind_source_names_the_mount(fsb, tmp_path):
    fsb.mount("/x", "bind", str(tmp_path / "nope"), ["bind"])
    r = fsb.sh("true")
    assert r.rc != 0
    assert "nope" in r.err and "no such file or directory" in r.err.lower()
    assert "mounts[" in r.err
