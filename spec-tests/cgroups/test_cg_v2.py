"""Pure cgroup v2 with real containers: the v1 -> v2 conversions read back from the files,
controllers enabled in the parents, the eBPF device program, clone3, cgroup.freeze, update.
This host is hybrid, so these skip here; they run in the pure-v2 guest (conformance/v2vm).
The generic suites (test_cg_verbs, test_cg_paths_cleanup, test_cg_devices' inside checks)
run there too."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cgtest import cgpaths, create_fails, mounted, read, resources, running, uid

pytestmark = [pytest.mark.cgroupv2]


def need(*ctrls: str) -> None:
    missing = [c for c in ctrls if not mounted(c)]
    if missing:
        pytest.skip(f"controllers not enabled at the root here: {missing}")


def test_conversions_read_back(bundle):
    need("memory", "cpu", "cpuset", "pids")
    resources(bundle, memory={"limit": 67108864, "swap": 134217728, "reservation": 33554432},
              cpu={"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
              pids={"limit": 100}, unified={"memory.high": "62914560"})
    cid = running(bundle)
    assert read(bundle, cid, "", "memory.max") == "67108864"
    assert read(bundle, cid, "", "memory.swap.max") == "67108864"  # swap - limit
    assert read(bundle, cid, "", "memory.low") == "33554432"
    assert read(bundle, cid, "", "memory.high") == "62914560"  # unified: as given
    assert read(bundle, cid, "", "cpu.weight") == "59"  # shares 512 (runc >= 1.4 formula)
    assert read(bundle, cid, "", "cpu.max") == "50000 100000"
    assert read(bundle, cid, "", "cpuset.cpus") == "0"
    assert read(bundle, cid, "", "pids.max") == "100"
    # inside, through the cgroup namespace
    r = bundle.sh("cat /proc/self/cgroup /sys/fs/cgroup/memory.max")
    assert r.stdout.splitlines() == ["0::/", "67108864"]


def test_controllers_enabled_in_every_parent(bundle):
    need("memory", "pids")
    top = uid("v2p")
    bundle.config["linux"]["cgroupsPath"] = f"/{top}/mid/leaf"
    resources(bundle, memory={"limit": 67108864}, pids={"limit": 10})
    cid = running(bundle)
    leaf = Path(cgpaths(bundle, cid)[""])
    for d in (leaf.parent, leaf.parent.parent):
        enabled = (d / "cgroup.subtree_control").read_text().split()
        assert {"memory", "pids"} <= set(enabled), d
    assert "memory" not in (leaf / "cgroup.subtree_control").read_text().split()
    assert bundle.onggi("delete", "--force", cid).returncode == 0
    assert not (leaf.parent.parent).exists()


def test_clone3_places_the_init(bundle, tmp_path):
    log = tmp_path / "log"
    bundle.write(["sleep", "1000"])
    cid = bundle.new_id()
    res = bundle.onggi("--debug", "--log", str(log), "create", "-b", str(bundle.path), cid,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, capture_output=False)
    assert res.returncode == 0
    assert "forking and joining instead" not in log.read_text()
    pid = bundle.state(cid)["pid"]
    own = Path(f"/proc/{pid}/cgroup").read_text().strip()
    assert own.endswith("/" + cid)


def test_pause_uses_cgroup_freeze(bundle):
    cid = running(bundle)
    assert bundle.onggi("pause", cid).returncode == 0
    assert read(bundle, cid, "", "cgroup.freeze") == "1"
    assert "frozen 1" in read(bundle, cid, "", "cgroup.events")
    assert bundle.state(cid)["status"] == "paused"
    assert bundle.onggi("resume", cid).returncode == 0
    assert read(bundle, cid, "", "cgroup.freeze") == "0"


def test_update_on_v2(bundle):
    need("memory", "cpu", "pids")
    cid = running(bundle)
    res = bundle.onggi("update", "--memory", "100M", "--memory-swap", "200M", "--cpu-share",
                       "1024", "--cpu-quota", "20000", "--pids-limit", "55", cid)
    assert res.returncode == 0, res.stderr
    assert read(bundle, cid, "", "memory.max") == str(100 << 20)
    assert read(bundle, cid, "", "memory.swap.max") == str(100 << 20)
    assert read(bundle, cid, "", "cpu.weight") == "100"
    assert read(bundle, cid, "", "cpu.max") == "20000 100000"
    assert read(bundle, cid, "", "pids.max") == "55"
    doc = json.dumps({"memory": {"limit": 209715200}})
    assert bundle.onggi("update", "-r", "-", cid, input=doc).returncode == 0
    assert read(bundle, cid, "", "memory.max") == "209715200"


def test_ebpf_program_attached_once(bundle):
    from runtime.cgroups import bpf

    cid = running(bundle)
    assert len(bpf.attached(cgpaths(bundle, cid)[""])) == 1
    assert bundle.onggi("update", "--pids-limit", "9", cid).returncode == 0
    assert len(bpf.attached(cgpaths(bundle, cid)[""])) == 1  # update leaves devices alone


def test_v1_only_fields_are_ignored_with_a_warning(bundle, tmp_path):
    resources(bundle, memory={"swappiness": 10}, cpu={"realtimeRuntime": 1000})
    log = tmp_path / "log"
    cid = bundle.new_id()
    bundle.write(["true"])
    res = bundle.onggi("--log", str(log), "create", "-b", str(bundle.path), cid,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, capture_output=False)
    assert res.returncode == 0
    assert "not supported by cgroup v2, ignored (as runc does)" in log.read_text()


@pytest.mark.parametrize("res, field", [
    ({"unified": {"../cgroup.procs": "1"}}, "linux.resources.unified"),
    ({"unified": {"nosuch.file": "1"}}, "linux.resources.unified.nosuch.file"),
    ({"memory": {"limit": 67108864, "swap": 1048576}}, "linux.resources.memory.swap"),
    ({"memory": {"useHierarchy": False}}, "linux.resources.memory.useHierarchy"),
])
def test_v2_refusals(bundle, res, field):
    resources(bundle, **res)
    assert f"{field}:" in create_fails(bundle)


def test_ebpf_program_replaces_the_one_found_in_a_joined_cgroup(bundle):
    """A container joining an existing cgroup that already holds a device program (a
    predecessor's, allowing everything): ours takes its place; never two, and ours rules."""
    from runtime.cgroups import bpf, devices

    d = Path("/sys/fs/cgroup", uid("pre"))
    d.mkdir()
    try:
        bpf.install(str(d), devices.emulate([devices.Rule(True, "a")]))
        before = bpf.attached(str(d))
        assert len(before) == 1
        bundle.config["linux"]["cgroupsPath"] = str(d)[len("/sys/fs/cgroup"):]
        bundle.config["linux"]["devices"] = [FUSE]
        resources(bundle, devices=[{"allow": False, "access": "rwm"}])
        cid = running(bundle, "sleep 1000")
        now = bpf.attached(str(d))
        assert len(now) == 1 and now != before, (before, now)
        res = bundle.onggi("exec", cid, "sh", "-c", "(exec 3<>/dev/fuse) && echo opened")
        assert "opened" not in res.stdout and "Operation not permitted" in res.stderr, res
        assert bundle.onggi("delete", "--force", cid).returncode == 0
    finally:
        if d.exists():
            d.rmdir()


FUSE = {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666}


def test_exec_joins_the_containers_cgroup_and_sub_cgroups(bundle, tmp_path):
    if not any(n["type"] == "cgroup" for n in bundle.config["linux"]["namespaces"]):
        bundle.config["linux"]["namespaces"].append({"type": "cgroup"})
    cid = running(bundle)
    d = Path(cgpaths(bundle, cid)[""])
    res = bundle.onggi("exec", cid, "cat", "/proc/self/cgroup")
    assert (res.returncode, res.stdout) == (0, "0::/\n"), res.stderr
    (d / "sub").mkdir()
    pid_file = tmp_path / "pid"
    res = bundle.onggi("exec", "-d", "--pid-file", str(pid_file), "--cgroup", "sub", cid,
                       "sleep", "1000", capture_output=False, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    assert res.returncode == 0
    pid = int(pid_file.read_text())
    assert (d / "sub" / "cgroup.procs").read_text().split() == [str(pid)]
    assert pid in json.loads(bundle.onggi("ps", "-f", "json", cid).stdout)
    assert bundle.onggi("delete", "--force", cid).returncode == 0  # kills it, sub goes too
    assert not d.exists()
