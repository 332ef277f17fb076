"""How create moves stage 1 into its cgroups: without the kernel's global lock. A pid
written to cgroup.procs makes the kernel wait for an RCU grace period (cgroup_threadgroup_rwsem,
~10 ms on every create here); instead stage 1 is born in its cgroup2 dir (clone3 with
CLONE_INTO_CGROUP, on hybrid hosts too) and moves itself into each v1 cgroup, writing "0"
(itself, its only thread) to `tasks`. What it cannot write, the parent joins by pid, with
apply()'s errors."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid

import pytest
from cgtest import MODE, ROOT, cgpaths, proc_cgroups, resources, v1_host

from runtime.cgroups import paths, tree
from runtime.cgroups.files import CgroupError
from runtime.cgroups.fs import FsManager

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")


def test_create_joins_without_a_pid_write(bundle, tmp_path):
    """Born in the cgroup2 dir, in each v1 cgroup by itself: nothing was left to the parent,
    and the init is in every cgroup of the state right after create."""
    log = tmp_path / "log"
    resources(bundle, memory={"limit": 67108864}, pids={"limit": 50})
    bundle.write(["sleep", "1000"])
    cid = bundle.new_id()
    res = bundle.onggi("--debug", "--log", str(log), "create", "-b", str(bundle.path), cid,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, capture_output=False)
    assert res.returncode == 0, log.read_text()
    text = log.read_text()
    if MODE != "v1":
        assert "forking and joining instead" not in text
    joined = [ln for ln in text.splitlines() if "step=cgroup-joined" in ln]
    assert len(joined) == 1 and " failed=0 " in joined[0], joined
    mine = proc_cgroups(bundle.state(cid)["pid"])
    for ctrl, d in cgpaths(bundle, cid).items():
        assert d.endswith(mine[ctrl]), (ctrl, d, mine)
    assert bundle.onggi("delete", "--force", cid).returncode == 0


@pytest.fixture
def manager():
    """An FsManager for real cgroups of this host under a unique absolute path."""
    name = "/onggi-selfjoin-" + uuid.uuid4().hex[:10]
    m = FsManager(paths.host_layout(), paths.resolve(paths.host_layout(), name))
    yield m
    for pid in m.pids():
        os.kill(pid, signal.SIGKILL)
    m.destroy()
    assert not [d for d in m.paths.values() if os.path.exists(d)]


def _stage1(write_first: bool):
    """A single-threaded child that reads the tasks files from a pipe and writes "0" to
    them (all, or all but the first), then waits to be killed."""
    r, w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
        todo = data.decode().split("\n")[0 if write_first else 1:]
        for t in filter(None, todo):
            fd = os.open(t, os.O_WRONLY)
            os.write(fd, b"0")
            os.close(fd)
        os.write(done_w, b"1")
        os.read(r, 1)  # EOF already: just sleep until killed
        signal.pause()
    os.close(r)
    os.close(done_w)
    return pid, w, done_r


@v1_host
def test_stage1_joins_v1_by_itself_and_the_parent_the_rest(manager):
    pid, w, done = _stage1(write_first=False)
    try:
        tasks = manager.self_join(pid)
        assert tasks and all(t.endswith("/tasks") for t in tasks)
        assert not [t for t in tasks if t.startswith(ROOT + "/unified/")]  # cgroup2: no tasks
        os.write(w, "\n".join(tasks).encode())
        os.close(w)
        assert os.read(done, 1) == b"1"
        first = tasks[0].removesuffix("/tasks")
        key = next(k for k, d in manager.paths.items() if d == first)
        assert not first.endswith(proc_cgroups(pid)[key])
        manager.rejoin(pid, [tasks[0]])  # what it could not write: the parent, by pid
        mine = proc_cgroups(pid)
        for k, d in manager.paths.items():
            assert d.endswith(mine[k]), (k, d, mine)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


@v1_host
def test_a_cgroup_neither_can_join_is_apply_s_error(manager):
    pid, w, done = _stage1(write_first=False)
    try:
        tasks = manager.self_join(pid)
        missing = next(t for t in tasks if "/pids/" in t or "/memory/" in t)
        tree.remove(missing.removesuffix("/tasks"))
        with pytest.raises(CgroupError) as e:
            manager.rejoin(pid, [missing])
        assert missing.removesuffix("/tasks") in str(e.value)
    finally:
        os.close(w)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
