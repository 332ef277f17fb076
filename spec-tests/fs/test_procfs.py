"""procfs.write: a container that replaced /proc (a symlink, a fake filesystem, a bind over a
file) cannot redirect onggi's writes."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime.linux import procfs
from runtime.linux import syscalls as sc

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def in_root(root: Path, setup: Callable[[], None], action: Callable[[], str]) -> str:
    """Fork; in a private mount+uts namespace run setup, chroot into root, run action; its
    result (or the exception's text) comes back."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            sc.unshare(CLONE_NEWNS | CLONE_NEWUTS)
            sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
            setup()
            os.chroot(str(root))
            os.chdir("/")
            out = "ok:" + action()
        except BaseException as e:  # noqa: BLE001
            out = f"err:{type(e).__name__}:{e}"
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return data.decode()


def fake_tree(base: Path) -> Path:
    f = base / "sys" / "kernel" / "hostname"
    f.parent.mkdir(parents=True)
    f.write_text("untouched\n")
    return f


def write_hostname() -> str:
    procfs.write("/proc/sys/kernel/hostname", "pwned")
    return "written"


def test_writes_a_real_proc_file(tmp_path):
    (tmp_path / "proc").mkdir()
    out = in_root(tmp_path,
                  lambda: sc.mount("proc", str(tmp_path / "proc"), "proc", 0),
                  lambda: (procfs.write("/proc/sys/kernel/hostname", "inside"),
                           procfs.write("/proc/self/oom_score_adj", "10"),
                           procfs.read("/proc/sys/kernel/hostname").strip()
                           + procfs.read("/proc/thread-self/oom_score_adj").strip())[-1])
    assert out == "ok:inside10"


def test_proc_symlinked_to_a_directory_is_refused(tmp_path):
    fake = fake_tree(tmp_path / "fake")
    os.symlink("fake", tmp_path / "proc")
    out = in_root(tmp_path, lambda: None, write_hostname)
    assert out.startswith("err:")
    assert fake.read_text() == "untouched\n"


def test_proc_replaced_by_another_filesystem_is_refused(tmp_path):
    (tmp_path / "proc").mkdir()

    def setup():
        sc.mount("tmpfs", str(tmp_path / "proc"), "tmpfs", 0)
        fake_tree(tmp_path / "proc")

    out = in_root(tmp_path, setup, write_hostname)
    assert out.startswith("err:") and "not a procfs mount" in out


def test_bind_over_a_proc_file_is_refused(tmp_path):
    (tmp_path / "proc").mkdir()
    decoy = tmp_path / "decoy"
    decoy.write_text("untouched\n")

    def setup():
        sc.mount("proc", str(tmp_path / "proc"), "proc", 0)
        sc.mount(str(decoy), str(tmp_path / "proc/sys/kernel/hostname"), None, sc.MS_BIND)

    out = in_root(tmp_path, setup, write_hostname)
    assert out.startswith("err:")
    assert decoy.read_text() == "untouched\n"


def test_symlink_inside_the_path_is_refused(tmp_path):
    (tmp_path / "proc").mkdir()
    out = in_root(tmp_path,
                  lambda: sc.mount("proc", str(tmp_path / "proc"), "proc", 0),
                  lambda: procfs.write("/proc/mounts", "x") or "written")
    assert out.startswith("err:")  # /proc/mounts is a symlink to self/mounts


def test_only_proc_and_sys_paths():
    with pytest.raises(OSError, match="not a file under /proc or /sys"):
        procfs.write("/etc/passwd", "x")
    with pytest.raises(OSError):
        procfs.write("/proc/../etc/passwd", "x")


def test_host_hostname_untouched_by_all_of_this():
    assert subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip() \
        not in ("pwned", "inside")


def test_self_means_us_even_as_pid_1_with_the_hosts_proc():
    """Pid 1 of a new pid namespace, /proc still the host's: "self" must not become "1" (the
    host's init)."""
    host_init = Path("/proc/1/oom_score_adj").read_text()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            sc.unshare(0x20000000)  # CLONE_NEWPID
            inner = os.fork()
            if inner == 0:
                assert os.getpid() == 1
                procfs.write("/proc/self/oom_score_adj", "7")
                os.write(w, Path("/proc/self/oom_score_adj").read_text().encode())
                os._exit(0)
            os.waitpid(inner, 0)
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 100).decode().strip()
    os.close(r)
    os.waitpid(pid, 0)
    assert got == "7"
    assert Path("/proc/1/oom_score_adj").read_text() == host_init
