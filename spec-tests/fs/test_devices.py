"""linux.devices, the default devices and the /dev symlinks."""

from __future__ import annotations

import os
import subprocess

import fs_harness
import pytest

from runtime.linux import devices

STAT = "stat -c '%n|%F|%t|%T|%a|%u|%g'"
KIND = {"c": "character special file", "u": "character special file",
        "b": "block special file", "p": "fifo"}


def _stat_lines(out: str) -> dict[str, list[str]]:
    rows = {}
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 7:
            rows[parts[0]] = parts[1:]
    return rows


CONFIG_DEVICES = [
    {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o640,
     "uid": 1000, "gid": 100},
    {"path": "/dev/loop0", "type": "b", "major": 7, "minor": 0, "fileMode": 0o600},
    {"path": "/dev/unbuf", "type": "u", "major": 1, "minor": 3, "uid": 5, "gid": 6},
    {"path": "/dev/fifo0", "type": "p", "fileMode": 0o620},
    {"path": "/dev/deep/er/tun", "type": "c", "major": 10, "minor": 200},
    # a config device with a default's path wins over the default
    {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 7},
]


def _check_devices(out: str) -> None:
    rows = _stat_lines(out)
    for d in CONFIG_DEVICES:
        kind, major, minor, mode, uid, gid = rows[d["path"]]
        assert kind == KIND[d["type"]], d
        if d["type"] != "p":
            assert (int(major, 16), int(minor, 16)) == (d["major"], d["minor"]), d
        assert int(mode, 8) == d.get("fileMode", 0o666), d
        assert (int(uid), int(gid)) == (d.get("uid", 0), d.get("gid", 0)), d


def test_config_devices_type_number_mode_owner(fsb):
    fsb.config["linux"]["devices"] = CONFIG_DEVICES
    paths = " ".join(d["path"] for d in CONFIG_DEVICES)
    r = fsb.sh(f"{STAT} {paths}")
    assert r.rc == 0, r.err
    _check_devices(r.out)


def test_default_devices_and_links(fsb):
    r = fsb.sh(f"{STAT} /dev/null /dev/zero /dev/full /dev/tty /dev/random /dev/urandom;"
               "for l in fd stdin stdout stderr ptmx; do echo \"$l=$(readlink /dev/$l)\"; done")
    assert r.rc == 0, r.err
    rows = _stat_lines(r.out)
    for node in devices.DEFAULTS:
        kind, major, minor, mode, uid, gid = rows[node.path]
        assert kind == "character special file"
        assert (int(major, 16), int(minor, 16)) == (node.major, node.minor)
        assert (mode, uid, gid) == ("666", "0", "0")
    for want in ("fd=/proc/self/fd", "stdin=/proc/self/fd/0", "stdout=/proc/self/fd/1",
                 "stderr=/proc/self/fd/2", "ptmx=pts/ptmx"):
        assert want in r.out.split()
    assert "/dev/core" not in r.out  # this host has no /proc/kcore


def test_dev_core_link_when_the_host_has_kcore(hfsb, monkeypatch):
    real = fs_harness.mountplan.plan
    monkeypatch.setattr(fs_harness.mountplan, "plan",
                        lambda cfg: real(cfg).replace(kcore=True))
    r = hfsb.sh("readlink /dev/core")
    assert r.rc == 0, r.err
    assert r.out.strip() == "/proc/kcore"


def test_no_devices_on_a_bind_mounted_dev(fsb, tmp_path):
    hostdev = tmp_path / "hostdev"
    hostdev.mkdir()
    fsb.config["mounts"] = [m for m in fsb.config["mounts"]
                            if not m["destination"].startswith("/dev")]
    fsb.config["mounts"].append({"destination": "/dev", "type": "bind",
                                 "source": str(hostdev), "options": ["rbind"]})
    fsb.config["linux"]["maskedPaths"] = []
    r = fsb.sh("ls -A /dev | wc -l")
    assert r.rc == 0, r.err
    assert r.out.strip() == "0"
    assert list(hostdev.iterdir()) == []


def test_devices_without_a_dev_mount_go_into_the_rootfs(fsb):
    fsb.config["mounts"] = [m for m in fsb.config["mounts"]
                            if not m["destination"].startswith("/dev")]
    r = fsb.sh(f"{STAT} /dev/null; readlink /dev/fd")
    assert r.rc == 0, r.err
    assert "character special file" in r.out
    assert (fsb.rootfs / "dev" / "null").is_char_device()


def test_dev_shm_and_mqueue_when_configured(fsb):
    r = fsb.sh("grep -E ' /dev/(shm|mqueue) ' /proc/self/mountinfo")
    assert r.rc == 0, r.err
    assert " /dev/shm " in r.out and " - tmpfs shm " in r.out
    assert " /dev/mqueue " in r.out and " - mqueue " in r.out


