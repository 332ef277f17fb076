"""The cgroup managers against a fake cgroupfs (youki's approach): a tmp dir laid out like a
v1, hybrid or v2 hierarchy, the manager pointed at it, every write recorded in order
(files.JOURNAL). No root needed; the real hierarchies are tested in spec-tests/cgroups."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from runtime.cgroups import bpf, devices, files, freezer, paths, stats, tree, update
from runtime.cgroups import exec_join as join
from runtime.cgroups import resources as R
from runtime.cgroups.files import CgroupError
from runtime.cgroups.fs import FsManager
from runtime.cgroups.paths import Layout
from runtime.errors import ConfigError, OnggiError

V1_SUBSYS = ("cpuset", "devices", "memory", "cpu", "cpuacct", "pids", "blkio", "hugetlb",
             "net_cls", "net_prio", "freezer", "name=systemd")

V1_FILES = {
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": "", "cgroup.procs": ""},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n",
                "cgroup.procs": ""},
    "memory": {"memory.limit_in_bytes": "9223372036854771712\n",
               "memory.memsw.limit_in_bytes": "9223372036854771712\n",
               "memory.soft_limit_in_bytes": "", "memory.swappiness": "60\n",
               "memory.oom_control": "", "memory.use_hierarchy": "1\n", "cgroup.procs": "",
               "memory.kmem.limit_in_bytes": "", "memory.kmem.tcp.limit_in_bytes": ""},
    "cpu": {"cpu.shares": "1024\n", "cpu.cfs_period_us": "", "cpu.cfs_quota_us": "",
            "cpu.cfs_burst_us": "", "cpu.idle": "", "cpu.rt_period_us": "",
            "cpu.rt_runtime_us": "", "cgroup.procs": ""},
    "pids": {"pids.max": "max\n", "cgroup.procs": ""},
    "blkio": {"blkio.bfq.weight": "", "blkio.bfq.weight_device": "",
              "blkio.throttle.read_bps_device": "", "blkio.throttle.write_bps_device": "",
              "blkio.throttle.read_iops_device": "", "blkio.throttle.write_iops_device": "",
              "cgroup.procs": ""},
    "hugetlb": {"hugetlb.2MB.limit_in_bytes": "", "hugetlb.2MB.rsvd.limit_in_bytes": "",
                "cgroup.procs": ""},
    "net_cls": {"net_cls.classid": "", "cgroup.procs": ""},
    "net_prio": {"net_prio.ifpriomap": "", "cgroup.procs": ""},
}
V2_FILES = {
    "cgroup.procs": "", "cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma\n",
    "cgroup.type": "domain\n", "cgroup.freeze": "0\n", "cgroup.events": "populated 1\nfrozen 0\n",
    "cgroup.kill": "", "memory.max": "max\n", "memory.swap.max": "max\n", "memory.low": "0\n",
    "cpu.weight": "100\n", "cpu.max": "max 100000\n", "cpu.max.burst": "0\n", "cpu.idle": "0\n",
    "cpuset.cpus": "", "cpuset.mems": "", "pids.max": "max\n", "io.weight": "default 100\n",
    "io.max": "", "hugetlb.2MB.max": "max\n", "hugetlb.2MB.rsvd.max": "max\n", "rdma.max": "",
    "memory.current": "0\n", "memory.high": "max\n",
}


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """mkdir under tmp_path populates the new dir as the kernel would: the control files of
    its hierarchy (a v1 subsystem's, or v2's), with a new cpuset's cpus and mems empty."""
    real = os.mkdir

    def mkdir(p, mode=0o777):
        real(p, mode)
        r = Path(p).relative_to(tmp_path) if str(p).startswith(str(tmp_path)) else None
        if r is None:
            return
        names = V1_FILES.get(r.parts[0]) if r.parts[0] in V1_FILES else V2_FILES
        fill(Path(p), {k: v for k, v in names.items() if k not in ("cgroup.controllers",)})

    def rmdir(p):
        if str(p).startswith(str(tmp_path)) and os.path.isdir(p):
            for e in os.scandir(p):
                if e.is_file():
                    os.unlink(e.path)  # cgroupfs' control files go with the dir
        real_rmdir(p)

    real_rmdir = os.rmdir
    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "rmdir", rmdir)


