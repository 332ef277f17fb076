"""The verbs engines use on a live container's cgroups: pause/resume, update (file, stdin,
flags), ps, events, kill --all; with real containers."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from cgtest import (
    MODE,
    V1,
    cgpaths,
    leftovers,
    proc_cgroups,
    read,
    resources,
    running,
    uid,
    wait_for,
)
from harness import ONGGI


def _proc_state(pid: int) -> str:
    """The state letter; "X" once it is gone (reaped between a check and the read)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "X"
    return data[data.rindex(")") + 2]


def _frozen_file(bundle, cid) -> str:
    paths = cgpaths(bundle, cid)
    if "freezer" in paths:
        return Path(paths["freezer"], "freezer.state").read_text().strip()
    return "FROZEN" if Path(paths[""], "cgroup.freeze").read_text().strip() == "1" else "THAWED"


# ---------------------------------------------------------------- pause / resume


@pytest.mark.guest_too
def test_pause_resume(bundle, tmp_path):
    out = tmp_path / "ticks"
    bundle.config["mounts"].append({"destination": "/out", "type": "bind",
                                    "source": str(tmp_path), "options": ["rbind"]})
    cid = running(bundle, "while :; do echo x >> /out/ticks; sleep 0.05; done")
    assert wait_for(lambda: out.exists() and out.stat().st_size > 0)
    assert bundle.onggi("pause", cid).returncode == 0
    assert bundle.state(cid)["status"] == "paused"
    assert _frozen_file(bundle, cid) == "FROZEN"
    size = out.stat().st_size
    time.sleep(0.3)
    assert out.stat().st_size == size, "a paused container kept running"
    again = bundle.onggi("pause", cid)
    assert again.returncode == 1 and again.stderr == \
        f"onggi: container {cid} is not running (it is paused)\n"
    assert bundle.onggi("resume", cid).returncode == 0
    assert bundle.state(cid)["status"] == "running"
    assert wait_for(lambda: out.stat().st_size > size)
    again = bundle.onggi("resume", cid)
    assert again.returncode == 1 and "is not paused (it is running)" in again.stderr


def test_pause_a_created_container_resumes_to_created(bundle):
    cid = running(bundle, start=False)
    assert bundle.onggi("pause", cid).returncode == 0
    assert bundle.state(cid)["status"] == "paused"
    assert bundle.onggi("resume", cid).returncode == 0
    assert bundle.state(cid)["status"] == "created"


@pytest.mark.guest_too
def test_kill_of_a_paused_container(bundle):
    cid = running(bundle)
    pid = bundle.state(cid)["pid"]
    assert bundle.onggi("pause", cid).returncode == 0
    assert bundle.onggi("kill", cid, "KILL").returncode == 0  # thaws so the init can die
    bundle.wait_stopped(cid)
    assert _proc_state(pid) in ("Z", "X")


def test_kill_term_of_a_paused_container_is_delivered_on_resume(bundle):
    cid = running(bundle, "trap 'exit 3' TERM; while :; do sleep 0.05; done")
    time.sleep(0.2)
    assert bundle.onggi("pause", cid).returncode == 0
    assert bundle.onggi("kill", cid, "TERM").returncode == 0
    time.sleep(0.2)
    assert bundle.state(cid)["status"] == "paused"  # still frozen, signal pending
    assert bundle.onggi("resume", cid).returncode == 0
    bundle.wait_stopped(cid)


def test_pause_of_stopped_and_unknown(bundle):
    cid = running(bundle, "true")
    bundle.wait_stopped(cid)
    res = bundle.onggi("pause", cid)
    assert res.returncode == 1 and "is not running (it is stopped)" in res.stderr
    res = bundle.onggi("pause", "nope")
    assert res.returncode == 1 and res.stderr == "onggi: container nope does not exist\n"


# ---------------------------------------------------------------- update


def _mem_file(bundle, cid, name):
    return read(bundle, cid, "memory" if V1 else "", name)


