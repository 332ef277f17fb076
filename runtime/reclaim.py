"""What `delete --force` does for a container whose state.json is missing (its create was
killed before saving it) or broken: kill what the second record (state.RECORD_FILE) names,
or, without one, what still holds the state dir open; remove the cgroups; free the id.

Imported only then, and by `delete --force` when the record names a live process that
state.json does not (the hot path stays as small as it was).
"""

from __future__ import annotations

import _signal as signal  # the enum-free core of `signal` (see container.py)
import os

from runtime import container, faults, state
from runtime.errors import Broken, NotFound, OnggiError
from runtime.linux import pids


def remove(root: str, cid: str) -> None:
    """A dir whose state.json is missing (its create was killed) or corrupt: kill what
    the second record names, remove its cgroups, then the dir."""
    path = state.container_dir(root, cid)
    lock = _lock_unfinished(path)
    if lock is None:
        return
    try:
        try:
            state.load(root, cid)
        except (NotFound, Broken):
            pass
        else:  # a create finished while we waited for its lock: an ordinary container
            lock.release()
            lock = None
            container.delete(root, cid, force=True)
            return
        found = state.load_record(path, cid)
        if found is not None:
            kill_recorded(*found)
        else:  # no record either: an init not yet started still holds the dir open
            _kill_holders(path)
        faults.point("delete:killed")
        if found is not None:
            _release_host_resources(found[0])
            _destroy_cgroups(found[0], path)
        _remove_noted_cgroups(path)
        faults.point("delete:removing")
        state.remove_dir(path)
    finally:
        if lock is not None:
            lock.release()


def _lock_unfinished(path: str, timeout: float = 5.0) -> state.Lock | None:
    """The dir's lock; None when there is no dir. A create still under way holds it (so
    does, for a moment, a stage 1 forked just before its create was killed)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            return state.Lock(path, wait=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except BlockingIOError:
            if time.monotonic() > deadline:  # a create still under way, or a verb stuck
                raise OnggiError(f"container {os.path.basename(path)}: its state dir is "
                                 "locked by another onggi (a create still under way?)") from None
            time.sleep(0.01)


def kill_recorded(init: state.State, stage1: state.State) -> None:
    """SIGKILL stage 1 (and the init it may have forked but not yet reported), then the
    init and the rest of the container; wait until they are gone."""
    if state.alive(stage1):
        for pid in _children(stage1.pid):  # the init, forked but not yet reported
            pids.send(pid, signal.SIGKILL, parent=stage1.pid)
        pids.send(stage1.pid, signal.SIGKILL, stage1.start_time)
    for pid in container.container_pids(init):
        pids.send(pid, signal.SIGKILL, init.start_time if pid == init.pid else None)
    container.wait_gone(stage1)
    container.wait_gone(init)


def _kill_holders(path: str) -> None:
    """SIGKILL the processes that hold an O_PATH fd on the state dir: the stage 1 and the
    init of a container that has not been started (they keep it for the exec fifo). Only
    O_PATH fds count: a verb that locks the dir opens it O_RDONLY."""
    path, me, pidfds = os.path.realpath(path), os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me or not _holds(int(name), path):
            continue
        if (pidfd := pids.pin(int(name))) is None:
            continue
        if _holds(int(name), path):  # pinned by the pidfd: still the same process
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            pidfds.append(pidfd)
        else:
            os.close(pidfd)
    pids.wait_pidfds(pidfds, 10)


_O_PATH = 0o10000000


def _holds(pid: int, path: str) -> bool:
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"{fd_dir}/{fd}") != path:
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}", "rb") as f:
                flags = int(f.read().split(b"flags:")[1].split()[0], 8)
        except (OSError, IndexError, ValueError):
            continue
        if flags & _O_PATH:
            return True
    return False


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _release_host_resources(st: state.State) -> None:
    if st.host_mounts or st.net_devices or st.intel_rdt:
        from runtime import hostres

        hostres.release_for_delete(st, force=True)


def _remove_noted_cgroups(path: str) -> None:
    """cgroups a create was making when it was killed (runtime.cgroups notes them before
    it makes any), whether or not the record got to name them."""
    from runtime import cgroups

    if os.path.exists(os.path.join(path, cgroups.NOTE)):
        cgroups.remove_noted(path)


def _destroy_cgroups(st: state.State, path: str) -> None:
    """The record's cgroups, less those that existed before the create (cgroups.NOTE)."""
    if not st.cgroup_paths:
        return  # the hot path imports no cgroup code for containers without cgroups
    from runtime import cgroups

    before = cgroups.existed(path)
    paths = {k: d for k, d in st.cgroup_paths.items() if d not in before}
    if paths:
        cgroups.from_state(st.replace(cgroup_paths=paths)).destroy()