def fill(d: Path, names: dict[str, str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for n, text in names.items():
        (d / n).write_text(text)


@pytest.fixture
def journal():
    files.JOURNAL = []
    yield files.JOURNAL
    files.JOURNAL = None


def v1_layout(root: Path, hybrid: bool = False) -> Layout:
    for s in V1_SUBSYS:
        name = s.removeprefix("name=")
        fill(root / name, {"cpuset.cpus": "0-1\n", "cpuset.mems": "0\n"} if s == "cpuset" else {})
    lay = {s: (str(root / s.removeprefix("name=")), "/") for s in V1_SUBSYS}
    if hybrid:
        fill(root / "unified", {"cgroup.controllers": "hugetlb\n"})
    return Layout("hybrid" if hybrid else "v1", str(root / "unified") if hybrid else "", lay,
                  {s: "/" for s in (*V1_SUBSYS, "")})


def v1_leaf(root: Path, inner: str, hybrid: bool = False) -> FsManager:
    layout = v1_layout(root, hybrid)
    dirs = paths.resolve(layout, inner)
    for key, d in dirs.items():
        fill(Path(d), V1_FILES.get(key, {"cgroup.procs": ""}))
    return FsManager(layout, dirs)


def v2_leaf(root: Path, inner: str, make: bool = True) -> FsManager:
    fill(root, {"cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma\n",
                "cgroup.subtree_control": ""})
    layout = Layout("v2", str(root), {}, {"": "/"})
    dirs = paths.resolve(layout, inner)
    if make:
        fill(Path(dirs[""]), V2_FILES)
    return FsManager(layout, dirs)


def rel(journal, root: Path) -> list[tuple[str, str]]:
    return [(p.removeprefix(str(root) + "/"), d) for p, d in journal]


# ---------------------------------------------------------------- paths


def test_clean_path_cannot_climb():
    assert paths.clean("../../x/./y") == "x/y"
    assert paths.clean("/../x") == "/x"
    assert paths.inner(None, "c1") == "c1"
    assert paths.inner("/a//b/", "c1") == "/a/b"
    with pytest.raises(ConfigError, match="linux.cgroupsPath"):
        paths.inner("/..", "c1")


def test_resolve_like_runc():
    lay = Layout("hybrid", "/sys/fs/cgroup/unified",
                 {"memory": ("/sys/fs/cgroup/memory", "/"), "cpu": ("/sys/fs/cgroup/cpu", "/"),
                  "pids": ("/sys/fs/cgroup/pids", "/nested")},
                 {"memory": "/process_api/h", "cpu": "/", "pids": "/nested/me", "": "/x"})
    assert paths.resolve(lay, "/a/b") == {
        "memory": "/sys/fs/cgroup/memory/a/b", "cpu": "/sys/fs/cgroup/cpu/a/b",
        "pids": "/sys/fs/cgroup/pids/a/b", "": "/sys/fs/cgroup/unified/a/b"}
    # relative: below our own cgroup per v1 hierarchy (minus the mount's root); the hybrid
    # unified tree from its root (runc)
    assert paths.resolve(lay, "r/c") == {
        "memory": "/sys/fs/cgroup/memory/process_api/h/r/c", "cpu": "/sys/fs/cgroup/cpu/r/c",
        "pids": "/sys/fs/cgroup/pids/me/r/c", "": "/sys/fs/cgroup/unified/r/c"}
    v2 = Layout("v2", "/sys/fs/cgroup", {}, {"": "/user.slice/session-1.scope"})
    # pure v2: beside our own cgroup (the parent of ours), which holds processes already
    assert paths.resolve(v2, "c1") == {"": "/sys/fs/cgroup/user.slice/c1"}
    assert paths.resolve(v2, "/c1") == {"": "/sys/fs/cgroup/c1"}


# ---------------------------------------------------------------- v1 writes

FULL = {
    "devices": [{"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
                {"allow": True, "type": "b", "major": 8, "minor": 20, "access": "wr"}],
    "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728,
               "swappiness": 10, "disableOOMKiller": True},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000, "idle": 0,
            "realtimeRuntime": 10000, "realtimePeriod": 100000, "cpus": "0", "mems": "0"},
    "pids": {"limit": 100},
    "blockIO": {"weight": 300,
                "throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}],
                "throttleWriteIOPSDevice": [{"major": 254, "minor": 0, "rate": 100}]},
    "hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}],
    "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]},
}


def test_v1_set_writes_every_field_in_runc_order(tmp_path, journal):
    m = v1_leaf(tmp_path, "/c1")
    m.set(FULL)
    m.set  # noqa: B018
    got = rel(journal, tmp_path)
    assert got == [
        ("cpuset/c1/cpuset.cpus", "0"), ("cpuset/c1/cpuset.mems", "0"),
        ("devices/c1/devices.deny", "a"),  # the cgroup allowed all: rules start from none
        ("devices/c1/devices.allow", "c 10:229 rwm"),  # the config's order...
        ("devices/c1/devices.allow", "b 8:20 rw"),
        ("devices/c1/devices.allow", "c *:* m"), ("devices/c1/devices.allow", "b *:* m"),
        ("devices/c1/devices.allow", "c 1:3 rwm"), ("devices/c1/devices.allow", "c 1:8 rwm"),
        ("devices/c1/devices.allow", "c 1:7 rwm"), ("devices/c1/devices.allow", "c 5:0 rwm"),
        ("devices/c1/devices.allow", "c 1:5 rwm"), ("devices/c1/devices.allow", "c 1:9 rwm"),
        ("devices/c1/devices.allow", "c 136:* rwm"), ("devices/c1/devices.allow", "c 5:2 rwm"),
        ("devices/c1/devices.allow", "c 10:200 rwm"),  # ...then runc's defaults
        # the limit (max) is above the new memory+swap: memory first, then memsw
        ("memory/c1/memory.limit_in_bytes", "67108864"),
        ("memory/c1/memory.memsw.limit_in_bytes", "134217728"),
        ("memory/c1/memory.soft_limit_in_bytes", "33554432"),
        ("memory/c1/memory.oom_control", "1"), ("memory/c1/memory.swappiness", "10"),
        ("cpu/c1/cpu.shares", "512"), ("cpu/c1/cpu.cfs_period_us", "100000"),
        ("cpu/c1/cpu.cfs_burst_us", "1000"), ("cpu/c1/cpu.cfs_quota_us", "50000"),
        ("cpu/c1/cpu.idle", "0"), ("cpu/c1/cpu.rt_period_us", "100000"),
        ("cpu/c1/cpu.rt_runtime_us", "10000"),
        ("pids/c1/pids.max", "100"),
        ("blkio/c1/blkio.bfq.weight", "300"),
        ("blkio/c1/blkio.throttle.read_bps_device", "254:0 1048576"),
        ("blkio/c1/blkio.throttle.write_iops_device", "254:0 100"),
        ("hugetlb/c1/hugetlb.2MB.limit_in_bytes", "2097152"),
        ("hugetlb/c1/hugetlb.2MB.rsvd.limit_in_bytes", "2097152"),
        ("net_cls/c1/net_cls.classid", "1048577"),
        ("net_prio/c1/net_prio.ifpriomap", "eth0 5"),
    ]


def test_v1_memory_growing_writes_swap_first(tmp_path, journal):
    m = v1_leaf(tmp_path, "/c1")
    (tmp_path / "memory/c1/memory.limit_in_bytes").write_text("33554432\n")
    m.set({"memory": {"limit": 67108864, "swap": 134217728}})
    # growing past the old limit: memory+swap first, so memsw >= memory holds at each step
    assert rel(journal, tmp_path)[-2:] == [("memory/c1/memory.memsw.limit_in_bytes", "134217728"),
                                           ("memory/c1/memory.limit_in_bytes", "67108864")]


def test_v1_unlimited_memory_unlimits_swap(tmp_path, journal):
    v1_leaf(tmp_path, "/c1").set({"memory": {"limit": -1}})
    assert rel(journal, tmp_path)[-2:] == [("memory/c1/memory.memsw.limit_in_bytes", "-1"),
                                           ("memory/c1/memory.limit_in_bytes", "-1")]


def test_v1_pids_zero_is_a_limit_and_negative_is_max(tmp_path, journal):
    m = v1_leaf(tmp_path, "/c1")
    m.set({"pids": {"limit": 0}})
    m.set({"pids": {"limit": -1}})
    assert [d for p, d in journal if p.endswith("pids.max")] == ["0", "max"]


@pytest.mark.parametrize("res, field, text", [
    ({"memory": {"swappiness": 101}}, "linux.resources.memory.swappiness", "out of range 0-100"),
    ({"blockIO": {"leafWeight": 300}}, "linux.resources.blockIO.leafWeight",
     "no blkio.leaf_weight"),
    ({"rdma": {"mlx5_1": {"hcaHandles": 3}}}, "linux.resources.rdma.mlx5_1",
     "the rdma cgroup controller is not mounted"),
    ({"unified": {"memory.high": "1"}}, "linux.resources.unified", "needs cgroup v2"),
    ({"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]},
     "linux.resources.hugepageLimits[0].pageSize", "not a huge page size"),
    ({"devices": [{"allow": True, "type": "x", "access": "r"}]},
     "linux.resources.devices[0].type", "is not a, b or c"),
    ({"devices": [{"allow": True, "type": "c", "access": ""}]},
     "linux.resources.devices[0].access", "must not be empty"),
    ({"devices": [{"allow": True, "type": "c", "major": 1, "access": "rwx"}]},
     "linux.resources.devices[0].access", "r, w and m"),
])
def test_v1_refusals_name_the_field(tmp_path, res, field, text):
    m = v1_leaf(tmp_path, "/c1")
    with pytest.raises(CgroupError) as e:
        m.set(res)
    assert str(e.value).startswith(field + ":") and text in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_v1_check_before_update_is_the_kernels(tmp_path, journal):
    v1_leaf(tmp_path, "/c1").set({"memory": {"checkBeforeUpdate": True}}, skip_devices=True)
    assert journal == []  # the v1 kernel refuses a limit below usage by itself (EBUSY)


def test_v1_kernel_memory_is_ignored_with_a_warning(tmp_path, journal, logfile):
    v1_leaf(tmp_path, "/c1").set({"memory": {"kernel": 1 << 26, "kernelTCP": 1 << 26}})
    assert not [p for p, _ in journal if "kmem" in p]
    assert "linux.resources.memory.kernel: kernel memory limits are ignored" in logfile.read_text()


def test_v1_apply_copies_cpuset_from_the_parent_and_records_parents(tmp_path, journal, kernel):
    layout = v1_layout(tmp_path)
    dirs = paths.resolve(layout, "/p/q/c1")
    m = FsManager(layout, dirs)
    m.resources = {"cpu": {"cpus": "1"}}
    m.apply(4242)
    got = rel(journal, tmp_path)
    # new cpusets start empty: each dir we made gets its parent's, the leaf the config's
    assert ("cpuset/p/cpuset.cpus", "0-1") in got and ("cpuset/p/q/cpuset.cpus", "0-1") in got
    assert ("cpuset/p/q/c1/cpuset.cpus", "1") in got
    assert got.index(("cpuset/p/q/c1/cpuset.cpus", "1")) < got.index(
        ("cpuset/p/q/c1/cgroup.procs", "4242"))
    assert ("memory/p/q/c1/cgroup.procs", "4242") in got
    assert set(m.parents) >= {str(tmp_path / "memory/p"), str(tmp_path / "memory/p/q")}
    m.destroy()
    assert not (tmp_path / "memory/p").exists() and (tmp_path / "memory").is_dir()


def test_v1_self_join_leaves_the_moves_to_stage1(tmp_path, journal, kernel):
    """create's join: the cgroups are made as apply() makes them, but no pid is written; the
    `tasks` files come back, one per dir in runc's order, for stage 1 to write "0" to."""
    layout = v1_layout(tmp_path, hybrid=True)
    m = FsManager(layout, paths.resolve(layout, "/p/c1"))
    m.resources = {"cpu": {"cpus": "1"}}
    tasks = m.self_join(4242)
    got = rel(journal, tmp_path)
    assert ("cpuset/p/c1/cpuset.cpus", "1") in got
    assert [p for p, _ in got if p.endswith("cgroup.procs")] == ["unified/p/c1/cgroup.procs"]
    assert [t.removeprefix(str(tmp_path) + "/") for t in tasks] == [
        f"{s.removeprefix('name=')}/p/c1/tasks" for s in V1_SUBSYS]
    m.rejoin(4242, [tasks[2]])  # what stage 1 could not write: by pid
    assert rel(journal, tmp_path)[-1] == ("memory/p/c1/cgroup.procs", "4242")
    m.destroy()


def test_a_best_effort_dir_that_cannot_be_joined_goes_again(tmp_path, journal, kernel,
                                                             monkeypatch):
    """runc joins name=systemd and a hybrid host's unified dir when it can: one it made but
    could not join is dropped from the state, so it must not stay behind either."""
    layout = v1_layout(tmp_path, hybrid=True)
    m = FsManager(layout, paths.resolve(layout, "/p/c1"))
    tasks = m.self_join(4242)
    systemd = m.paths["name=systemd"]
    assert os.path.isdir(systemd)
    real = files.add_pid

    def add_pid(d, pid):
        if d == systemd:
            raise files.CgroupError(f"{d}: no such process", errno.ESRCH)
        real(d, pid)

    monkeypatch.setattr(files, "add_pid", add_pid)
    m.rejoin(4242, [t for t in tasks if t.startswith(systemd + "/")])
    assert "name=systemd" not in m.paths and not os.path.exists(systemd)
    m.destroy()
    assert not (tmp_path / "systemd" / "p").exists()  # its parent went at destroy


# ---------------------------------------------------------------- devices


def test_devices_existing_deny_default_cgroup_is_not_reset_needlessly(tmp_path, journal):
    m = v1_leaf(tmp_path, "/c1")
    (tmp_path / "devices/c1/devices.list").write_text("")  # deny-all, no exceptions
    m.set({"devices": [{"allow": False, "access": "rwm"}]})
    got = [(p.rpartition("/")[2], d) for p, d in journal]
    assert ("devices.deny", "a") not in got  # a cgroup with children refuses any "a" write
    assert got[0] == ("devices.allow", "c *:* m")


def test_devices_allow_all_then_deny(tmp_path, journal):
    m = v1_leaf(tmp_path, "/c1")
    m.set({"devices": [{"allow": True, "access": "rwm"},
                       {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}]})
    got = [(p.rpartition("/")[2], d) for p, d in journal][:3]
    assert got == [("devices.deny", "a"), ("devices.allow", "a"), ("devices.deny", "c 1:3 w")]


def test_devices_hole_in_a_wildcard_is_refused():
    rs = devices.rules([{"allow": True, "type": "c", "major": 136, "access": "rwm"},
                        {"allow": False, "type": "c", "major": 136, "minor": 5, "access": "r"}])
    with pytest.raises(CgroupError, match=r"linux.resources.devices\[1\]: .*punch a hole"):
        devices.emulate(rs)


def test_emulator_end_state():
    e = devices.emulate(devices.rules([{"allow": False, "access": "rwm"},
                                       {"allow": True, "type": "c", "major": 1, "minor": 3,
                                        "access": "r"},
                                       {"allow": True, "type": "c", "major": 1, "minor": 3,
                                        "access": "w"}]))
    assert not e.default_allow
    assert e.exceptions[("c", 1, 3)] == "rwm"  # merged with the default's rwm
    assert [r.text() for r in e.sorted_exceptions()][:3] == ["b *:* m", "c *:* m", "c 1:3 rwm"]


# runc's TestDeviceFilter_BuiltInAllowList, the first 24 instructions (research-9, 3.3)
RUNC_VECTOR = """6112000000000000 54020000ffff0000 6113000000000000 7403000010000000
6114040000000000 6115080000000000 5502050001000000 bc31000000000000 5401000001000000
5d31020000000000 b400000001000000 9500000000000000 5502050002000000 bc31000000000000
5401000001000000 5d31020000000000 b400000001000000 9500000000000000 5502040002000000
5504030001000000 5505020003000000 b400000001000000 9500000000000000 5502040002000000"""


def test_bpf_program_is_runcs():
    prog = bpf.program(devices.emulate(devices.rules([{"allow": False, "access": "rwm"}])))
    insns = [prog[i:i + 8].hex() for i in range(0, len(prog), 8)]
    assert len(insns) == 64
    assert insns[:24] == RUNC_VECTOR.split()
    assert insns[-2:] == ["b400000000000000", "9500000000000000"]  # default: deny


def test_bpf_program_allow_all_default():
    prog = bpf.program(devices.emulate(devices.rules([{"allow": True, "access": "rwm"}])))
    assert prog[-16:].hex() == "b4000000010000009500000000000000"


# ---------------------------------------------------------------- v2


def test_v2_conversions(tmp_path, journal):
    m = v2_leaf(tmp_path, "/c1")
    m.set({"memory": {"limit": 67108864, "swap": 134217728, "reservation": 1 << 20},
           "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000, "idle": 0,
                   "cpus": "0", "mems": "0"},
           "pids": {"limit": -1},
           "blockIO": {"weight": 500,
                       "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                       "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 0}]},
           "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
           "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
           "unified": {"memory.high": "50000000", "cpu.weight": "7"}},
          skip_devices=True)
    assert [(p.rpartition("/")[2], d) for p, d in journal] == [
        ("pids.max", "max"),
        ("memory.swap.max", "67108864"),  # v1 swap is memory+swap; v2 swap alone
        ("memory.max", "67108864"), ("memory.low", "1048576"),
        ("io.weight", "4950"),  # 1 + (500-10)*9999/990: no io.bfq.weight here
        ("io.max", "8:0 rbps=1048576"), ("io.max", "8:0 wiops=max"),
        ("cpu.idle", "0"), ("cpu.weight", "100"),  # 1024 -> 100 (runc >= 1.4, crun)
        ("cpu.max.burst", "1000"), ("cpu.max", "50000 100000"),
        ("cpuset.cpus", "0"), ("cpuset.mems", "0"),
        ("hugetlb.2MB.max", "4194304"), ("hugetlb.2MB.rsvd.max", "4194304"),
        ("rdma.max", "mlx5_1 hca_handle=3 hca_object=10000"),
        ("memory.high", "50000000"), ("cpu.weight", "7"),  # unified last: it overrides
    ]