@pytest.mark.skipif(not V1, reason="v1 file names (the v2 update test is in test_cg_v2.py)")
def test_update_from_a_file_as_podman_sends_it(bundle, tmp_path):
    resources(bundle, memory={"limit": 67108864, "reservation": 33554432}, pids={"limit": 100})
    cid = running(bundle)
    f = tmp_path / "res.json"
    f.write_text(json.dumps({"memory": {"limit": 134217728, "swap": 268435456}}))
    res = bundle.onggi("update", f"--resources={f}", cid)
    assert res.returncode == 0, res.stderr
    assert read(bundle, cid, "memory", "memory.limit_in_bytes") == "134217728"
    assert read(bundle, cid, "memory", "memory.memsw.limit_in_bytes") == "268435456"
    assert read(bundle, cid, "memory", "memory.soft_limit_in_bytes") == "33554432"  # kept
    saved = json.loads((bundle.root / cid / "state.json").read_text())["cgroup_data"]
    assert saved["resources"]["memory"] == {"limit": 134217728, "reservation": 33554432,
                                            "swap": 268435456}
    assert saved["resources"]["pids"] == {"limit": 100}


@pytest.mark.skipif(not V1, reason="v1 file names")
def test_update_from_stdin_as_containerd_sends_it(bundle):
    cid = running(bundle)
    doc = {"memory": {"limit": 100663296}, "cpu": {"quota": 50000, "period": 100000},
           "pids": {"limit": 77}}
    res = bundle.onggi("update", "--resources", "-", cid, input=json.dumps(doc))
    assert res.returncode == 0, res.stderr
    assert read(bundle, cid, "memory", "memory.limit_in_bytes") == "100663296"
    assert read(bundle, cid, "cpu", "cpu.cfs_quota_us") == "50000"
    assert read(bundle, cid, "pids", "pids.max") == "77"


@pytest.mark.skipif(not V1, reason="v1 file names")
def test_update_with_runcs_flags(bundle):
    cid = running(bundle)
    res = bundle.onggi("update", "--memory", "100M", "--memory-swap", "200M",
                       "--memory-reservation", "50M", "--cpu-share", "300",
                       "--cpu-quota", "20000", "--cpu-period", "100000", "--cpuset-cpus", "0",
                       "--cpuset-mems", "0", "--pids-limit", "55", "--blkio-weight", "500", cid)
    assert res.returncode == 0, res.stderr
    assert read(bundle, cid, "memory", "memory.limit_in_bytes") == str(100 << 20)
    assert read(bundle, cid, "memory", "memory.memsw.limit_in_bytes") == str(200 << 20)
    assert read(bundle, cid, "memory", "memory.soft_limit_in_bytes") == str(50 << 20)
    assert read(bundle, cid, "cpu", "cpu.shares") == "300"
    assert read(bundle, cid, "cpu", "cpu.cfs_quota_us") == "20000"
    assert read(bundle, cid, "cpuset", "cpuset.cpus") == "0"
    assert read(bundle, cid, "pids", "pids.max") == "55"
    res = bundle.onggi("update", "--pids-limit", "-1", cid)
    assert res.returncode == 0 and read(bundle, cid, "pids", "pids.max") == "max"
    assert read(bundle, cid, "memory", "memory.limit_in_bytes") == str(100 << 20)  # kept


@pytest.mark.skipif(not V1, reason="v1 file names")
def test_concurrent_updates_lose_nothing(bundle):
    """The first update reads the state, then waits (ONGGI_FAULT) while a second one sets
    another field; the first must merge into what the second left, not write the old value
    of that field back."""
    resources(bundle, pids={"limit": 100})
    cid = running(bundle)
    env = {**os.environ, "ONGGI_FAULT": "update:loaded@1"}
    slow = subprocess.Popen([*ONGGI, "--root", str(bundle.root), "update", "--memory", "100M",
                             cid], env=env, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)  # the slow one has read the state and sleeps before taking the lock
        assert bundle.onggi("update", "--pids-limit", "50", cid).returncode == 0
    finally:
        _, err = slow.communicate(timeout=30)
    assert slow.returncode == 0, err
    assert read(bundle, cid, "pids", "pids.max") == "50"
    assert read(bundle, cid, "memory", "memory.limit_in_bytes") == str(100 << 20)
    saved = json.loads((bundle.root / cid / "state.json").read_text())["cgroup_data"]
    assert saved["resources"]["pids"] == {"limit": 50}
    assert saved["resources"]["memory"] == {"limit": 100 << 20}


@pytest.mark.skipif(not V1, reason="v1 file names")
def test_update_of_a_paused_container(bundle):
    cid = running(bundle)
    assert bundle.onggi("pause", cid).returncode == 0
    assert bundle.onggi("update", "--pids-limit", "9", cid).returncode == 0
    assert read(bundle, cid, "pids", "pids.max") == "9"
    assert bundle.state(cid)["status"] == "paused"


