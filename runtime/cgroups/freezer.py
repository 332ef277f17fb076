"""pause/resume: the v1 freezer (freezer.state) or v2's cgroup.freeze, waiting until the
cgroup is really frozen; and `paused`, which `state` calls on the hot path (so this module
imports nothing but os and time).

On a hybrid host the v1 freezer is the one used, as runc does; a container whose state has
no v1 freezer path uses cgroup.freeze of its cgroup2 dir.
"""

from __future__ import annotations

import os
import time

from runtime.cgroups.files import CgroupError, read, write


def _v1(paths: dict) -> str | None:
    return paths.get("freezer")


def paused(paths: dict) -> bool:
    """Is the container's cgroup frozen by itself (not only through an ancestor)?"""
    v1 = _v1(paths)
    try:
        if v1 is not None:
            while True:
                s = read(v1, "freezer.state").strip()
                if s != "FREEZING":
                    break
                time.sleep(0.001)
            return s == "FROZEN" and read(v1, "freezer.self_freezing").strip() == "1"
        v2 = paths.get("")
        if v2 is not None:
            return read(v2, "cgroup.freeze").strip() == "1"
    except OSError:
        pass  # the cgroup is gone
    return False


def freeze(paths: dict) -> None:
    v1 = _v1(paths)
    if v1 is not None:
        _freeze_v1(v1)
    elif paths.get("") is not None:
        _freeze_v2(paths[""])
    else:
        raise CgroupError("cannot pause: the container has no freezer cgroup")


def thaw(paths: dict) -> None:
    v1 = _v1(paths)
    if v1 is not None:
        write(v1, "freezer.state", "THAWED")
    elif paths.get("") is not None:
        write(paths[""], "cgroup.freeze", "0")
        if read(paths[""], "cgroup.freeze").strip() != "0":
            raise CgroupError(f"{paths['']}/cgroup.freeze did not thaw")
    else:
        raise CgroupError("cannot resume: the container has no freezer cgroup")


def _freeze_v1(path: str) -> None:
    """runc's loop: a task in an uninterruptible sleep can hold FREEZING for a while, and
    a thaw now and then lets a stuck one move on."""
    try:
        for i in range(1000):
            if i % 50 == 49:
                write(path, "freezer.state", "THAWED")
                time.sleep(0.01)
            write(path, "freezer.state", "FROZEN")
            if i % 25 == 24:
                time.sleep(0.00001)
            s = read(path, "freezer.state").strip()
            if s == "FROZEN":
                return
            if s != "FREEZING":
                raise CgroupError(f"{path}/freezer.state: unexpected {s} while freezing")
        raise CgroupError(f"{path}: unable to freeze")
    except BaseException:
        try:
            write(path, "freezer.state", "THAWED")  # never leave it half frozen
        except CgroupError:
            pass
        raise


def _freeze_v2(path: str) -> None:
    try:
        write(path, "cgroup.freeze", "1")
    except CgroupError as e:
        raise CgroupError(f"cannot pause: {e}") from None
    for _ in range(1000):  # 10 s, as runc
        for line in read(path, "cgroup.events").splitlines():
            if line == "frozen 1":
                return
        time.sleep(0.01)
    write(path, "cgroup.freeze", "0")
    raise CgroupError(f"{path}: timeout of 10s reached waiting for the cgroup to freeze")


def exists(paths: dict) -> bool:
    p = _v1(paths) or paths.get("")
    return p is not None and os.path.isdir(p)
