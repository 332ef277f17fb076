"""Helpers for tests about pure cgroup v2 and systemd (see guestmarks.py for the markers).

On a host (outside the guest):
    in_guest(command, mode="systemd", timeout=900) -> GuestRun   boot the v2 guest, run, return
                                                                   .rc/.output; .check() asserts
Inside the guest, or on any pure-v2 host with systemd:
    cgroup_dir(rel) / read_cgroup(rel, file)    the cgroup2 tree under /sys/fs/cgroup
    systemctl_show(unit, *props) -> dict        a unit's properties, as systemd reports them
    unit_gone(unit) -> bool                     the unit is unloaded (its scope was removed)
    manager_property(name) -> str               org.freedesktop.systemd1.Manager property over D-Bus
    runc(*args, root=..., systemd=False)        the reference runtime, for side-by-side checks
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness import REPO

CGROUP_ROOT = Path("/sys/fs/cgroup")

sys.path.insert(0, str(REPO))
from conformance.v2vm import guest  # noqa: E402, F401
from conformance.v2vm.guest import IN_GUEST, GuestRun  # noqa: E402, F401
from conformance.v2vm.guest import run as in_guest  # noqa: E402, F401


def cgroup_dir(rel: str) -> Path:
    """The directory of cgroup `rel` ("/system.slice/x.scope" or "system.slice/x.scope")."""
    return CGROUP_ROOT / rel.lstrip("/")


def read_cgroup(rel: str, name: str) -> str:
    return (cgroup_dir(rel) / name).read_text().strip()


def own_cgroup() -> str:
    """This process's cgroup v2 path ("0::/..." in /proc/self/cgroup)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise AssertionError("no cgroup v2 line in /proc/self/cgroup")


def systemctl_show(unit: str, *props: str) -> dict[str, str]:
    res = subprocess.run(["systemctl", "show", unit, *(f"--property={p}" for p in props)],
                         capture_output=True, text=True, timeout=60, check=True)
    return dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)


def unit_gone(unit: str) -> bool:
    st = systemctl_show(unit, "LoadState", "ActiveState")
    return st.get("LoadState") == "not-found" or st.get("ActiveState") == "inactive"


def manager_property(name: str) -> str:
    """A property of systemd's manager object, read over the system bus with busctl."""
    res = subprocess.run(["busctl", "--system", "get-property", "org.freedesktop.systemd1",
                          "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", name],
                         capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise AssertionError(f"busctl get-property {name}: {res.stderr.strip()}")
    return res.stdout.strip()


def runc(*args: str, root: str | os.PathLike, systemd: bool = False, timeout: float = 120,
         **kw) -> subprocess.CompletedProcess:
    cmd = ["runc", "--root", str(root)] + (["--systemd-cgroup"] if systemd else []) + list(args)
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(cmd, timeout=timeout, **kw)
