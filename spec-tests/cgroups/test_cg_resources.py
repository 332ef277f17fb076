"""linux.resources with real containers on this host's v1 (hybrid) hierarchies: each field
read back from the cgroup files, from inside where it means something, against runc where
useful; each field the host cannot apply refused with one line naming it, leaving nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cgtest import (
    block_device,
    cgpaths,
    create_fails,
    leftovers,
    mounted,
    read,
    resources,
    running,
    uid,
    v1_host,
)

pytestmark = v1_host

MEM = {"limit": 67108864, "reservation": 33554432, "swap": 134217728, "swappiness": 10,
       "disableOOMKiller": True}
CPU = {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"}


def test_memory_cpu_pids_read_back(bundle):
    resources(bundle, memory=MEM, cpu=CPU, pids={"limit": 100})
    cid = running(bundle)
    assert read(bundle, cid, "memory", "memory.limit_in_bytes") == "67108864"
    assert read(bundle, cid, "memory", "memory.soft_limit_in_bytes") == "33554432"
    assert read(bundle, cid, "memory", "memory.memsw.limit_in_bytes") == "134217728"
    assert read(bundle, cid, "memory", "memory.swappiness") == "10"
    assert "oom_kill_disable 1" in read(bundle, cid, "memory", "memory.oom_control")
    assert read(bundle, cid, "cpu", "cpu.shares") == "512"
    assert read(bundle, cid, "cpu", "cpu.cfs_quota_us") == "50000"
    assert read(bundle, cid, "cpu", "cpu.cfs_period_us") == "100000"
    assert read(bundle, cid, "cpuset", "cpuset.cpus") == "0"
    assert read(bundle, cid, "cpuset", "cpuset.mems") == "0"
    assert read(bundle, cid, "pids", "pids.max") == "100"
    # the init is in every one of them (engines read /proc/<pid>/cgroup right after create)
    pid = bundle.state(cid)["pid"]
    for ctrl, d in cgpaths(bundle, cid).items():
        assert str(pid) in Path(d, "cgroup.procs").read_text().split(), ctrl


def test_limits_hold_inside(bundle):
    """What the container sees: its own limits at /sys/fs/cgroup (a cgroup namespace), its
    cpuset; and suffers: a pids limit on fork."""
    resources(bundle, memory={"limit": 33554432}, cpu={"cpus": "0"}, pids={"limit": 8})
    r = bundle.sh("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max;"
                  " grep Cpus_allowed_list /proc/self/status;"
                  " sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done; echo forked all'"
                  " 2>&1; echo rc=$?")
    lines = r.stdout.splitlines()
    assert lines[:2] == ["33554432", "8"]
    assert lines[2].split() == ["Cpus_allowed_list:", "0"]
    assert "forked all" not in r.stdout and "can't fork" in r.stdout, r.stdout
    assert lines[-1] == "rc=2"


def test_memory_limit_ends_in_an_oom_kill(bundle):
    resources(bundle, memory={"limit": 33554432, "swap": 33554432})
    r = bundle.sh("x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived")
    assert "survived" not in r.stdout and r.returncode == 137, (r.returncode, r.stdout)


def test_realtime_and_burst_at_the_top_level(bundle):
    name = uid("rt")
    bundle.config["linux"]["cgroupsPath"] = "/" + name  # rt runtime is per parent: top only
    resources(bundle, cpu={"realtimePeriod": 100000, "realtimeRuntime": 10000,
                           "quota": 20000, "period": 100000, "burst": 5000})
    cid = running(bundle)
    assert read(bundle, cid, "cpu", "cpu.rt_period_us") == "100000"
    assert read(bundle, cid, "cpu", "cpu.rt_runtime_us") == "10000"
    assert read(bundle, cid, "cpu", "cpu.cfs_burst_us") == "5000"
    assert cgpaths(bundle, cid)["cpu"] == f"/sys/fs/cgroup/cpu/{name}"


def test_idle(bundle):
    resources(bundle, cpu={"idle": 1})
    cid = running(bundle)
    assert read(bundle, cid, "cpu", "cpu.idle") == "1"


def test_blkio_weight_and_throttle(bundle):
    dev = block_device()
    if dev is None:
        pytest.skip("no block device")
    d = {"major": dev[0], "minor": dev[1]}
    resources(bundle, blockIO={
        "weight": 300,
        "throttleReadBpsDevice": [{**d, "rate": 1048576}],
        "throttleWriteBpsDevice": [{**d, "rate": 2097152}],
        "throttleReadIOPSDevice": [{**d, "rate": 100}],
        "throttleWriteIOPSDevice": [{**d, "rate": 200}]})
    cid = running(bundle)
    weight = "blkio.weight" if os.path.exists(
        Path(cgpaths(bundle, cid)["blkio"], "blkio.weight")) else "blkio.bfq.weight"
    assert read(bundle, cid, "blkio", weight).split()[-1] == "300"
    dev_s = f"{dev[0]}:{dev[1]}"
    for name, rate in (("read_bps", 1048576), ("write_bps", 2097152), ("read_iops", 100),
                       ("write_iops", 200)):
        assert read(bundle, cid, "blkio", f"blkio.throttle.{name}_device") == f"{dev_s} {rate}"


def test_use_hierarchy_true_is_accepted(bundle):
    resources(bundle, memory={"useHierarchy": True})
    cid = running(bundle)
    assert read(bundle, cid, "memory", "memory.use_hierarchy") == "1"


def test_kernel_memory_is_ignored_with_a_warning(bundle, tmp_path):
    resources(bundle, memory={"limit": 67108864, "kernel": 50593792, "kernelTCP": 50593792})
    log = tmp_path / "log.json"
    bundle.write()
    cid = bundle.new_id()
    with open(os.devnull, "r+") as null:
        res = bundle.onggi("--log", str(log), "--log-format", "json", "create", "-b",
                           str(bundle.path), cid, stdin=null, stdout=null, stderr=null,
                           capture_output=False)
    assert res.returncode == 0, res.stderr
    warnings = [json.loads(x)["msg"] for x in log.read_text().splitlines()]
    assert any("linux.resources.memory.kernel: kernel memory limits are ignored" in w
               for w in warnings), warnings
    tcp = read(bundle, cid, "memory", "memory.kmem.tcp.limit_in_bytes")
    assert int(tcp) > 1 << 40  # untouched, as runc leaves it


def test_pids_zero_and_unlimited(bundle):
    resources(bundle, pids={"limit": 0})
    cid = bundle.create(args=["true"])  # pids.max 0: the init is in already, but can't fork
    assert read(bundle, cid, "pids", "pids.max") == "0"
    resources(bundle, pids={"limit": -1})
    cid = bundle.create(args=["true"])
    assert read(bundle, cid, "pids", "pids.max") == "max"


@pytest.mark.parametrize("res, field", [
    ({"memory": {"limit": 67108864, "swap": 33554432}}, "linux.resources.memory.swap"),
    ({"memory": {"swappiness": 101}}, "linux.resources.memory.swappiness"),
    ({"memory": {"useHierarchy": False}}, "linux.resources.memory.useHierarchy"),
    ({"cpu": {"shares": 1}}, "linux.resources.cpu.shares"),
    ({"cpu": {"cpus": "77"}}, "linux.resources.cpu.cpus"),
    ({"cpu": {"period": 500}}, "linux.resources.cpu.period"),
    ({"blockIO": {"leafWeight": 300}}, "linux.resources.blockIO.leafWeight"),
    ({"unified": {"memory.high": "1000000"}}, "linux.resources.unified"),
    ({"devices": [{"allow": True, "type": "c", "major": 136, "access": "rwm"},
                  {"allow": False, "type": "c", "major": 136, "minor": 3, "access": "r"}]},
     "linux.resources.devices[1]"),
])
def test_refused_with_the_field_named_and_nothing_left(bundle, res, field):
    resources(bundle, **res)
    msg = create_fails(bundle)
    assert f"{field}:" in msg, msg


@pytest.mark.parametrize("res, field, ctrl", [
    ({"network": {"classID": 1048577}}, "linux.resources.network.classID", "net_cls"),
    ({"network": {"priorities": [{"name": "lo", "priority": 5}]}},
     "linux.resources.network.priorities", "net_prio"),
    ({"hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]},
     "linux.resources.hugepageLimits", "hugetlb"),
    ({"rdma": {"mlx5_1": {"hcaHandles": 3}}}, "linux.resources.rdma.mlx5_1", "rdma"),
])
def test_controllers_this_host_lacks(bundle, res, field, ctrl):
    resources(bundle, **res)
    if mounted(ctrl):
        cid = running(bundle)
        assert cgpaths(bundle, cid)[ctrl]
        return
    msg = create_fails(bundle)
    assert f"{field}: the {ctrl} cgroup controller is not mounted on this host" in msg, msg


def test_weight_device_needs_bfq(bundle):
    dev = block_device()
    sched = Path(f"/sys/dev/block/{dev[0]}:{dev[1]}/queue/scheduler").read_text() if dev else ""
    if dev is None or "[bfq]" in sched:
        pytest.skip("needs a disk not on bfq")
    resources(bundle, blockIO={"weightDevice": [{"major": dev[0], "minor": dev[1],
                                                 "weight": 300}]})
    msg = create_fails(bundle)
    assert "linux.resources.blockIO.weightDevice[0].weight:" in msg
    assert "operation not supported" in msg


def test_same_files_as_runc(bundle, runc):
    """What runc 1.1.5 writes for the same config (both with the same relative path)."""
    resources(bundle, memory={"limit": 67108864, "reservation": 33554432, "swap": 134217728,
                              "swappiness": 10},
              cpu={"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
              pids={"limit": 100})
    cid = running(bundle, start=False)
    rid = uid("runc")
    runc.create(bundle, rid)
    ours, theirs = cgpaths(bundle, cid), runc.paths(rid)
    assert set(ours) == set(theirs)
    for ctrl, name in (("memory", "memory.limit_in_bytes"),
                       ("memory", "memory.soft_limit_in_bytes"),
                       ("memory", "memory.memsw.limit_in_bytes"), ("memory", "memory.swappiness"),
                       ("cpu", "cpu.shares"), ("cpu", "cpu.cfs_quota_us"),
                       ("cpu", "cpu.cfs_period_us"), ("cpuset", "cpuset.cpus"),
                       ("cpuset", "cpuset.mems"), ("pids", "pids.max")):
        assert Path(ours[ctrl], name).read_text() == Path(theirs[ctrl], name).read_text(), name
    # the same places, relative to our own cgroups (runc's rule), only the last name differs
    for ctrl in ours:
        assert os.path.dirname(ours[ctrl]) == os.path.dirname(theirs[ctrl]), ctrl
    # devices: the same rules (runc sorts them; we keep the config's order, see test_cg_devices)
    assert sorted(Path(ours["devices"], "devices.list").read_text().splitlines()) == \
        sorted(Path(theirs["devices"], "devices.list").read_text().splitlines())


def test_leftovers_helper_sees_a_cgroup(bundle):
    """The cleanup checks of this suite can fail: they see a live container's cgroups."""
    cid = running(bundle)
    assert len(leftovers(cid)) >= len(set(cgpaths(bundle, cid).values()))
