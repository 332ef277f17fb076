"""Processes by pid: signals pinned by a pidfd (a reused pid is never signalled), waiting
for an exit, reaping a child; parents from /proc/<pid>/stat (parsed by runtime.state, which
`create` needs without the rest of this).

On the hot path (kill, delete, start): the cheapest standard modules only.
"""

from __future__ import annotations

import _signal as signal  # the enum-free core of `signal` (see runtime/container.py)
import os
import select

from runtime.state import proc_start_time as start_time
from runtime.state import proc_stat as stat


def ppid(pid: int | str) -> int:
    f = stat(pid)
    return int(f[1]) if f else 0


def all_ppids() -> dict[int, int]:
    """{pid: ppid} of every process."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (f := stat(name)) is not None:
            out[int(name)] = int(f[1])
    return out


def pin(pid: int) -> int | None:
    """A pidfd for process `pid`, None when there is none: gone (ESRCH), or the pid is now a
    thread's that is not a process leader (pids are reused for threads too: EINVAL before
    Linux 6.9, ENOENT since)."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except OSError as e:
        if e.errno in (22, 2):  # EINVAL, ENOENT (errno is not loaded on the hot path)
            return None
        raise


def send(pid: int, sig: int, start: int | None = None, parent: int = 0) -> None:
    """Signal `pid` through a pidfd, if it still has start time `start` (when given) or is
    still a child of `parent` (when given): the pidfd pins the process, so the check holds
    when we signal. A process that is gone is no error."""
    if (pidfd := pin(pid)) is None:
        return
    try:
        if start is not None and start_time(pid) != start:
            return
        if parent and ppid(pid) != parent:
            return
        signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)


def wait_gone(pid: int, start: int, timeout: float) -> bool:
    """Until the process (pid, start time) has exited (a zombie counts); False when it is
    still there after `timeout` seconds. A pidfd reads ready once its process exits."""
    if pid <= 0:
        return True
    if (pidfd := pin(pid)) is None:
        return True
    try:
        if start_time(pid) != start:  # pinned now: gone already, or another process
            return True
        return bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)


def wait_pidfds(pidfds: list[int], timeout: float) -> None:
    """Until each pidfd's process has exited, `timeout` seconds at most each; closes them."""
    for pidfd in pidfds:
        try:
            select.select([pidfd], [], [], timeout)
        finally:
            os.close(pidfd)


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def kill_child(pid: int) -> None:
    """SIGKILL a child of ours and reap it (until we reap it, its pid is not reused)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    reap(pid)
