"""tmpcopyup superblock flags, and mountLabel without SELinux."""

from __future__ import annotations


def test_tmpcopyup_keeps_superblock_flags(bundle):
    bundle.config["mounts"].append({"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
                                    "options": ["tmpcopyup", "sync", "dirsync", "lazytime",
                                                "nosuid"]})
    res = bundle.sh("grep ' /etc ' /proc/self/mountinfo; cat /etc/hostname")
    assert res.returncode == 0, res.stderr
    line, copied = res.stdout.splitlines()
    mount_opts, super_opts = line.split()[5], line.split()[-1]
    assert "nosuid" in mount_opts.split(",")
    assert {"sync", "dirsync", "lazytime"} <= set(super_opts.split(","))
    assert copied == "busybox"  # the image's /etc was copied up


def test_mount_label_without_selinux_is_ignored_with_a_warning(bundle, tmp_path):
    import os

    import pytest

    if os.path.exists("/sys/fs/selinux/enforce"):
        pytest.skip("SELinux is enabled here: the label is applied instead")
    bundle.config["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0:c1,c2"
    bundle.write(["sh", "-c", "grep ' /dev ' /proc/self/mountinfo"])
    log = tmp_path / "warn.log"
    res = bundle.onggi("--log", str(log), "run", "-b", str(bundle.path), bundle.new_id())
    assert res.returncode == 0, res.stderr
    assert "context=" not in res.stdout
    line = next(x for x in log.read_text().splitlines() if "linux.mountLabel" in x)
    assert "level=warning" in line and "ignored" in line
