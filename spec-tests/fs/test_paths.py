"""maskedPaths and readonlyPaths."""

from __future__ import annotations

from fs_harness import mountinfo_of


def test_masked_file_reads_empty_and_masked_dir_is_an_empty_ro_tmpfs(fsb):
    (fsb.rootfs / "etc" / "secret-dir").mkdir()
    (fsb.rootfs / "etc" / "secret-dir" / "key").write_text("k")
    fsb.config["linux"]["maskedPaths"] = ["/etc/passwd", "/etc/secret-dir", "/nope/missing"]
    r = fsb.sh("cat /etc/passwd | wc -c; ls -A /etc/secret-dir | wc -l;"
               "(touch /etc/secret-dir/x) 2>&1; (echo x > /etc/passwd) 2>&1 && echo wrote;"
               "cat /proc/self/mountinfo")
    assert r.rc == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].strip() == "0" and lines[1].strip() == "0"
    assert "Read-only file system" in r.out
    mi = mountinfo_of(r.out)
    assert mi["/etc/secret-dir"]["fstype"] == "tmpfs" and "ro" in mi["/etc/secret-dir"]["opts"]
    assert mi["/etc/passwd"]["root"] == "/null"  # the container's /dev/null
    assert "/nope/missing" not in mi
    # the image is untouched
    assert (fsb.rootfs / "etc" / "passwd").read_text().startswith("root:")


def test_readonly_paths_are_unwritable_and_recursive(fsb):
    fsb.mount("/data", "tmpfs", "tmpfs", [])
    fsb.mount("/data/sub", "tmpfs", "tmpfs", [])
    fsb.config["linux"]["readonlyPaths"] = ["/data", "/etc/passwd", "/missing"]
    r = fsb.sh("(touch /data/x) 2>&1; (touch /data/sub/x) 2>&1; (echo >> /etc/passwd) 2>&1;"
               "touch /etc/other && echo other-ok; cat /proc/self/mountinfo")
    assert r.rc == 0, r.err
    assert r.out.count("Read-only file system") == 3
    assert "other-ok" in r.out
    mi = mountinfo_of(r.out)
    assert "ro" in mi["/data"]["opts"] and "ro" in mi["/data/sub"]["opts"]


def test_masked_and_readonly_paths_must_be_absolute(fsb):
    fsb.config["linux"]["maskedPaths"] = ["relative"]
    assert "linux.maskedPaths[0]" in fsb.error()


def test_without_a_mount_namespace_nothing_stays_mounted(bundle, tmp_path):
    """No mount namespace: the mounts are made in the host's, and gone after the run
    (spec-tests/fields/test_no_mount_ns.py has the rest)."""
    import fs_harness

    bundle.config["linux"]["namespaces"] = [{"type": "pid"}]
    bundle.config.pop("hostname", None)
    res = bundle.run(["ls", "/dev/pts/ptmx", "/proc/self/status"])
    assert res.returncode == 0, res.stderr
    assert not [m for m in fs_harness.host_mounts() if str(tmp_path) in m]
