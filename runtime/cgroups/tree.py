"""A cgroup and the sub-cgroups below it: every pid in them, and removal that waits while
they drain (a killed task leaves its cgroup a moment after it is signalled)."""

from __future__ import annotations

import errno
import os
import time

from runtime.cgroups import files


def subdirs(path: str) -> list[str]:
    try:
        with os.scandir(path) as it:
            return sorted(e.path for e in it if e.is_dir(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        return []


def all_pids(path: str) -> list[int]:
    """cgroup.procs of `path` and every cgroup below it, parents first (runc's GetAllPids)."""
    out: list[int] = []
    todo = [path]
    while todo:
        d = todo.pop(0)
        out.extend(files.procs(d))
        todo[:0] = subdirs(d)
    return out


def remove(path: str, timeout: float = 2.0) -> None:
    """rmdir `path` and any sub-cgroups, deepest first, retrying EBUSY with backoff (runc's
    RemovePath: 1, 2, 4 ... ms). Raises OSError if it is still there at the end."""
    try:  # the common case first: a leaf whose tasks are gone (no listing, no clock)
        os.rmdir(path)
        return
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno not in (errno.EBUSY, errno.EINTR, errno.ENOTEMPTY):  # sub-cgroups, tasks
            raise
    delay, deadline = 0.001, time.monotonic() + timeout
    while True:
        try:
            for d in subdirs(path):
                remove(d, max(0.0, deadline - time.monotonic()))
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno not in (errno.EBUSY, errno.EINTR) \
                    or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.128)


def remove_parents(made: list[str]) -> None:
    """The parents we created on the way to the container's cgroup, deepest first, while
    they are empty (another container may have moved in since)."""
    for d in sorted(made, key=len, reverse=True):
        try:
            os.rmdir(d)
        except OSError:
            continue  # gone, or not empty: its parents are not empty either
