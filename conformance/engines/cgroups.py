"""Reading a container's cgroup limits from the host, on cgroup v1 (this machine) or v2.

Everything goes through /proc/<pid>/cgroup, so it checks where the runtime really put the
process, not where the config said it should go."""

from __future__ import annotations

import os
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
UNLIMITED_V1 = 9223372036854771712  # memory.limit_in_bytes when no limit is set


def is_v2() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def _mountpoints() -> dict[str, Path]:
    """v1 controller (and name=...) -> its hierarchy's mount point."""
    points: dict[str, Path] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fstype, _src, opts = post.split()[:3]
            if fstype != "cgroup":
                continue
            for opt in opts.split(","):
                if opt not in ("rw", "ro", "relatime", "noexec", "nosuid", "nodev"):
                    points.setdefault(opt, Path(pre.split()[4]))
    return points


def proc_cgroups(pid: int) -> dict[str, str]:
    """controller -> path as /proc/<pid>/cgroup gives it ('' is the v2 unified entry)."""
    out: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(",") if ctrls else [""]:
            out[c] = path
    return out


def cgroup_dir(pid: int, controller: str) -> Path:
    """The host directory of `pid`'s cgroup for `controller`."""
    paths = proc_cgroups(pid)
    if is_v2():
        return CGROUP_ROOT / paths[""].lstrip("/")
    return _mountpoints()[controller] / paths[controller].lstrip("/")


def read(pid: int, controller: str, v1_file: str, v2_file: str) -> str:
    name = v2_file if is_v2() else v1_file
    return (cgroup_dir(pid, controller) / name).read_text().strip()


def memory_limit(pid: int) -> int | None:
    raw = read(pid, "memory", "memory.limit_in_bytes", "memory.max")
    return None if raw == "max" or int(raw) >= UNLIMITED_V1 else int(raw)


def pids_limit(pid: int) -> int | None:
    raw = read(pid, "pids", "pids.max", "pids.max")
    return None if raw == "max" else int(raw)


def cpu_quota(pid: int) -> tuple[int, int]:
    """(quota, period) in microseconds; quota -1 when unlimited."""
    if is_v2():
        q, p = read(pid, "cpu", "", "cpu.max").split()
        return (-1 if q == "max" else int(q)), int(p)
    d = cgroup_dir(pid, "cpu")
    return (int((d / "cpu.cfs_quota_us").read_text()), int((d / "cpu.cfs_period_us").read_text()))


def frozen(pid: int) -> bool:
    if is_v2():
        return "frozen 1" in (cgroup_dir(pid, "") / "cgroup.events").read_text()
    return read(pid, "freezer", "freezer.state", "") == "FROZEN"


def procs(pid: int, controller: str = "pids") -> list[int]:
    return [int(p) for p in (cgroup_dir(pid, controller) / "cgroup.procs").read_text().split()]


def inside_paths() -> dict[str, str]:
    """The files a container reads to see its own limits (the cgroup mount at /sys/fs/cgroup)."""
    if is_v2():
        return {"memory": "/sys/fs/cgroup/memory.max", "pids": "/sys/fs/cgroup/pids.max",
                "cpu": "/sys/fs/cgroup/cpu.max"}
    return {"memory": "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "pids": "/sys/fs/cgroup/pids/pids.max",
            "cpu": "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"}


def remove_we_made(rel: str, existed_before: set[Path], recursive: bool = False) -> None:
    """rmdir the cgroup `rel` in every hierarchy unless it was there before we started;
    `recursive` also removes its empty children (only for names unique to this run).
    rmdir of a cgroup that still has processes or children fails: that is safe."""
    for top in _tops():
        d = top / rel.lstrip("/")
        if d in existed_before or not d.is_dir():
            continue
        subs = [Path(s) for s, _, _ in os.walk(d)] if recursive else [d]
        for sub in sorted(subs, key=lambda p: -len(p.parts)):
            _rmdir_when_empty(sub)


def _rmdir_when_empty(d: Path, timeout: float = 5) -> None:
    """rmdir, retried for a while: podman's cleanup of a --rm container runs after the
    command returns, and only then is the container's cgroup gone from under ours."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)


def existing(rel: str) -> set[Path]:
    return {top / rel.lstrip("/") for top in _tops() if (top / rel.lstrip("/")).is_dir()}


def _tops() -> list[Path]:
    """Every hierarchy engines make cgroups in: v1 ones, plus the hybrid unified mount."""
    if is_v2():
        return [CGROUP_ROOT]
    unified = CGROUP_ROOT / "unified"
    extra = [unified] if (unified / "cgroup.controllers").exists() else []
    return sorted(set(_mountpoints().values())) + extra
