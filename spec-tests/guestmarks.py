"""Markers for tests that need what this host lacks: a pure cgroup v2 hierarchy, or systemd.

    @pytest.mark.cgroupv2   /sys/fs/cgroup is cgroup2 and no v1 hierarchy is mounted
    @pytest.mark.systemd    systemd is PID 1 and the system D-Bus socket is there
    @pytest.mark.guest_too  no need: runs here, and in the v2 guest too (pure v2, systemd)

A test marked cgroupv2 or systemd skips where its need is not met (this v1-hybrid host), and
runs where it is: in the v2 guest, where spec-tests/v2guest runs every marked test during
`make test`, or on any pure-v2 host. Inside the guest (ONGGI_V2GUEST is set) an unmet need fails
instead of skipping, so that a broken guest cannot pass by skipping everything. guest_too is
for the generic tests (cgroup verbs, cleanup, devices; propagation on a shared "/") that must
hold on both kinds of host: they run here as usual and are picked for the guest run as well.
"""

from __future__ import annotations

import os

import pytest

IN_GUEST = os.environ.get("ONGGI_V2GUEST", "")  # "systemd" or "minimal" inside the v2 guest
MARKERS = {
    "cgroupv2": "needs a pure cgroup v2 host: runs in the v2 guest (make test-v2)",
    "systemd": "needs systemd as PID 1 with the system D-Bus: runs in the v2 guest (make test-v2)",
    "guest_too": "runs on any host, and in the v2 guest too (make test-v2)",
}
SELECT = " or ".join(MARKERS)  # the -m expression the guest run uses


def cgroup_mounts() -> list[tuple[str, str]]:
    """(mount point, fstype) of every cgroup/cgroup2 mount in this mount namespace."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype in ("cgroup", "cgroup2"):
                out.append((fields[4], fstype))
    return out


def pure_v2() -> bool:
    mounts = cgroup_mounts()
    return ("/sys/fs/cgroup", "cgroup2") in mounts and all(t == "cgroup2" for _, t in mounts)


def systemd_running() -> bool:
    # sd_booted()'s test, plus the bus that StartTransientUnit goes through
    return os.path.isdir("/run/systemd/system") and os.path.exists("/run/dbus/system_bus_socket")


NEEDS = {"cgroupv2": pure_v2, "systemd": systemd_running}  # guest_too needs nothing


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for name, met in NEEDS.items():
        if item.get_closest_marker(name) is None or met():
            continue
        if IN_GUEST == "systemd" or (IN_GUEST and name == "cgroupv2"):
            pytest.fail(f"in the v2 guest ({IN_GUEST} mode), yet: not met: {MARKERS[name]}")
        pytest.skip(MARKERS[name])
