"""Issue 8, points 4 to 9: the container's filesystem and console, against runc."""

from __future__ import annotations

import os
import pty
import subprocess
import uuid

import pytest
from harness import ONGGI, read_until_eof
from paritylib import RUNC


def _mount(bundle, dest: str, type_: str, source: str, options: list[str]) -> None:
    bundle.config["mounts"].append({"destination": dest, "type": type_, "source": source,
                                    "options": options})


# ---- 4. a missing process.cwd with root.readonly

def test_04_missing_cwd_with_a_readonly_root(bundle, runc):
    bundle.config["root"]["readonly"] = True
    bundle.config["process"]["cwd"] = "/does/not/exist"
    res = bundle.sh("pwd; touch /x 2>&1 | grep -c Read-only")
    assert (res.returncode, res.stdout) == (0, "/does/not/exist\n1\n"), res.stderr
    assert oct(os.stat(bundle.rootfs / "does/not/exist").st_mode & 0o777) == "0o755"
    if RUNC:
        (bundle.rootfs / "does/not/exist").rmdir()
        ref = runc.run(bundle, ["pwd"])
        assert (ref.returncode, ref.stdout) == (0, "/does/not/exist\n"), ref.stderr


# ---- 5. "ro" on /dev (and on any tmpfs) comes after the mounts under it

def test_05_readonly_dev_with_submounts(bundle, runc):
    for m in bundle.config["mounts"]:
        if m["destination"] == "/dev":
            m["options"].append("ro")
    script = ("awk '$5 ~ /^\\/dev/ {print $5, substr($6, 1, 2)}' /proc/self/mountinfo; "
              "test -c /dev/null && echo null; touch /dev/x 2>/dev/null || echo dev-ro; "
              "touch /dev/shm/x && echo shm-rw")
    res = bundle.sh(script)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "/dev ro" in lines and "/dev/pts rw" in lines and "/dev/shm rw" in lines
    assert lines[-3:] == ["null", "dev-ro", "shm-rw"]
    if RUNC:
        ref = runc.run(bundle, ["sh", "-c", script])
        assert ref.returncode == 0 and ref.stdout.splitlines()[-3:] == lines[-3:], ref.stderr


def test_05_readonly_tmpfs_with_a_mount_under_it(bundle, tmp_path):
    (bundle.rootfs / "t").mkdir()
    _mount(bundle, "/t", "tmpfs", "tmpfs", ["ro"])
    _mount(bundle, "/t/inner", "tmpfs", "tmpfs", [])
    res = bundle.sh("touch /t/inner/x && echo inner-rw; touch /t/y 2>/dev/null || echo t-ro")
    assert (res.returncode, res.stdout) == (0, "inner-rw\nt-ro\n"), res.stderr


# ---- 6. a tmpfs takes the mode of its mount point

@pytest.mark.parametrize(("options", "want"), [([], "712"), (["mode=1777"], "1777")])
def test_06_tmpfs_mode_from_the_mount_point(bundle, runc, options, want):
    """runc >= 1.2's rule: the mount point's mode comes first, an explicit mode= wins.
    (runc 1.1.5 chmods afterwards, so it ignores mode=: on purpose unlike 1.1.5.)"""
    (bundle.rootfs / "scratch").mkdir()
    os.chmod(bundle.rootfs / "scratch", 0o712)
    _mount(bundle, "/scratch", "tmpfs", "tmpfs", options)
    _mount(bundle, "/fresh", "tmpfs", "tmpfs", [])  # no mount point: tmpfs' own 1777
    res = bundle.sh("stat -c %a /scratch /fresh")
    assert (res.returncode, res.stdout) == (0, f"{want}\n1777\n"), res.stderr
    if RUNC and not options:
        (bundle.rootfs / "fresh").rmdir()
        ref = runc.run(bundle, ["stat", "-c", "%a", "/scratch"])
        assert ref.stdout == "712\n", ref.stderr


# ---- 7. a bind mount on "/"

def test_07_bind_mount_on_the_root(bundle, runc, tmp_path):
    alt = tmp_path / "alt"
    subprocess.run(["cp", "-a", str(bundle.rootfs), str(alt)], check=True)
    (alt / "ALT_MARKER").write_text("alt\n")
    bundle.config["mounts"].insert(0, {"destination": "/", "type": "bind", "source": str(alt),
                                       "options": ["rbind"]})
    script = "cat /ALT_MARKER; test -e /proc/self/status && echo proc-on-it"
    res = bundle.sh(script)
    assert (res.returncode, res.stdout) == (0, "alt\nproc-on-it\n"), res.stderr
    assert not (bundle.rootfs / "ALT_MARKER").exists()
    if RUNC:  # runc 1.1 does the same (runc >= 1.2.8 refuses it: see the README)
        ref = runc.run(bundle, ["sh", "-c", script])
        assert (ref.returncode, ref.stdout) == (0, "alt\nproc-on-it\n"), ref.stderr


# ---- 8. bind sources only the host's root can reach, in a user namespace

