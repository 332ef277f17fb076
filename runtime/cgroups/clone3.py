"""fork() straight into a cgroup v2 directory: clone3(CLONE_INTO_CGROUP) (Linux >= 5.7).

The child is born in the cgroup, so no window exists in which it runs elsewhere, and the
parent saves a cgroup.procs write. It mirrors CPython's os.fork() (PyOS_BeforeFork, the
syscall, PyOS_AfterFork_Child/Parent) and is sound only in a single-threaded process, which
`create` is: with another thread alive the caller falls back to os.fork. The syscall goes
through a PyDLL, so the GIL stays held across it as os.fork holds it.
"""

from __future__ import annotations

import ctypes
import os
import struct

from runtime.linux import process

SYS_CLONE3 = {"x86_64": 435, "aarch64": 435}.get(os.uname().machine, 435)
CLONE_INTO_CGROUP = 0x200000000
SIGCHLD = 17
_ARGS_SIZE = 88  # CLONE_ARGS_SIZE_VER2: up to and including .cgroup

_py = ctypes.pythonapi
_libc = ctypes.PyDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def fork_into(cgfd: int) -> int:
    """Like os.fork(), the child in the cgroup whose directory `cgfd` is open (O_PATH is
    enough). OSError when the kernel refuses (ENOSYS, E2BIG: too old; EBADF: not cgroup2;
    EBUSY/EOPNOTSUPP: not a valid leaf); then nothing was forked."""
    if not process.single_threaded():
        raise OSError(0, "clone3 needs a single-threaded process")
    args = ctypes.create_string_buffer(
        struct.pack("<11Q", CLONE_INTO_CGROUP, 0, 0, 0, SIGCHLD, 0, 0, 0, 0, 0, cgfd),
        _ARGS_SIZE)
    _py.PyOS_BeforeFork()
    pid = _libc.syscall(ctypes.c_long(SYS_CLONE3), args, ctypes.c_size_t(_ARGS_SIZE))
    if pid == 0:
        _py.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    _py.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, os.strerror(err))
    return pid


def fork(cgroup_dir: str, child) -> int:
    """runtime.linux.process.fork, born in the cgroup2 dir `cgroup_dir`: the GC is held off
    across the clone and `child` (which must not return) runs in the child. OSError as
    fork_into's, or when the dir cannot be opened; then nothing was forked."""
    fd = os.open(cgroup_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return process.fork(child, lambda: fork_into(fd))
    finally:
        os.close(fd)
