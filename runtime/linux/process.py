"""Starting a child that will execve: what the init and the hooks both need.

Both run between fork and exec, so nothing here imports or logs after module load.
"""

from __future__ import annotations

import _signal as signal  # the enum-free core of `signal` (see container.py)
import gc
import os
import time

from runtime.linux import syscalls


def single_threaded(wait: float = 0.01) -> bool:
    """Only this thread? A thread that just finished may take a moment
    to leave /proc/self/task: wait up to `wait` seconds for it."""
    deadline = time.monotonic() + wait
    while True:
        try:
            if len(os.listdir("/proc/self/task")) == 1:
                return True
        except OSError:
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0002)


def fork(child, forker=os.fork) -> int:
    """`forker()` (os.fork, or one like it: runtime.cgroups.clone3's) with the cyclic GC held
    off (no collector run, and no finalizers, in the child before it execs); the caller's GC
    state is restored. `child` must not return."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        pid = forker()
        if pid == 0:
            child()
        return pid
    finally:
        if enabled:
            gc.enable()


# Signals whose default action ends a process, less the faults (a handler can't mend those)
# and glibc's reserved 32 and 33.
_NOT_FATAL = {
    signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGCONT, signal.SIGTSTP,
    signal.SIGTTIN, signal.SIGTTOU, signal.SIGURG, signal.SIGWINCH, signal.SIGILL,
    signal.SIGTRAP, signal.SIGBUS, signal.SIGFPE, signal.SIGSEGV, signal.SIGSYS, 32, 33,
}


def die_on_signals() -> None:
    """PID 1 of a pid namespace is sent no signal it has no handler for (SIGKILL aside), so
    `kill ID TERM` of a created container would be lost: until the user process runs, the
    init ends as the signal would end it. runc's Go init behaves the same. The mask is cleared
    too: `run` blocks signals while it creates, and the init inherits that mask."""
    for sig in range(1, signal.NSIG):
        if sig not in _NOT_FATAL:
            signal.signal(sig, _die)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _die(sig: int, _frame: object) -> None:
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)  # ends us, unless we are PID 1 of our namespace
    os._exit(128 + sig)


def reset_signals() -> None:
    """Python ignores SIGPIPE/SIGXFSZ and ignored dispositions survive execve: reset all,
    and the mask, before exec."""
    for sig in range(1, signal.NSIG):
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            syscalls.default_signal(sig)  # 32 and 33: reserved by glibc
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
