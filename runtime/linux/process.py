"""Starting a child that will execve: what the init and the hooks both need.

Both run between fork and exec, so nothing here imports or logs after module load.
"""

from __future__ import annotations

import _signal as signal  # the enum-free core of `signal` (see container.py)
import gc
import os

from runtime.linux import syscalls


def fork(child) -> int:
    """os.fork with the cyclic GC held off (no collector run, and no finalizers, in the child
    before it execs); the caller's GC state is restored. `child` must not return."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        pid = os.fork()
        if pid == 0:
            child()
        return pid
    finally:
        if enabled:
            gc.enable()


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