@pytest.mark.parametrize("shares, weight", [(2, 1), (10, 4), (100, 17), (256, 35), (512, 59),
                                            (1024, 100), (2048, 174), (4096, 303),
                                            (262144, 10000), (0, 0)])
def test_shares_to_weight(shares, weight):
    assert R.shares_to_weight(shares) == weight


@pytest.mark.parametrize("swap, limit, want", [(0, -1, -1), (0, 100, None), (-1, 100, -1),
                                               (300, 100, 200), (100, 100, 0), (300, -1, 300)])
def test_swap_conversion(swap, limit, want):
    assert R.swap_to_v2(swap, limit) == want


@pytest.mark.parametrize("swap, limit, field", [(100, 0, "memory.swap"), (50, 100, "memory.swap")])
def test_swap_conversion_errors(swap, limit, field):
    with pytest.raises(CgroupError, match=f"linux.resources.{field}:"):
        R.swap_to_v2(swap, limit)


@pytest.mark.parametrize("key", ["../escape", "a/b", "..", ".", "", "/etc/passwd"])
def test_v2_unified_key_cannot_escape(tmp_path, key):
    m = v2_leaf(tmp_path, "/c1")
    with pytest.raises(CgroupError, match="must be a file name"):
        m.set({"unified": {key: "1"}}, skip_devices=True)