@pytest.mark.skipif(not V1, reason="v1 file names")
def test_a_failed_update_changes_nothing(bundle):
    resources(bundle, memory={"limit": 67108864})
    cid = running(bundle)
    res = bundle.onggi("update", "--memory", "100M", "--memory-swap", "50M", cid)
    assert res.returncode == 1 and len(res.stderr.splitlines()) == 1
    assert "linux.resources.memory" in res.stderr
    assert read(bundle, cid, "memory", "memory.limit_in_bytes") == "67108864"
    saved = json.loads((bundle.root / cid / "state.json").read_text())["cgroup_data"]
    assert saved["resources"]["memory"] == {"limit": 67108864}


@pytest.mark.skipif(not V1, reason="v1: the kernel refuses a limit below usage (EBUSY)")
def test_update_below_usage_is_refused_by_the_kernel(bundle):
    resources(bundle, memory={"limit": 67108864})
    cid = running(bundle)
    res = bundle.onggi("update", "--memory", "4096", cid)
    assert res.returncode == 1 and "linux.resources.memory.limit: unable to set memory limit " \
        "to 4096 (current usage: " in res.stderr, res.stderr
    assert read(bundle, cid, "memory", "memory.limit_in_bytes") == "67108864"


@pytest.mark.parametrize("args, text", [
    (["--memory", "abc"], "update: invalid value for memory: invalid size: 'abc'"),
    (["--cpu-share", "x"], "update: invalid value for cpu-share"),
    (["--resources", "/nonexistent.json"], "--resources /nonexistent.json: no such file"),
    (["--l3-cache-schema", "L3:0=f"], "Intel RDT"),
])
def test_update_bad_input(bundle, args, text):
    cid = running(bundle)
    res = bundle.onggi("update", *args, cid)
    assert res.returncode != 0 and text in res.stderr, res.stderr
    assert len(res.stderr.splitlines()) == 1


def test_update_bad_json_names_the_field(bundle):
    cid = running(bundle)
    res = bundle.onggi("update", "-r", "-", cid, input='{"memory": {"limit": "lots"}}')
    assert res.returncode != 0 and "resources.memory.limit" in res.stderr, res.stderr


def test_update_of_a_stopped_container(bundle):
    cid = running(bundle, "true")
    bundle.wait_stopped(cid)
    res = bundle.onggi("update", "--pids-limit", "5", cid)
    assert res.returncode == 1 and "is not running (it is stopped)" in res.stderr


# ---------------------------------------------------------------- ps


@pytest.mark.guest_too
def test_ps_json_is_a_bare_array_of_host_pids(bundle):
    cid = running(bundle, "sleep 1000 & sleep 1000")
    assert wait_for(lambda: len(json.loads(bundle.onggi("ps", "-f", "json", cid).stdout)) == 2)
    res = bundle.onggi("ps", "--format", "json", cid)
    pids = json.loads(res.stdout)
    assert res.stdout == json.dumps(pids, separators=(",", ":")) + "\n"  # compact, as runc
    assert bundle.state(cid)["pid"] in pids
    for pid in pids:
        assert Path(f"/proc/{pid}/comm").read_text() == "sleep\n"


def test_ps_table_runs_the_hosts_ps(bundle):
    cid = running(bundle, "sleep 1000 & sleep 1000")
    assert wait_for(lambda: len(json.loads(bundle.onggi("ps", "-f", "json", cid).stdout)) == 2)
    lines = bundle.onggi("ps", cid).stdout.splitlines()
    assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert len(lines) == 3 and all(line.rstrip().endswith("sleep 1000") for line in lines[1:])
    # ps options after the id go to ps(1)
    lines = bundle.onggi("ps", cid, "-o", "pid,comm").stdout.splitlines()
    assert lines[0].split() == ["PID", "COMMAND"] and len(lines) == 3
    lines = bundle.onggi("ps", cid, "-e", "-x").stdout.splitlines()
    assert "PID" in lines[0].split() and len(lines) == 3
    bad = bundle.onggi("ps", "--format", "xml", cid)
    assert bad.returncode != 0 and "table or json" in bad.stderr


# ---------------------------------------------------------------- events


