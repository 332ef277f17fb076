"""Reading and writing cgroup files: one write(2) per value, errors that name the field.

A cgroup file reports a bad value at write(2) time, so a buffered file object would raise
it at close, or lose it: every write here is os.open + os.write + os.close (runc's
WriteFile, with O_TRUNC so that a fake cgroupfs of plain files behaves like the real one).
"""

from __future__ import annotations

import errno as _errno
import os

from runtime.errors import OnggiError, reason  # reason: fs.py takes it here too

JOURNAL: list[tuple[str, str]] | None = None  # tests: every write, (path, data), in order


class CgroupError(OnggiError):
    """A cgroup operation failed: `field` names the config field it was for (or the file)."""

    def __init__(self, msg: str, err: int | None = None) -> None:
        super().__init__(msg)
        self.errno = err


def write(dirpath: str, name: str, data: str | int, field: str = "") -> None:
    """Write `data` to dirpath/name; on failure a CgroupError naming `field` (or the file)."""
    path = dirpath + "/" + name
    text = str(data)
    if JOURNAL is not None:
        JOURNAL.append((path, text))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            _write_retry(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as e:
        where = f"{field}: " if field else ""
        raise CgroupError(f"{where}writing {text!r} to {path}: {reason(e)}", e.errno) from None


def _write_retry(fd: int, data: bytes) -> None:
    # EINTR is retried by Python (PEP 475); a short write never happens on cgroupfs.
    os.write(fd, data)


def read(dirpath: str, name: str) -> str:
    with open(dirpath + "/" + name) as f:
        return f.read()


def read_or(dirpath: str, name: str, default: str = "") -> str:
    """The file's text, or `default` when it does not exist (a controller not there)."""
    try:
        return read(dirpath, name)
    except OSError as e:
        if e.errno in (_errno.ENOENT, _errno.ENODEV, _errno.ENOTSUP, _errno.EINVAL):
            return default
        raise


def read_int(dirpath: str, name: str, default: int = 0) -> int:
    """A file's first number: `default` when it is missing or empty, 2**64-1 for "max"
    (as runc reports it)."""
    text = read_or(dirpath, name, "").strip()
    if not text:
        return default
    if text == "max":
        return 2**64 - 1
    try:
        return int(text.split()[0])
    except ValueError:
        return default


def read_keyed(dirpath: str, name: str) -> dict[str, int]:
    """A flat keyed file ("key value" lines: memory.stat, cpu.stat, memory.events)."""
    out = {}
    for line in read_or(dirpath, name, "").splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def exists(dirpath: str, name: str) -> bool:
    return os.path.exists(dirpath + "/" + name)


def procs(dirpath: str) -> list[int]:
    """The pids in cgroup.procs of one dir (no sub-cgroups); none when the cgroup is gone or
    going (ENODEV: being removed, as systemd does to a scope whose last process died)."""
    try:
        text = read(dirpath, "cgroup.procs")
    except OSError as e:
        if e.errno in (_errno.ENOENT, _errno.ENODEV):
            return []
        raise
    return [int(x) for x in text.split()]


def add_pid(dirpath: str, pid: int) -> None:
    """Move `pid` into the cgroup. EINVAL means a task still in TASK_NEW (runc retries
    5 times, 30 ms apart)."""
    import time

    for attempt in range(6):
        try:
            write(dirpath, "cgroup.procs", pid)
            return
        except CgroupError as e:
            if e.errno != _errno.EINVAL or attempt == 5:
                raise CgroupError(f"joining {dirpath}: {str(e).rpartition(': ')[2]}",
                                  e.errno) from None
            time.sleep(0.03)


def join_self(tasks: list[str]) -> list[str]:
    """Move the calling thread, a child's only one, into the v1 cgroups by writing "0" to
    each `tasks` file: no global lock in the kernel (Linux >= 6.0), where a pid written to
    cgroup.procs makes it wait for an RCU grace period (~10-25 ms here). For create's stage 1
    and exec's child, right after fork: os calls only. Returns the files it could not write,
    which the parent joins by pid."""
    failed = []
    for path in tasks:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        except OSError:
            failed.append(path)
    return failed
