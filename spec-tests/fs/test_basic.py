"""Step-1 mounts: the default config's mounts, /dev, pivot_root and --no-pivot."""

from __future__ import annotations

from fs_harness import mountinfo_of


def test_default_mounts(fsb):
    r = fsb.sh("cat /proc/self/mountinfo")
    assert r.rc == 0, r.err
    mi = mountinfo_of(r.out)
    assert mi["/proc"]["fstype"] == "proc"
    assert mi["/dev"]["fstype"] == "tmpfs"
    assert {"nosuid"} <= mi["/dev"]["opts"]
    assert mi["/dev/pts"]["fstype"] == "devpts"
    assert {"ptmxmode=666", "mode=620", "gid=5"} <= mi["/dev/pts"]["super"]
    assert mi["/dev/shm"]["fstype"] == "tmpfs"
    assert mi["/dev/mqueue"]["fstype"] == "mqueue"
    assert mi["/sys"]["fstype"] == "sysfs"
    assert "ro" in mi["/sys"]["opts"]
    assert "/" in mi


def test_pivot_and_no_pivot_give_same_view(fsb):
    for no_pivot in (False, True):
        r = fsb.sh("cat /proc/self/mountinfo; ls /", no_pivot=no_pivot)
        assert r.rc == 0, r.err
        assert "bin" in r.out.split()
        mi = mountinfo_of(r.out)
        # the host's root is gone from the container's view
        assert all(not p.startswith("/work") for p in mi), mi.keys()


def test_root_readonly_keeps_mounts_under_it_writable(fsb):
    fsb.config["root"]["readonly"] = True
    r = fsb.sh("touch /x 2>&1; touch /dev/shm/y && echo shm-ok; cat /proc/self/mountinfo")
    assert r.rc == 0, r.err
    assert "Read-only file system" in r.out
    assert "shm-ok" in r.out
    assert "ro" in mountinfo_of(r.out)["/"]["opts"]
    assert not (fsb.rootfs / "x").exists()


def test_bind_basic_flags(fsb, tmp_path):
    src = tmp_path / "vol"
    src.mkdir()
    (src / "f").write_text("hi")
    fsb.mount("/vol", "bind", str(src), ["bind", "ro", "nosuid", "nodev", "noexec"])
    fsb.mount("/vol2", "none", "../vol", ["rbind"])  # relative to the bundle
    r = fsb.sh("cat /vol/f; echo; touch /vol/g 2>&1; touch /vol2/h; cat /proc/self/mountinfo")
    assert r.rc == 0, r.err
    mi = mountinfo_of(r.out)
    assert {"ro", "nosuid", "nodev", "noexec"} <= mi["/vol"]["opts"]
    assert "rw" in mi["/vol2"]["opts"]
    assert r.out.startswith("hi")
    assert "Read-only file system" in r.out
    assert (src / "h").exists()


def test_file_bind_creates_a_file_mountpoint(fsb, tmp_path):
    src = tmp_path / "hosts"
    src.write_text("1.2.3.4 x\n")
    fsb.mount("/etc/new/hosts", "bind", str(src), ["bind", "ro"])
    r = fsb.sh("cat /etc/new/hosts; test -f /etc/new/hosts && echo file")
    assert r.rc == 0, r.err
    assert "1.2.3.4 x" in r.out and "file" in r.out


def test_mounts_in_config_order_and_over_each_other(fsb):
    fsb.mount("/data", "tmpfs", "tmpfs", ["size=1m"])
    fsb.mount("/data/sub", "tmpfs", "tmpfs", ["size=2m"])
    fsb.mount("/data", "tmpfs", "tmpfs", ["size=3m", "ro"])
    r = fsb.sh("cat /proc/self/mountinfo; ls /data")
    assert r.rc == 0, r.err
    # the last mount on /data is the visible one, and it hides /data/sub
    assert "size=3072k" in ",".join(mountinfo_of(r.out)["/data"]["super"])
    assert "sub" not in r.out.split()


def test_masked_and_readonly_paths(fsb):
    r = fsb.sh("cat /proc/keys 2>&1 | wc -c; ls /sys/firmware | wc -l; "
               "(echo 1 > /proc/sys/vm/drop_caches) 2>&1; echo end")
    assert r.rc == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].strip() == "0"  # /proc/keys reads empty: /dev/null is over it
    assert lines[1].strip() == "0"  # /sys/firmware is an empty tmpfs
    assert r.out.count("Read-only file system") == 1
