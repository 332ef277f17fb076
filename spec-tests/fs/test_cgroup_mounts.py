"""cgroup mounts: v1 hierarchies (hybrid hosts) or v2, read-only by default, cgroupns-aware."""

from __future__ import annotations

import pytest
from fs_harness import mountinfo_of

from runtime.cgroups import hierarchy

HOST = hierarchy.host()
V1 = [h for h in HOST if h.fstype == "cgroup"]
V2 = [h for h in HOST if h.fstype == "cgroup2"]


def cgroup_mount(fsb, *opts):
    fsb.config["mounts"] = [m for m in fsb.config["mounts"]
                            if m["destination"] != "/sys/fs/cgroup"]
    fsb.mount("/sys/fs/cgroup", "cgroup", "cgroup", list(opts))


def cgroupns(fsb, on: bool) -> None:
    ns = [n for n in fsb.config["linux"]["namespaces"] if n["type"] != "cgroup"]
    fsb.config["linux"]["namespaces"] = ns + ([{"type": "cgroup"}] if on else [])


@pytest.mark.parametrize("use_ns", [True, False])
def test_cgroup_mount_read_only_by_default(fsb, use_ns):
    cgroupns(fsb, use_ns)
    cgroup_mount(fsb, "nosuid", "noexec", "nodev")
    r = fsb.sh("cat /proc/self/mountinfo; ls /sys/fs/cgroup; echo ---; cat /proc/self/cgroup")
    assert r.rc == 0, r.err
    out, _, inside = r.out.partition("---\n")
    mi = mountinfo_of(out)
    # the container's own cgroups, as it sees them (onggi puts it in cgroups of its own)
    own = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in inside.splitlines()}
    top = mi["/sys/fs/cgroup"]
    assert "ro" in top["opts"]
    hier = V1 + V2 if V1 else V2
    for h in hier:
        point = "/sys/fs/cgroup" + ("/" + h.name if h.name else "")
        assert point in mi, point
        assert mi[point]["fstype"] == h.fstype
        assert {"ro", "nosuid", "noexec", "nodev"} <= mi[point]["opts"]
        key = h.data if h.fstype == "cgroup" else ""
        root = mi[point]["root"]
        if use_ns:
            assert root == "/" and own.get(key, "/") == "/"  # /proc/self/cgroup agrees
        elif h.fstype == "cgroup2" and not h.name:
            # pure v2: cgroup2 is mounted, not bound, as runc does (the cgroupns's root)
            assert root == "/"
        elif own.get(key, "/") != "/":
            # v1, and a hybrid host's unified tree: our own cgroup, bound from the host
            assert root == own[key]


def test_cgroup_rw_when_asked(fsb):
    cgroupns(fsb, True)
    cgroup_mount(fsb, "rw")
    r = fsb.sh("cat /proc/self/mountinfo")
    assert r.rc == 0, r.err
    mi = mountinfo_of(r.out)
    assert all("rw" in v["opts"] for k, v in mi.items() if k.startswith("/sys/fs/cgroup"))


@pytest.mark.skipif(not V2, reason="the host has no cgroup2 hierarchy")
def test_explicit_cgroup2_mount(fsb):
    cgroupns(fsb, True)
    fsb.config["mounts"] = [m for m in fsb.config["mounts"]
                            if m["destination"] != "/sys/fs/cgroup"]
    fsb.mount("/sys/fs/cgroup", "cgroup2", "cgroup2", [])
    r = fsb.sh("cat /proc/self/mountinfo; ls /sys/fs/cgroup")
    assert r.rc == 0, r.err
    mi = mountinfo_of(r.out)
    assert mi["/sys/fs/cgroup"]["fstype"] == "cgroup2"
    assert "ro" in mi["/sys/fs/cgroup"]["opts"]
    assert "cgroup.procs" in r.out.split()