def _userns(bundle) -> None:
    """A user namespace mapping 0 to 100000 (the rootfs stays host root's: busybox only
    needs to read and run it)."""
    bundle.config["linux"]["namespaces"].append({"type": "user"})
    bundle.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.config["mounts"] = [m for m in bundle.config["mounts"]
                               if m["destination"] not in ("/sys", "/sys/fs/cgroup")]
    (bundle.rootfs / "data").mkdir(exist_ok=True)  # the container's root may not make it
    p = bundle.path
    while str(p) != "/":
        os.chmod(p, os.stat(p).st_mode | 0o711)
        p = p.parent


@pytest.fixture
def private_source(tmp_path):
    """data/ inside a 0700 directory of host root's: the container's root cannot walk to it."""
    priv = tmp_path / f"priv-{uuid.uuid4().hex[:6]}"
    (priv / "inner" / "data").mkdir(parents=True)
    (priv / "inner" / "data" / "file").write_text("secret-ok\n")
    os.chmod(priv, 0o700)
    os.chmod(priv / "inner" / "data", 0o755)
    os.chmod(priv / "inner" / "data" / "file", 0o644)
    (tmp_path / "link").symlink_to(priv / "inner" / "data")
    return priv / "inner" / "data", tmp_path / "link"


@pytest.mark.parametrize("use_link", [False, True], ids=["dir", "symlink"])
def test_08_unreachable_bind_source_in_a_user_namespace(bundle, runc, private_source,
                                                        use_link):
    _userns(bundle)
    src = private_source[1] if use_link else private_source[0]
    _mount(bundle, "/data", "bind", str(src), ["rbind", "ro"])
    res = bundle.run(["cat", "/data/file"])
    assert (res.returncode, res.stdout) == (0, "secret-ok\n"), res.stderr
    if RUNC:
        ref = runc.run(bundle, ["cat", "/data/file"])
        assert (ref.returncode, ref.stdout) == (0, "secret-ok\n"), ref.stderr


def test_08_flags_the_host_locked_stay_locked(bundle, tmp_path):
    """The source is cloned inside the container's mount namespace, as runc does: its
    nosuid/noexec from the host stay locked, even for the container's root with
    CAP_SYS_ADMIN (a clone made in the host's namespace could be remounted without them)."""
    src = tmp_path / "locked"
    src.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "nosuid,noexec,size=1m", "onggi-lock", str(src)],
                   check=True)
    try:
        _userns(bundle)
        caps = ["CAP_SYS_ADMIN", "CAP_KILL"]
        bundle.config["process"]["capabilities"] = {k: caps for k in ("bounding", "effective",
                                                                      "permitted")}
        _mount(bundle, "/data", "bind", str(src), ["bind"])
        res = bundle.sh("awk '$5 == \"/data\" {print $6}' /proc/self/mountinfo; "
                        "mount -o remount,bind,exec,suid /data 2>/dev/null && echo unlocked "
                        "|| echo locked")
        assert res.returncode == 0, res.stderr
        opts, verdict = res.stdout.split()
        assert {"nosuid", "noexec"} <= set(opts.split(",")) and verdict == "locked"
    finally:
        subprocess.run(["umount", "-l", str(src)], check=False)


def test_08_a_missing_source_names_the_mount(bundle, tmp_path):
    _userns(bundle)
    _mount(bundle, "/data", "bind", str(tmp_path / "missing"), ["bind"])
    res = bundle.run(["true"])
    assert res.returncode == 1 and len(res.stderr.splitlines()) == 1
    assert res.stderr.startswith(f"onggi: mounts[{len(bundle.config['mounts']) - 1}]: mount "
                                 f"{tmp_path / 'missing'} on /data: ")
    assert os.listdir(bundle.root) == []


# ---- 9. the console belongs to the process's user (the uid only)

def _run_on_a_pty(argv: list[str]) -> tuple[int, str]:
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    out = read_until_eof(master, 15).decode(errors="replace").replace("\r", "")
    os.close(master)
    return p.wait(15), out


def test_09_console_owner_is_the_user(bundle, runc):
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    script = "stat -c '%u %g' /dev/console $(tty)"
    bundle.write(["sh", "-c", script])
    rc, out = _run_on_a_pty(ONGGI + ["--root", str(bundle.root), "run", "-b", str(bundle.path),
                                     bundle.new_id()])
    assert (rc, out) == (0, "1000 5\n1000 5\n"), out  # devpts' gid=5 stays: runc chowns uid only
    if RUNC:
        rc, ref = _run_on_a_pty([RUNC, "--root", str(runc.root), "run", "-b", str(bundle.path),
                                 runc.new_id()])
        assert (rc, ref) == (0, out)


def test_09_stdio_pipes_are_handed_over_too(bundle):
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    res = bundle.run(["stat", "-L", "-c", "%u", "/proc/self/fd/1", "/dev/null"])
    assert res.returncode == 0 and res.stdout == "1000\n0\n", res.stderr