@pytest.mark.guest_too
def test_events_stats_shape_is_runcs(bundle, runc):
    resources(bundle, memory={"limit": 67108864}, pids={"limit": 100},
              cpu={"shares": 512, "quota": 50000, "period": 100000})
    cid = running(bundle)
    res = bundle.onggi("events", "--stats", cid)
    assert res.returncode == 0 and res.stdout.count("\n") == 1, res.stderr
    ev = json.loads(res.stdout)
    assert ev["type"] == "stats" and ev["id"] == cid
    data = ev["data"]
    assert data["memory"]["usage"]["limit"] == 67108864
    assert data["pids"]["limit"] == 100 and data["pids"]["current"] >= 1
    assert data["cpu"]["usage"]["total"] > 0
    rid = uid("runc")
    runc.create(bundle, rid)
    assert runc("start", rid).returncode == 0
    got = runc("events", "--stats", rid)
    assert got.returncode == 0, got.stderr
    theirs = json.loads(got.stdout)
    assert list(ev) == list(theirs)
    assert list(data) == list(theirs["data"])
    omitempty = {"cache", "raw", "current", "limit", "cpus", "mems"}  # Go drops them at 0
    for k in ("memory", "pids", "cpuset", "cpu"):
        assert set(data[k]) - omitempty == set(theirs["data"][k]) - omitempty, k
    for k in ("usage", "swap", "kernel", "kernelTCP"):
        assert {"limit", "failcnt"} <= set(data["memory"][k]) & set(theirs["data"]["memory"][k])
    assert set(data["cpu"]["usage"]) >= {"kernel", "user"}


@pytest.mark.guest_too
def test_events_streams_stats_and_oom(bundle, tmp_path):
    resources(bundle, memory={"limit": 16777216, "swap": 16777216})
    # the subshell is the biggest process: the OOM killer takes it, not the init
    cid = running(bundle, "sleep 1.5; (x=$(head -c 60000000 /dev/zero | tr '\\0' a)); "
                  "sleep 1000")
    proc = subprocess.Popen([*ONGGI, "--root", str(bundle.root), "events", "--interval", "500ms",
                             cid], stdout=subprocess.PIPE, text=True)
    try:
        seen = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not ("oom" in seen and seen.count("stats") >= 2):
            line = proc.stdout.readline()
            if not line:
                break
            ev = json.loads(line)
            assert ev["id"] == cid
            seen.append(ev["type"])
        assert "oom" in seen and seen.count("stats") >= 2, seen
        assert bundle.onggi("kill", cid, "KILL").returncode == 0
        assert proc.wait(timeout=5) == 0  # the stream ends with the container
    finally:
        proc.kill()
        proc.wait()


def test_events_of_a_stopped_container(bundle):
    cid = running(bundle, "true")
    bundle.wait_stopped(cid)
    res = bundle.onggi("events", "--stats", cid)
    assert res.returncode == 1 and f"container with id {cid} is not running" in res.stderr
    res = bundle.onggi("events", "--interval", "0s", cid)
    assert res.returncode != 0 and "interval" in res.stderr


# ---------------------------------------------------------------- kill --all


def _orphan_script(marker: str) -> str:
    """The init leaves a process outside its own tree: a double fork, re-parented away."""
    return f"(sleep 1000 & echo $! > /out/{marker}) ; sleep 1000"


@pytest.mark.guest_too
@pytest.mark.parametrize("verb", [["kill", "--all"], ["kill"]])
def test_kill_all_reaches_a_process_outside_the_inits_tree(bundle, tmp_path, verb):
    """A container sharing the host's pid namespace (a HostPID pod): the init's children
    re-parented away are still in its cgroup, and SIGKILL (--all, or of the init itself, as
    runc >= 1.2) reaches them: no orphans left on the host."""
    bundle.config["linux"]["namespaces"] = [n for n in bundle.config["linux"]["namespaces"]
                                            if n["type"] != "pid"]
    bundle.config["mounts"].append({"destination": "/out", "type": "bind",
                                    "source": str(tmp_path), "options": ["rbind"]})
    cid = running(bundle, _orphan_script("orphan"))
    assert wait_for(lambda: (tmp_path / "orphan").exists() and
                    (tmp_path / "orphan").read_text().strip())
    orphan = int((tmp_path / "orphan").read_text())
    init = bundle.state(cid)["pid"]
    assert int(Path(f"/proc/{orphan}/stat").read_text().split(") ")[1].split()[1]) != init
    assert bundle.onggi(*verb, cid, "KILL").returncode == 0
    assert wait_for(lambda: _proc_state(orphan) in ("Z", "X"))
    bundle.wait_stopped(cid)