def test_v2_unified_unknown_controller(tmp_path):
    m = v2_leaf(tmp_path, "/c1")
    (tmp_path / "c1/cgroup.controllers").write_text("memory pids\n")
    with pytest.raises(CgroupError, match=r"unified.misc.max: the misc controller is not "
                       "available"):
        m.set({"unified": {"misc.max": "1"}}, skip_devices=True)
    with pytest.raises(CgroupError, match="CONTROLLER.PARAMETER"):
        m.set({"unified": {"nodot": "1"}}, skip_devices=True)


def test_v2_missing_controller_names_the_field(tmp_path):
    m = v2_leaf(tmp_path, "/c1")
    (tmp_path / "c1/memory.max").unlink()
    (tmp_path / "c1/cgroup.controllers").write_text("pids\n")
    with pytest.raises(CgroupError, match=r"^linux.resources.memory.limit: the memory "
                       "controller is not available"):
        m.set({"memory": {"limit": 1 << 26}}, skip_devices=True)


def test_v2_ignores_what_runc_ignores_with_a_warning(tmp_path, journal, logfile):
    v2_leaf(tmp_path, "/c1").set({"memory": {"swappiness": 10, "disableOOMKiller": True},
                                  "cpu": {"realtimeRuntime": 1000},
                                  "network": {"classID": 1}}, skip_devices=True)
    assert journal == []
    text = logfile.read_text()
    for f in ("memory.swappiness", "memory.disableOOMKiller", "cpu.realtimeRuntime", "network"):
        assert f"linux.resources.{f}" in text
    assert "not supported by cgroup v2, ignored (as runc does)" in text