def _chown_tree(root, uid):
    os.lchown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, uid)


USERNS_MAP = ("0 100000 65536\n", "0 100000 65536\n")


def userns_config(fsb):
    _chown_tree(fsb.rootfs, 100000)
    # the init in the user namespace must be able to reach the rootfs (as with runc)
    p = fsb.path
    while str(p) != "/":
        os.chmod(p, os.stat(p).st_mode | 0o711)
        p = p.parent
    have = {n["type"] for n in fsb.config["linux"]["namespaces"]}
    fsb.config["linux"]["namespaces"] += [{"type": t} for t in ("user", "ipc") if t not in have]
    fsb.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    fsb.config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def test_devices_in_a_user_namespace_are_bound_host_nodes(fsb):
    userns_config(fsb)
    fsb.config["linux"]["devices"] = [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
        {"path": "/dev/loop0", "type": "b", "major": 7, "minor": 0},
    ]
    r = fsb.sh(f"{STAT} /dev/null /dev/fuse /dev/loop0; grep -E ' /dev/(null|fuse|loop0) ' "
               "/proc/self/mountinfo; echo x > /dev/null && echo null-works",
               userns=USERNS_MAP)
    assert r.rc == 0, r.err
    rows = _stat_lines(r.out)
    assert rows["/dev/null"][:3] == ["character special file", "1", "3"]
    assert rows["/dev/fuse"][:3] == ["character special file", "a", "e5"]
    assert rows["/dev/loop0"][:3] == ["block special file", "7", "0"]
    # bind mounts of the host's nodes, not mknod
    assert r.out.count(" /dev/") >= 3
    assert "null-works" in r.out


def test_device_with_a_host_node_of_another_number_fails_in_userns(fsb):
    userns_config(fsb)
    fsb.config["linux"]["devices"] = [
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 5}]
    r = fsb.sh("true", userns=USERNS_MAP)
    assert r.rc != 0
    assert "/dev/null" in r.err and "1:5" in r.err


@pytest.mark.parametrize("kind", ["x", "cc"])
def test_unknown_device_type_is_a_config_error(fsb, kind):
    fsb.config["linux"]["devices"] = [{"path": "/dev/x", "type": kind, "major": 1, "minor": 1}]
    assert "linux.devices[0].type" in fsb.error()


@pytest.fixture
def locked_source(tmp_path):
    src = tmp_path / "locked"
    src.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "nosuid,nodev,noexec,ro", "tmpfs", str(src)],
                   check=True)
    try:
        yield src
    finally:
        subprocess.run(["umount", "-l", str(src)], check=False)


def test_locked_flags_are_kept_on_a_bind_in_a_user_namespace(fsb, locked_source):
    """A bind asking to clear flags the host locked (a user namespace may not) still mounts,
    with the locked flags kept, as runc does."""
    userns_config(fsb)
    fsb.mount("/locked", "bind", str(locked_source), ["bind", "rw", "suid", "dev", "exec"])
    fsb.mount("/locked2", "bind", str(locked_source), ["bind", "noatime"])
    r = fsb.sh("grep -E ' /locked2? ' /proc/self/mountinfo", userns=USERNS_MAP)
    assert r.rc == 0, r.err
    for line in r.out.splitlines():
        opts = set(line.split()[5].split(","))
        assert {"ro", "nosuid", "nodev", "noexec"} <= opts, line
    # the atime mode is locked too: the host's (relatime) stays
    assert "relatime" in r.out and "noatime" not in r.out


def test_console_is_the_pty_slave_bound_over_dev_console(hfsb):
    from runtime.linux import pivot, tty

    def console():
        master, slave = tty.open_pty()
        pivot.bind_console(slave)

    # a symlink at /dev/console (here: in the image, no /dev tmpfs) must not redirect it
    hfsb.config["mounts"] = [m for m in hfsb.config["mounts"]
                             if m["destination"] not in ("/dev", "/dev/shm", "/dev/mqueue")]
    os.symlink("/etc/passwd", hfsb.rootfs / "dev" / "console")
    r = hfsb.sh(f"{STAT} /dev/console; grep ' /dev/console ' /proc/self/mountinfo; "
                "head -c5 /etc/passwd", after_pivot=console)
    assert r.rc == 0, r.err
    kind, major, *_ = _stat_lines(r.out)["/dev/console"]
    assert kind == "character special file" and int(major, 16) == 136
    assert " /dev/console " in r.out and "devpts" in r.out
    assert r.out.endswith("root:")
