"""The systemd cgroup driver for real (--systemd-cgroup): systemd makes each container a
transient scope over D-Bus with the config's limits, and the verbs go through it. Needs
systemd as PID 1 on pure cgroup v2: skipped on this host, run in the v2 guest (make test-v2),
where runc's own systemd driver serves as the reference."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from cgtest import leftovers, wait_for
from guesttools import read_cgroup, runc, systemctl_show, unit_gone

pytestmark = [pytest.mark.systemd, pytest.mark.cgroupv2]

MIB = 1 << 20
LIMITS = {"memory": {"limit": 64 * MIB, "reservation": 32 * MIB},
          "pids": {"limit": 100},
          "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0"}}
SHOWN = ("ControlGroup", "Slice", "ActiveState", "Delegate", "MemoryMax", "MemoryLow",
         "TasksMax", "CPUWeight", "CPUQuotaPerSecUSec", "CPUQuotaPeriodUSec", "AllowedCPUs",
         "DevicePolicy", "DeviceAllow", "DefaultDependencies", "MemoryAccounting",
         "TasksAccounting", "Description")


def sd(bundle, *args: str, **kw) -> subprocess.CompletedProcess:
    return bundle.onggi("--systemd-cgroup", *args, **kw)


def create(bundle, cgroups_path: str | None, script: str = "sleep 1000",
           res: dict | None = None) -> str:
    cid = "sd" + uuid.uuid4().hex[:10]
    if cgroups_path is not None:
        bundle.config["linux"]["cgroupsPath"] = cgroups_path.replace("ID", cid)
    bundle.config["linux"].setdefault("resources", {}).update(res or {})
    bundle.ids.append(cid)  # deleted at the end (without --systemd-cgroup: from the state)
    bundle.write(["sh", "-c", script])
    out, err = bundle.path.parent / f"{cid}.out", bundle.path.parent / f"{cid}.err"
    with open(out, "w") as fo, open(err, "w") as fe:  # the init holds them: files, not pipes
        res = sd(bundle, "create", "-b", str(bundle.path), cid, capture_output=False,
                 stdin=subprocess.DEVNULL, stdout=fo, stderr=fe)
    assert res.returncode == 0, err.read_text()
    return cid


def show_all(unit: str, prop: str) -> list[str]:
    """Every value of a property systemctl lists once per entry (DeviceAllow)."""
    out = subprocess.run(["systemctl", "show", unit, f"--property={prop}"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return [line.split("=", 1)[1] for line in out.splitlines() if line.startswith(prop + "=")]


def scope_of(bundle, cid: str) -> tuple[str, str]:
    """(unit, cgroup dir) from the container's state."""
    doc = json.loads((bundle.root / cid / "state.json").read_text())
    assert doc["cgroup_driver"] == "systemd"
    return doc["cgroup_data"]["unit"], doc["cgroup_paths"][""]


def gone(unit: str, d: str) -> bool:
    return unit_gone(unit) and not Path(d).exists()


