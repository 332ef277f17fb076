"""process.scheduler (sched_setattr), process.ioPriority (ioprio_set) and CPU affinity.

The conversions run in the parent; the `set_*` calls run in the child between fork and
exec (no imports inside functions, errors as one-line OSErrors naming the field).
"""

from __future__ import annotations

import ctypes
import errno
import os

from runtime.errors import strerror
from runtime.linux import syscalls
from runtime.spec import IOPriority, Scheduler

_ARCH = os.uname().machine
_NR = {
    "x86_64": {"sched_setattr": 314, "ioprio_set": 251},
    "aarch64": {"sched_setattr": 274, "ioprio_set": 30},
}.get(_ARCH, {})

POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3,
            "SCHED_ISO": 4, "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}
FLAGS = {"SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02,
         "SCHED_FLAG_DL_OVERRUN": 0x04, "SCHED_FLAG_KEEP_POLICY": 0x08,
         "SCHED_FLAG_KEEP_PARAMS": 0x10, "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
         "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40}
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
_IOPRIO_CLASS_SHIFT = 13
_IOPRIO_WHO_PROCESS = 1


class SchedAttr(ctypes.Structure):
    """struct sched_attr, SCHED_ATTR_SIZE_VER1 (56 bytes: the util-clamp fields too)."""

    _fields_ = [("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32),
                ("sched_flags", ctypes.c_uint64), ("sched_nice", ctypes.c_int32),
                ("sched_priority", ctypes.c_uint32), ("sched_runtime", ctypes.c_uint64),
                ("sched_deadline", ctypes.c_uint64), ("sched_period", ctypes.c_uint64),
                ("sched_util_min", ctypes.c_uint32), ("sched_util_max", ctypes.c_uint32)]


def sched_attr(s: Scheduler) -> SchedAttr:
    """The kernel's struct for process.scheduler (built in the parent)."""
    flags = 0
    for name in s.flags:
        flags |= FLAGS[name]
    return SchedAttr(ctypes.sizeof(SchedAttr), POLICIES[s.policy], flags, s.nice, s.priority,
                     s.runtime, s.deadline, s.period, 0, 0)


def set_scheduler(attr: SchedAttr, policy: str) -> None:
    if syscalls._syscall(_NR["sched_setattr"], 0, ctypes.byref(attr), 0) == 0:
        return
    err = ctypes.get_errno()
    hint = ""
    if err == errno.EPERM and policy in ("SCHED_FIFO", "SCHED_RR", "SCHED_DEADLINE"):
        # cgroup v1 with RT group scheduling gives a new cpu cgroup no realtime budget
        hint = " (a realtime policy needs a realtime budget in the container's cpu cgroup: " \
               "linux.resources.cpu.realtimeRuntime)"
    elif err == errno.EOPNOTSUPP:
        hint = " (this kernel lacks a feature a flag asks for)"
    raise OSError(err, f"process.scheduler: sched_setattr({policy}): "
                       f"{strerror(err)}{hint}")


def ioprio_value(io: IOPriority) -> int:
    return IOPRIO_CLASSES[io.io_class] << _IOPRIO_CLASS_SHIFT | io.priority


def set_ioprio(value: int) -> None:
    """ioprio_set(IOPRIO_WHO_PROCESS, self): the process and what it forks later (runc and
    crun set the process too, though the spec says process group)."""
    if syscalls._syscall(_NR["ioprio_set"], _IOPRIO_WHO_PROCESS, 0, value) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"process.ioPriority: ioprio_set: {strerror(err)}")


def set_affinity(cpus: tuple[int, ...], field: str, pid: int = 0) -> None:
    try:
        os.sched_setaffinity(pid, cpus)
    except OSError as e:
        why = strerror(e.errno)
        if e.errno == errno.EINVAL:
            why += " (none of these CPUs is online and allowed by the cpuset)"
        raise OSError(e.errno, f"{field}: sched_setaffinity({format_cpus(cpus)}): {why}") \
            from None


def format_cpus(cpus) -> str:
    """(0, 1, 2, 5) -> "0-2,5", the kernel's list format."""
    out, run = [], []
    for c in sorted(cpus):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)