def test_v2_use_hierarchy_false_is_refused(tmp_path):
    with pytest.raises(CgroupError, match="memory.useHierarchy"):
        v2_leaf(tmp_path, "/c1").set({"memory": {"useHierarchy": False}}, skip_devices=True)


def test_v2_check_before_update(tmp_path):
    m = v2_leaf(tmp_path, "/c1")
    (tmp_path / "c1/memory.current").write_text("5000000\n")
    with pytest.raises(CgroupError, match="rejecting memory limit 4000000 <= usage 5000000"):
        m.set({"memory": {"limit": 4000000, "checkBeforeUpdate": True}}, skip_devices=True)
    m.set({"memory": {"limit": 4000000}}, skip_devices=True)  # without it, the kernel decides


def test_v2_create_enables_controllers_in_the_ancestors_only(tmp_path, journal, kernel):
    m = v2_leaf(tmp_path, "/a/b/c1", make=False)
    m.apply(77)
    sub = [(p, d) for p, d in rel(journal, tmp_path) if p.endswith("subtree_control")]
    enable = "+cpuset +cpu +io +memory +hugetlb +pids +rdma"
    assert [p for p, d in sub if d == enable] == ["cgroup.subtree_control",
                                                 "a/cgroup.subtree_control",
                                                 "a/b/cgroup.subtree_control"]
    assert ("a/b/c1/cgroup.procs", "77") in rel(journal, tmp_path)
    assert m.parents == [str(tmp_path / "a"), str(tmp_path / "a/b")]