@pytest.mark.guest_too
def test_kill_all_with_another_signal_freezes_signals_thaws(bundle, tmp_path):
    bundle.config["mounts"].append({"destination": "/out", "type": "bind",
                                    "source": str(tmp_path), "options": ["rbind"]})
    cid = running(bundle, "trap 'echo init >> /out/got' USR1; "
                  "sh -c \"trap 'echo child >> /out/got; exit 0' USR1; while :; do sleep 0.05; "
                  "done\" & while :; do sleep 0.05; done")
    assert wait_for(lambda: len(json.loads(bundle.onggi("ps", "-f", "json", cid).stdout)) >= 3)
    assert bundle.onggi("kill", "--all", cid, "USR1").returncode == 0
    assert wait_for(lambda: (tmp_path / "got").exists() and
                    sorted((tmp_path / "got").read_text().split()) == ["child", "init"])
    assert bundle.state(cid)["status"] == "running"  # thawed again


# ---------------------------------------------------------------- cgroup namespace


@pytest.mark.guest_too
def test_cgroup_namespace_shows_the_containers_cgroup_as_root(bundle):
    # `onggi spec` adds a cgroup namespace only on cgroup2 (as runc): ask for one
    if not any(n["type"] == "cgroup" for n in bundle.config["linux"]["namespaces"]):
        bundle.config["linux"]["namespaces"].append({"type": "cgroup"})
    resources(bundle, pids={"limit": 42})
    f = "/sys/fs/cgroup/pids/pids.max" if V1 else "/sys/fs/cgroup/pids.max"
    r = bundle.sh(f"cat /proc/self/cgroup; cat {f}")
    lines = r.stdout.splitlines()
    assert lines[-1] == "42", r.stdout
    assert all(line.endswith(":/") for line in lines[:-1]), lines


def test_without_a_cgroup_namespace_the_host_path_shows(bundle):
    bundle.config["linux"]["namespaces"] = [n for n in bundle.config["linux"]["namespaces"]
                                            if n["type"] != "cgroup"]
    resources(bundle, pids={"limit": 43})
    f = "/sys/fs/cgroup/pids/pids.max" if V1 else "/sys/fs/cgroup/pids.max"
    cid = bundle.create(args=["sh", "-c", f"cat /proc/self/cgroup; cat {f}"])
    paths = cgpaths(bundle, cid)
    assert bundle.onggi("start", cid).returncode == 0
    bundle.wait_stopped(cid)
    lines = bundle.output(cid).splitlines()
    inside = {ln.split(":", 2)[1]: ln.split(":", 2)[2] for ln in lines[:-1]}
    key = "pids" if V1 else ""
    assert paths[key].endswith(inside[key]) and inside[key].endswith("/" + cid)
    if V1:
        assert lines[-1] == "43"  # /sys/fs/cgroup/pids is the container's own cgroup


@pytest.mark.guest_too
def test_the_init_is_in_its_cgroups_right_after_create(bundle):
    """conmon and the containerd shim read /proc/<pid>/cgroup right after create."""
    resources(bundle, memory={"limit": 67108864})
    cid = running(bundle, start=False)
    pid = bundle.state(cid)["pid"]
    mine = proc_cgroups(pid)
    for ctrl, d in cgpaths(bundle, cid).items():
        if ctrl in mine:
            assert d.endswith(mine[ctrl]), (ctrl, d, mine[ctrl])
    assert MODE != "v2" or mine[""].endswith("/" + cid)
    assert leftovers(cid)


def test_kill_all_of_a_container_without_cgroups_of_its_own_is_refused_cleanly(bundle):
    """The default rule: no cgroup of our own only for rootless runs (skipped here); the
    old walk of the init's descendants still serves a state file without cgroup paths."""
    cid = running(bundle)
    st_file = bundle.root / cid / "state.json"
    doc = json.loads(st_file.read_text())
    paths = doc["cgroup_paths"]
    doc["cgroup_paths"] = {}
    st_file.write_text(json.dumps(doc))
    try:
        assert bundle.onggi("kill", "--all", cid, "KILL").returncode == 0
        bundle.wait_stopped(cid)
    finally:
        doc["cgroup_paths"] = paths
        st_file.write_text(json.dumps(doc))
    assert bundle.onggi("delete", cid).returncode == 0
    assert leftovers(cid) == []