def test_a_scope_with_the_configs_limits_holds_the_init(bundle):
    cid = create(bundle, "system.slice:onggi:ID", res=LIMITS)
    unit, d = scope_of(bundle, cid)
    assert (unit, d) == (f"onggi-{cid}.scope", f"/sys/fs/cgroup/system.slice/onggi-{cid}.scope")
    show = systemctl_show(unit, *SHOWN)
    assert show["ControlGroup"] == f"/system.slice/{unit}" and show["Slice"] == "system.slice"
    assert (show["ActiveState"], show["Delegate"], show["DefaultDependencies"]) == \
        ("active", "yes", "no")
    assert (show["MemoryAccounting"], show["TasksAccounting"]) == ("yes", "yes")
    assert show["Description"] == f"libcontainer container {cid}"
    assert (show["MemoryMax"], show["MemoryLow"], show["TasksMax"]) == \
        (str(64 * MIB), str(32 * MIB), "100")
    assert (show["CPUWeight"], show["CPUQuotaPerSecUSec"], show["CPUQuotaPeriodUSec"]) == \
        ("100", "500ms", "100ms")
    assert show["AllowedCPUs"] == "0"
    assert show["DevicePolicy"] == "strict"
    allowed = show_all(unit, "DeviceAllow")
    # (systemd >= 240 takes "char-136" for every minor of a major, as runc >= 1.2 sends it)
    assert {"/dev/char/1:3 rwm", "char-136 rwm", "char-* m", "block-* m"} <= set(allowed), allowed
    # the files say the same, and the init is in there right after create
    rel = show["ControlGroup"]
    assert (read_cgroup(rel, "memory.max"), read_cgroup(rel, "memory.low"),
            read_cgroup(rel, "pids.max"), read_cgroup(rel, "cpu.max"),
            read_cgroup(rel, "cpu.weight"), read_cgroup(rel, "cpuset.cpus")) == \
        (str(64 * MIB), str(32 * MIB), "100", "50000 100000", "100", "0")
    init = bundle.state(cid)["pid"]
    assert str(init) in read_cgroup(rel, "cgroup.procs").split()
    assert Path(f"/proc/{init}/cgroup").read_text() == f"0::/system.slice/{unit}\n"
    # our eBPF device program replaced systemd's: one program, ours
    from runtime.cgroups import bpf

    assert len(bpf.attached(d)) == 1
    assert sd(bundle, "delete", "--force", cid).returncode == 0
    assert gone(unit, d)