def test_v2_refuses_a_threaded_parent_for_domain_controllers(tmp_path):
    m = v2_leaf(tmp_path, "/a/c1", make=False)
    fill(tmp_path / "a", {"cgroup.type": "domain threaded\n"})
    m.resources = {"memory": {"limit": 1 << 26}}
    with pytest.raises(CgroupError, match="domain threaded mode"):
        m.apply(77)


# ---------------------------------------------------------------- freezer, stats


def test_paused_reads_the_freezer(tmp_path):
    fill(tmp_path / "f", {"freezer.state": "FROZEN\n", "freezer.self_freezing": "1\n"})
    assert freezer.paused({"freezer": str(tmp_path / "f")})
    (tmp_path / "f/freezer.self_freezing").write_text("0\n")  # frozen by an ancestor only
    assert not freezer.paused({"freezer": str(tmp_path / "f")})
    fill(tmp_path / "u", {"cgroup.freeze": "1\n"})
    assert freezer.paused({"": str(tmp_path / "u")})
    assert not freezer.paused({"": str(tmp_path / "gone")})


def test_v2_freeze_waits_for_frozen(tmp_path):
    fill(tmp_path / "u", {"cgroup.freeze": "0\n", "cgroup.events": "populated 1\nfrozen 1\n"})
    freezer.freeze({"": str(tmp_path / "u")})
    assert (tmp_path / "u/cgroup.freeze").read_text() == "1"


