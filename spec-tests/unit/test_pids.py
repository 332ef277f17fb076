"""runtime.linux.pids: pinning by pidfd when a recorded pid has been reused."""

from __future__ import annotations

import os
import subprocess
import threading

from runtime.linux import pids
from runtime.state import proc_start_time


def test_a_pid_reused_by_a_thread_is_no_process():
    """A container's recorded pid can be handed to another process's thread: pidfd_open
    answers EINVAL (ENOENT since Linux 6.9), which means "not this process" (seen in the v2 guest, where delete
    failed with "invalid argument"), not an error."""
    ready, done = threading.Event(), threading.Event()
    tid = []

    def body():
        tid.append(threading.get_native_id())
        ready.set()
        done.wait(10)

    t = threading.Thread(target=body)
    t.start()
    try:
        ready.wait(10)
        assert tid[0] != os.getpid()
        assert pids.pin(tid[0]) is None
        assert pids.wait_gone(tid[0], 12345, 0.1)  # nothing of ours to wait for
        pids.send(tid[0], 0)  # and nothing to signal: no error
    finally:
        done.set()
        t.join()


def test_pin_and_wait_for_a_live_process():
    p = subprocess.Popen(["sleep", "100"])
    try:
        fd = pids.pin(p.pid)
        assert fd is not None
        os.close(fd)
        start = proc_start_time(p.pid)
        assert not pids.wait_gone(p.pid, start, 0.05)  # still running
        p.kill()
        assert pids.wait_gone(p.pid, start, 5)
    finally:
        p.kill()
        p.wait()