def test_the_verbs_go_through_the_scope(bundle, tmp_path):
    cid = create(bundle, "machine.slice:pfx:ID", res={"memory": {"limit": 64 * MIB},
                                                      "pids": {"limit": 100}})
    unit, d = scope_of(bundle, cid)
    assert sd(bundle, "start", cid).returncode == 0
    # pause / resume: cgroup.freeze of the scope
    assert sd(bundle, "pause", cid).returncode == 0
    assert bundle.state(cid)["status"] == "paused"
    assert "frozen 1" in Path(d, "cgroup.events").read_text()
    assert sd(bundle, "resume", cid).returncode == 0
    assert bundle.state(cid)["status"] == "running"
    # update: systemd's properties and the files
    res = sd(bundle, "update", "--memory", "100M", "--pids-limit", "55", "--cpu-quota", "12345",
             cid)
    assert res.returncode == 0, res.stderr
    show = systemctl_show(unit, "MemoryMax", "TasksMax", "CPUQuotaPerSecUSec")
    assert (show["MemoryMax"], show["TasksMax"], show["CPUQuotaPerSecUSec"]) == \
        (str(100 * MIB), "55", "130ms")
    assert Path(d, "memory.max").read_text().strip() == str(100 * MIB)
    assert Path(d, "pids.max").read_text().strip() == "55"
    # the quota as systemd keeps it (10 ms steps), so a daemon-reload changes nothing
    assert Path(d, "cpu.max").read_text().strip() == "13000 100000"
    subprocess.run(["systemctl", "daemon-reload"], check=True, timeout=120)
    assert Path(d, "memory.max").read_text().strip() == str(100 * MIB)
    assert Path(d, "pids.max").read_text().strip() == "55"
    # exec joins the scope; ps lists it
    pid_file = tmp_path / "exec.pid"
    res = sd(bundle, "exec", "-d", "--pid-file", str(pid_file), cid, "sleep", "1000",
             capture_output=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert res.returncode == 0
    pid = int(pid_file.read_text())
    assert str(pid) in Path(d, "cgroup.procs").read_text().split()
    pids = json.loads(sd(bundle, "ps", "-f", "json", cid).stdout)
    assert pid in pids and bundle.state(cid)["pid"] in pids
    # kill --all: cgroup.kill; then the empty scope is stopped by systemd itself
    assert sd(bundle, "kill", "--all", cid, "KILL").returncode == 0
    bundle.wait_stopped(cid, timeout=30)
    assert wait_for(lambda: unit_gone(unit), timeout=30)
    assert sd(bundle, "delete", cid).returncode == 0
    assert gone(unit, d) and not (bundle.root / cid).exists()


@pytest.mark.parametrize("state", ["created", "running", "paused", "stopped"])
def test_delete_leaves_no_scope(bundle, state):
    cid = create(bundle, None, "true" if state == "stopped" else "sleep 1000")
    unit, d = scope_of(bundle, cid)
    assert unit == f"onggi-{cid}.scope" and d.startswith("/sys/fs/cgroup/system.slice/")
    if state != "created":
        assert sd(bundle, "start", cid).returncode == 0
    if state == "paused":
        assert sd(bundle, "pause", cid).returncode == 0
    if state == "stopped":
        bundle.wait_stopped(cid)
    assert bundle.state(cid)["status"] == state
    res = sd(bundle, "delete", *([] if state == "stopped" else ["--force"]), cid)
    assert res.returncode == 0, res.stderr
    assert gone(unit, d), systemctl_show(unit, "LoadState", "ActiveState")


def test_nested_and_root_slices(bundle):
    top = "ot" + uuid.uuid4().hex[:6]
    try:
        cid = create(bundle, f"{top}-inner.slice:p:ID")
        unit, d = scope_of(bundle, cid)
        assert d == f"/sys/fs/cgroup/{top}.slice/{top}-inner.slice/p-{cid}.scope"
        assert systemctl_show(unit, "Slice")["Slice"] == f"{top}-inner.slice"
        assert str(bundle.state(cid)["pid"]) in Path(d, "cgroup.procs").read_text().split()
        assert sd(bundle, "delete", "--force", cid).returncode == 0
        assert gone(unit, d)
        cid = create(bundle, "-.slice:p:ID")
        unit, d = scope_of(bundle, cid)
        assert d == f"/sys/fs/cgroup/p-{cid}.scope"
        assert systemctl_show(unit, "Slice")["Slice"] == "-.slice"
        assert sd(bundle, "delete", "--force", cid).returncode == 0
        assert gone(unit, d)
    finally:
        subprocess.run(["systemctl", "stop", f"{top}.slice"], timeout=120)


def _fails(bundle, cid: str) -> str:
    bundle.write()
    res = sd(bundle, "create", "-b", str(bundle.path), cid, stdin=subprocess.DEVNULL)
    lines = res.stderr.splitlines()
    assert res.returncode != 0 and len(lines) == 1 and lines[0].startswith("onggi: "), \
        res.stderr
    assert not (bundle.root / cid).exists()
    return lines[0]


@pytest.mark.parametrize("how", ["mount", "resources", "systemd"])
def test_a_failed_create_leaves_no_scope(bundle, how):
    """After the scope was started (a bad mount, a value the kernel refuses), or when systemd
    itself refuses the unit (an unknown property from an annotation): nothing stays."""
    cid = "sf" + uuid.uuid4().hex[:10]
    bundle.config["linux"]["cgroupsPath"] = f"system.slice:onggi:{cid}"
    if how == "mount":
        bundle.config["mounts"].append({"destination": "/x", "type": "bind",
                                        "source": "/no/such/source", "options": ["rbind"]})
        words = "/no/such/source"
    elif how == "resources":
        bundle.config["linux"]["resources"]["unified"] = {"pids.max": "lots"}
        words = "linux.resources.unified.pids.max"
    else:
        bundle.config["annotations"] = {"org.systemd.property.NoSuchThing": "true"}
        words = f"unable to start unit onggi-{cid}.scope"
    assert words in _fails(bundle, cid)
    unit = f"onggi-{cid}.scope"
    assert unit_gone(unit), systemctl_show(unit, "LoadState", "ActiveState")
    assert systemctl_show(unit, "LoadState")["LoadState"] == "not-found"  # nor failed
    assert leftovers(unit) == []


@pytest.mark.parametrize("step", ["create:resources-set", "create:created"])
def test_a_killed_create_is_cleaned_by_delete_force(bundle, step):
    """A create killed after systemd started the scope: until the state is saved the init
    ends with its creator (runtime/messages.py, STATE_SAVED), and systemd stops the empty
    scope; the next `delete --force` finds the unit in the create's note, stops what is left
    and frees the id."""
    import os

    from harness import ONGGI

    cid = "sk" + uuid.uuid4().hex[:10]
    bundle.config["linux"]["cgroupsPath"] = f"system.slice:onggi:{cid}"
    bundle.write(["sleep", "1000"])
    res = subprocess.run([*ONGGI, "--root", str(bundle.root), "--systemd-cgroup", "create",
                          "-b", str(bundle.path), cid],
                         env={**os.environ, "ONGGI_FAULT": step},
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, timeout=120)
    assert res.returncode == -9
    unit = f"onggi-{cid}.scope"
    assert wait_for(lambda: sd(bundle, "delete", "--force", cid).returncode == 0
                    and not (bundle.root / cid).exists(), timeout=30)
    assert wait_for(lambda: unit_gone(unit), timeout=30)
    assert leftovers(unit) == []


def test_features_say_systemd_works_here(bundle):
    doc = json.loads(bundle.onggi("features").stdout)
    assert doc["linux"]["cgroup"]["systemd"] is True
    assert doc["linux"]["cgroup"]["systemdUser"] is False


def test_annotations_become_unit_properties(bundle):
    bundle.config["annotations"] = {"org.systemd.property.TimeoutStopSec": "uint64 20",
                                    "org.systemd.property.CollectMode": "'inactive-or-failed'"}
    cid = create(bundle, "system.slice:onggi:ID")
    unit, d = scope_of(bundle, cid)
    show = systemctl_show(unit, "TimeoutStopUSec", "CollectMode")
    assert show == {"TimeoutStopUSec": "20s", "CollectMode": "inactive-or-failed"}
    assert sd(bundle, "delete", "--force", cid).returncode == 0
    assert gone(unit, d)


def test_same_scope_properties_as_runc(bundle, tmp_path):
    """runc 1.1.5 --systemd-cgroup with the same config, side by side. (runc 1.1.5 sends
    the resources with SetUnitProperties after the start; onggi starts the scope with them.)"""
    res = {"memory": {"limit": 64 * MIB}, "pids": {"limit": 100},
           "cpu": {"quota": 50000, "period": 100000, "cpus": "0"}}
    cid = create(bundle, "system.slice:onggi:ID", res=res)
    ours, _ = scope_of(bundle, cid)
    rid = "rc" + uuid.uuid4().hex[:10]
    root = tmp_path / "runc"
    bundle.config["linux"]["cgroupsPath"] = f"system.slice:runc:{rid}"
    bundle.write(["sleep", "1000"])
    with open(tmp_path / "runc.err", "w") as fe:
        r = runc("create", "-b", str(bundle.path), rid, root=root, systemd=True,
                 capture_output=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                 stderr=fe)
    try:
        assert r.returncode == 0, (tmp_path / "runc.err").read_text()
        props = ("Slice", "Delegate", "MemoryMax", "TasksMax", "CPUQuotaPerSecUSec",
                 "AllowedCPUs", "DevicePolicy", "DefaultDependencies",
                 "MemoryAccounting", "CPUAccounting", "IOAccounting", "TasksAccounting")
        theirs = f"runc-{rid}.scope"
        assert systemctl_show(ours, *props) == systemctl_show(theirs, *props)
        # runc 1.1.5 names a major's group as /proc/devices does (char-pts, where runc >= 1.2
        # says char-136), and leaves out a /dev/char/M:N that is not there (/dev/net/tun here)
        mine = set(show_all(ours, "DeviceAllow"))
        runcs = {a.replace("char-pts ", "char-136 ") for a in show_all(theirs, "DeviceAllow")}
        assert runcs <= mine and len(runcs) >= 10, (mine, runcs)
        for extra in mine - runcs:
            assert not Path(extra.split()[0]).exists(), extra
    finally:
        runc("delete", "--force", rid, root=root)
        assert sd(bundle, "delete", "--force", cid).returncode == 0


def test_dbus_through_systemds_private_socket():
    """Without the bus daemon, root talks to systemd directly on /run/systemd/private (as
    runc does): the same calls work there."""
    from runtime.cgroups import sdbus

    bus = sdbus.Systemd(sdbus.direct())
    try:
        assert bus.version() == 252
        bus.reset_failed("onggi-no-such-unit.scope")  # an error reply, ignored
        unit = f"onggi-probe{uuid.uuid4().hex[:8]}.scope"
        sleeper = subprocess.Popen(["sleep", "1000"])
        try:
            bus.start_unit(unit, [("PIDs", ("au", [sleeper.pid])),
                                  ("Delegate", ("b", True))])
            assert systemctl_show(unit, "ActiveState")["ActiveState"] == "active"
            assert bus.stop_unit(unit) == "done"
        finally:
            sleeper.kill()
            sleeper.wait()
        assert wait_for(lambda: unit_gone(unit), timeout=30)
    finally:
        bus.close()


def test_podman_with_the_systemd_cgroup_manager_runs_onggi(busybox_rootfs, tmp_path):
    """podman (cgroup_manager=systemd) drives onggi with --systemd-cgroup and a
    machine.slice:libpod:ID path: the limits land in the libpod scope, exec joins it, stop and
    rm take it away."""
    from harness import REPO

    runroot = tempfile.mkdtemp(prefix="pm", dir="/run")  # podman wants under 50 characters
    pm = ["podman", "--root", str(tmp_path / "storage"), "--runroot", runroot,
          "--runtime", str(REPO / ".venv/bin/onggi"), "--cgroup-manager", "systemd"]

    def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        res = subprocess.run([*pm, *args], capture_output=True, text=True, timeout=180)
        assert not check or res.returncode == 0, f"podman {args[0]}: {res.stderr}"
        return res

    name = "pm" + uuid.uuid4().hex[:8]
    try:
        podman("run", "-d", "--name", name, "--network", "none", "--memory", "64m",
               "--pids-limit", "50", "--rootfs", str(busybox_rootfs), "sleep", "1000")
        pid = int(podman("inspect", "-f", "{{.State.Pid}}", name).stdout)
        cid = podman("inspect", "-f", "{{.Id}}", name).stdout.strip()
        rel = Path(f"/proc/{pid}/cgroup").read_text().strip()[3:]
        unit = f"libpod-{cid}.scope"
        assert rel == f"/machine.slice/{unit}", rel
        show = systemctl_show(unit, "MemoryMax", "TasksMax", "Delegate", "ActiveState")
        assert show == {"MemoryMax": str(64 * MIB), "TasksMax": "50", "Delegate": "yes",
                        "ActiveState": "active"}
        assert (read_cgroup(rel, "memory.max"), read_cgroup(rel, "pids.max")) == \
            (str(64 * MIB), "50")
        out = podman("exec", name, "cat", "/proc/self/cgroup", "/sys/fs/cgroup/memory.max")
        assert out.stdout.split() == ["0::/", str(64 * MIB)]
        podman("stop", "-t", "1", name)
        assert wait_for(lambda: unit_gone(unit), timeout=30)
        podman("rm", name)
        assert not Path("/sys/fs/cgroup", rel.lstrip("/")).exists()
    finally:
        podman("rm", "-f", name, check=False)
        shutil.rmtree(runroot, ignore_errors=True)