def test_stats_v2_shape(tmp_path):
    fill(tmp_path / "c", {
        "cpu.stat": "usage_usec 100\nuser_usec 60\nsystem_usec 40\nnr_periods 3\n"
                    "nr_throttled 1\nthrottled_usec 7\n",
        "memory.current": "4096\n", "memory.max": "max\n", "memory.peak": "8192\n",
        "memory.stat": "file 10\nanon 20\n", "memory.events": "max 2\noom_kill 0\n",
        "memory.swap.current": "0\n", "memory.swap.max": "max\n",
        "pids.current": "3\n", "pids.max": "100\n",
        "io.stat": "8:0 rbytes=5 wbytes=6 rios=1 wios=2 dbytes=0 dios=0\n",
    })
    s = stats.stats({"": str(tmp_path / "c")})
    assert list(s) == ["cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt",
                       "network_interfaces"]
    assert s["cpu"] == {"usage": {"total": 100000, "kernel": 40000, "user": 60000},
                        "throttling": {"periods": 3, "throttledPeriods": 1, "throttledTime": 7000}}
    assert s["memory"]["usage"] == {"limit": 2**64 - 1, "usage": 4096, "max": 8192, "failcnt": 2}
    assert s["memory"]["cache"] == 10 and s["memory"]["raw"] == {"anon": 20, "file": 10}
    assert s["pids"] == {"current": 3, "limit": 100}
    assert s["blkio"]["ioServiceBytesRecursive"] == [
        {"major": 8, "op": "Read", "value": 5}, {"major": 8, "op": "Write", "value": 6}]


def test_expand_list():
    assert stats.expand_list("0-2,5\n") == [0, 1, 2, 5]


# ---------------------------------------------------------------- update, exec, rootless


def test_update_merge_keeps_what_is_not_given():
    old = {"memory": {"limit": 1, "reservation": 2}, "cpu": {"shares": 3},
           "blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1},
                                                 {"major": 8, "minor": 16, "rate": 2}]},
           "unified": {"a.b": "1"}}
    new = {"memory": {"limit": 5}, "pids": {"limit": 9},
           "blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 16, "rate": 7},
                                                 {"major": 9, "minor": 0, "rate": 8}]},
           "unified": {"c.d": "2"}}
    assert R.merge(old, new) == {
        "memory": {"limit": 5, "reservation": 2}, "cpu": {"shares": 3}, "pids": {"limit": 9},
        "blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1},
                                              {"major": 8, "minor": 16, "rate": 7},
                                              {"major": 9, "minor": 0, "rate": 8}]},
        "unified": {"a.b": "1", "c.d": "2"}}


