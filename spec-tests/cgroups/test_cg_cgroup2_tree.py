"""The v2 code paths for real on whatever cgroup2 tree this host has (the `unified` tree of a
hybrid host, or the root of a pure v2 one): inside a private cgroup of the test, treated as
the v2 manager's root, so nothing of the host's is touched. The eBPF device program (loaded,
attached, replaced, effective), clone3(CLONE_INTO_CGROUP), cgroup.freeze, cgroup.kill, and
removal."""

from __future__ import annotations

import errno
import os
import signal
import time
import uuid

import pytest
from cgtest import MODE, ROOT, has_cgroup2, wait_for

from runtime.cgroups import bpf, clone3, devices, files, paths, tree
from runtime.cgroups.fs import FsManager
from runtime.cgroups.paths import Layout

pytestmark = [has_cgroup2,
              pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")]
V2_ROOT = ROOT if MODE == "v2" else ROOT + "/unified"


@pytest.fixture
def private():
    """A cgroup of our own under the cgroup2 tree, removed afterwards with all below it."""
    d = os.path.join(V2_ROOT, "onggi-test-" + uuid.uuid4().hex[:10])
    os.mkdir(d)
    yield d
    for pid in tree.all_pids(d):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    tree.remove(d, timeout=5)


def _child_in(d: str, script) -> int:
    """A forked child moved into cgroup `d` that then runs `script()` and exits with it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        code = 1
        try:
            code = script()
        finally:
            os._exit(code)
    os.close(r)
    files.add_pid(d, pid)
    os.write(w, b"x")
    os.close(w)
    return pid


def _status(pid: int) -> int:
    _, st = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(st)


def _opens(path: str, flags: int = os.O_RDONLY) -> int:
    try:
        os.close(os.open(path, flags))
        return 0
    except OSError as e:
        return e.errno


def _rules(*rs):
    return devices.emulate(devices.rules(list(rs)))


NULL = {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
FULL_R = {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "r"}
DENY = {"allow": False, "access": "rwm"}


def test_ebpf_device_program_is_enforced_and_replaced(private):
    emu = devices.Emulator()
    for r in devices.rules([DENY, NULL, FULL_R])[:3]:  # without the defaults: a tight list
        emu.apply(r)
    bpf.install(private, emu)
    assert len(bpf.attached(private)) == 1

    def probe() -> int:
        ok = (_opens("/dev/null", os.O_RDWR) == 0, _opens("/dev/zero") == errno.EPERM,
              _opens("/dev/full") == 0, _opens("/dev/full", os.O_WRONLY) == errno.EPERM)
        return 0 if all(ok) else 10 + ok.index(False)

    assert _status(_child_in(private, probe)) == 0
    # update: the new program replaces the old one; never two attached
    emu2 = _rules(DENY, {"allow": True, "type": "c", "major": 1, "access": "rwm"})
    bpf.install(private, emu2)
    assert len(bpf.attached(private)) == 1

    def probe2() -> int:  # (the defaults are in: /dev/fuse, 10:229, is not)
        return 0 if _opens("/dev/zero") == 0 and _opens("/dev/fuse", os.O_RDWR) == errno.EPERM \
            else 1

    assert _status(_child_in(private, probe2)) == 0


def test_ebpf_program_with_the_default_rules_loads(private):
    bpf.install(private, _rules(DENY))
    bpf.install(private, _rules(DENY))  # again: still one
    assert len(bpf.attached(private)) == 1


def test_clone3_into_cgroup(private):
    fd = os.open(private, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        r, w = os.pipe()
        pid = clone3.fork_into(fd)
        if pid == 0:
            os.close(r)
            with open("/proc/self/cgroup") as f:
                os.write(w, f.read().encode())
            os._exit(7)
    finally:
        os.close(fd)
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    assert _status(pid) == 7
    rel = private[len(V2_ROOT):]
    assert f"0::{rel}\n" in text, text  # born in it: no moment elsewhere


def test_clone3_refuses_a_non_cgroup_fd(tmp_path):
    fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError) as e:
            clone3.fork_into(fd)
        assert e.value.errno in (errno.EBADF, errno.EINVAL)
    finally:
        os.close(fd)


def _manager(private: str, inner: str) -> FsManager:
    layout = Layout("v2", private, {}, {"": "/"})
    return FsManager(layout, paths.resolve(layout, inner))


def test_v2_manager_lifecycle(private):
    """apply (parents made), set (devices), freeze/thaw, pids, cgroup.kill, destroy."""
    m = _manager(private, "/p/c1")
    m.resources = {"devices": [DENY]}
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    try:
        m.apply(pid)
        leaf = m.paths[""]
        assert leaf == private + "/p/c1" and m.parents == [private + "/p"]
        assert files.procs(leaf) == [pid]
        m.set({"devices": [DENY], "pids": {"limit": 5}} if "pids" in files.read(
            leaf, "cgroup.controllers").split() else {"devices": [DENY]})
        assert len(bpf.attached(leaf)) == 1
        m.freeze()
        assert m.frozen()
        assert wait_for(lambda: open(f"/proc/{pid}/stat").read().split(") ")[1][0] in "SDt")
        m.thaw()
        assert not m.frozen()
        assert m.pids() == [pid]
        m.freeze()
        m.kill_all(signal.SIGKILL)  # cgroup.kill, frozen or not
        assert _status(pid) == -signal.SIGKILL
        pid = 0
        m.destroy()
        assert not os.path.exists(private + "/p")
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def test_v2_fork_is_born_in_the_cgroup(private):
    m = _manager(private, "/c2")
    r, w = os.pipe()

    def child() -> None:
        os.close(r)
        with open("/proc/self/cgroup") as f:
            os.write(w, f.read().encode())
        os._exit(0)

    pid = m.fork(child)
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    _status(pid)
    assert f"0::{private[len(V2_ROOT):]}/c2\n" in text
    m.apply(pid)  # already in: apply only makes sure of the dir
    m.destroy()