@pytest.mark.parametrize("text, n", [("100M", 100 << 20), ("1g", 1 << 30), ("512k", 512 << 10),
                                     ("1.5GiB", 3 << 29), ("-1", -1), ("4096", 4096),
                                     ("10 MB", 10 << 20)])
def test_parse_bytes(text, n):
    assert update.parse_bytes(text) == n


@pytest.mark.parametrize("text", ["abc", "1x", "", "-5", "1iB"])
def test_parse_bytes_refuses(text):
    with pytest.raises(ValueError):
        update.parse_bytes(text)


def test_update_adjusts_like_runc():
    assert update.adjust({"memory": {"limit": -1}}) == {"memory": {"limit": -1, "swap": -1}}
    assert update.adjust({"cpu": {"idle": 1}}) == {"cpu": {"idle": 1, "shares": 0}}


def test_exec_dirs_and_sub_cgroups(tmp_path):
    paths_ = {"memory": str(tmp_path / "m/c"), "cpu": str(tmp_path / "c/c"),
              "cpuacct": str(tmp_path / "c/c")}
    for d in ("m/c/sub", "c/c/sub"):
        (tmp_path / d).mkdir(parents=True)

    def dirs(subs):
        return [d for _, d in join.exec_dirs(paths_, subs)]
    assert dirs({}) == [str(tmp_path / "m/c"), str(tmp_path / "c/c")]
    assert dirs(join.parse_sub(["sub"])) == [str(tmp_path / "m/c/sub"), str(tmp_path / "c/c/sub")]
    assert dirs(join.parse_sub(["memory:sub"]))[0] == str(tmp_path / "m/c/sub")
    for bad in (["memory:../../x"], ["nope:sub"], ["memory:missing"], ["a", "b"],
                ["memory:x", "memory:y"], [":x"]):
        with pytest.raises(OnggiError):
            join.exec_dirs(paths_, join.parse_sub(bad))


def test_rootless_skips_unwritable_cgroups(tmp_path, monkeypatch, logfile):
    layout = v1_layout(tmp_path)
    m = FsManager(layout, paths.resolve(layout, "c1"), rootless=True, explicit=False)

    def denied(p, mode=0o777):
        raise PermissionError(13, "Permission denied", p)

    monkeypatch.setattr(os, "mkdir", denied)
    m.apply(42)
    assert m.paths == {} and "running without cgroup" in logfile.read_text()
    m.set({"devices": [{"allow": False, "access": "rwm"}]})  # devices: skipped, as runc
    with pytest.raises(CgroupError, match="linux.resources.memory: cannot be set: the "
                       "cgroups are not writable here"):
        m.set({"memory": {"limit": 1 << 26}})


def test_remove_waits_and_recurses(tmp_path):
    (tmp_path / "c/sub/subsub").mkdir(parents=True)
    tree.remove(str(tmp_path / "c"))
    assert not (tmp_path / "c").exists()
    tree.remove(str(tmp_path / "c"))  # gone already: fine


@pytest.fixture
def logfile(tmp_path):
    from runtime import log

    path = tmp_path / "log.txt"
    path.write_text("")
    log.setup(str(path), "text", False)
    yield path
    log.setup(None, "text", False)


def test_v2_oom_watch_sees_oom_kill_grow(tmp_path):
    """events on v2: inotify on memory.events; an oom_kill count that grows is an OOM."""
    from runtime.cgroups.events import OomWatch

    d = tmp_path / "c"
    fill(d, {"memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"})
    w = OomWatch({"": str(d)})
    try:
        assert w.fds and not w.wait(0.05)
        (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
        assert w.wait(1.0)
        (d / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
        assert not w.wait(0.2)  # modified, but no new kill
        assert w.alive()
    finally:
        w.close()
    assert not w.alive() or d.is_dir()


@pytest.mark.parametrize("text, secs", [("5s", 5), ("1m30s", 90), ("500ms", 0.5), ("1.5h", 5400),
                                        ("250us", 0.00025)])
def test_parse_duration(text, secs):
    from runtime.cgroups.events import parse_duration

    assert parse_duration(text) == pytest.approx(secs)


@pytest.mark.parametrize("text", ["", "5", "s", "5x", "1m30"])
def test_parse_duration_refuses(text):
    from runtime.cgroups.events import parse_duration

    with pytest.raises(ValueError):
        parse_duration(text)
