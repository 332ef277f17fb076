"""Spec 1.2/1.3 process fields, read from inside the container: process.scheduler
(/proc/self/sched), process.ioPriority (ionice), process.execCPUAffinity
(Cpus_allowed_list), linux.personality (uname -m), linux.memoryPolicy (numa_maps); and
their refusals, one line naming the field."""

from __future__ import annotations

import os

import pytest


def _sched(out: str) -> dict[str, str]:
    """{"policy": "3", "prio": "125"} from /proc/self/sched lines."""
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in
            out.splitlines()) if k.strip() in ("policy", "prio")}


def _refused(bundle, field: str) -> str:
    res = bundle.run(["true"])
    lines = res.stderr.splitlines()
    assert res.returncode != 0, res.stdout
    assert len(lines) == 1 and lines[0].startswith("onggi: "), res.stderr
    assert field in lines[0], lines[0]
    assert os.listdir(bundle.root) == []  # nothing left behind
    return lines[0]


# The kernel's view (sched(7)): policy number and prio (nice + 120 for fair policies,
# 99 - rt_priority for FIFO/RR, -1 for DEADLINE).
SCHED_CASES = [
    ({"policy": "SCHED_BATCH", "nice": 5}, "3", "125"),
    ({"policy": "SCHED_IDLE"}, "5", "120"),
    ({"policy": "SCHED_OTHER", "nice": -5}, "0", "115"),
    ({"policy": "SCHED_OTHER", "nice": 7, "flags": ["SCHED_FLAG_RESET_ON_FORK"]}, "0", "127"),
    ({"policy": "SCHED_DEADLINE", "runtime": 10_000_000, "deadline": 30_000_000,
      "period": 30_000_000}, "6", "-1"),
    ({"policy": "SCHED_FIFO", "priority": 10}, "1", "89"),
    ({"policy": "SCHED_RR", "priority": 5}, "2", "94"),
]


@pytest.mark.parametrize("sched,policy,prio", SCHED_CASES,
                         ids=[c[0]["policy"] + str(i) for i, c in enumerate(SCHED_CASES)])
def test_scheduler(bundle, sched, policy, prio):
    bundle.config["process"]["scheduler"] = sched
    if sched["policy"] in ("SCHED_FIFO", "SCHED_RR"):
        # a new cpu cgroup (RT_GROUP_SCHED) has no realtime budget unless given one
        bundle.config["linux"].setdefault("resources", {})["cpu"] = {
            "realtimeRuntime": 10000, "realtimePeriod": 1000000}
    # cat itself is the container's process: a DEADLINE task may not fork
    res = bundle.run(["cat", "/proc/self/sched"])
    assert res.returncode == 0, res.stderr
    assert _sched(res.stdout) == {"policy": policy, "prio": prio}


def test_no_scheduler_leaves_the_default(bundle):
    res = bundle.run(["cat", "/proc/self/sched"])
    assert _sched(res.stdout) == {"policy": "0", "prio": "120"}


@pytest.mark.parametrize("sched,field", [
    ({"policy": "SCHED_ISO"}, "process.scheduler.policy"),
    ({"policy": "SCHED_BATCH", "priority": 3}, "process.scheduler.priority"),
    ({"policy": "SCHED_FIFO"}, "process.scheduler.priority"),
    ({"policy": "SCHED_OTHER", "nice": 20}, "process.scheduler.nice"),
    ({"policy": "SCHED_OTHER", "runtime": 100}, "process.scheduler.runtime"),
    ({"policy": "SCHED_DEADLINE", "runtime": 30_000_000, "deadline": 10_000_000},
     "process.scheduler"),
])
def test_scheduler_refusals(bundle, sched, field):
    bundle.config["process"]["scheduler"] = sched
    _refused(bundle, field)


def test_scheduler_flag_the_kernel_lacks_is_an_error(bundle):
    bundle.config["process"]["scheduler"] = {"policy": "SCHED_OTHER",
                                             "flags": ["SCHED_FLAG_UTIL_CLAMP_MIN"]}
    res = bundle.run(["true"])
    if res.returncode == 0:
        pytest.skip("this kernel has CONFIG_UCLAMP_TASK")
    assert res.stderr.startswith("onggi: process.scheduler: sched_setattr(SCHED_OTHER): ")
    assert len(res.stderr.splitlines()) == 1


@pytest.mark.parametrize("io,want", [
    ({"class": "IOPRIO_CLASS_IDLE"}, "idle"),
    ({"class": "IOPRIO_CLASS_BE", "priority": 7}, "best-effort: prio 7"),
    ({"class": "IOPRIO_CLASS_RT", "priority": 0}, "realtime: prio 0"),
])
def test_io_priority(bundle, io, want):
    bundle.config["process"]["ioPriority"] = io
    res = bundle.run(["sh", "-c", "ionice -p $$"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == want


def test_io_priority_refused_out_of_range(bundle):
    bundle.config["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 8}
    _refused(bundle, "process.ioPriority.priority")


def _two_cpus():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    return cpus


def _allowed(out: str) -> str:
    return next(line.split(":")[1].strip() for line in out.splitlines()
                if line.startswith("Cpus_allowed_list"))


def test_exec_cpu_affinity_final(bundle):
    cpus = _two_cpus()
    bundle.config["process"]["execCPUAffinity"] = {"initial": str(cpus[0]),
                                                   "final": str(cpus[1])}
    res = bundle.run(["cat", "/proc/self/status"])
    assert res.returncode == 0, res.stderr
    assert _allowed(res.stdout) == str(cpus[1])


def test_exec_cpu_affinity_initial_only_is_kept(bundle):
    """No final: the process keeps the affinity the runtime worked under inside the
    container (the spec: SHOULD NOT change it after the move to the container's cgroup)."""
    cpus = _two_cpus()
    bundle.config["process"]["execCPUAffinity"] = {"initial": str(cpus[-1])}
    res = bundle.run(["cat", "/proc/self/status"])
    assert res.returncode == 0, res.stderr
    assert _allowed(res.stdout) == str(cpus[-1])


def test_exec_cpu_affinity_list_syntax(bundle):
    cpus = _two_cpus()
    bundle.config["process"]["execCPUAffinity"] = {"final": f" {cpus[0]}-{cpus[1]} , ,"}
    res = bundle.run(["cat", "/proc/self/status"])
    assert res.returncode == 0, res.stderr
    assert _allowed(res.stdout) == f"{cpus[0]}-{cpus[1]}"


@pytest.mark.parametrize("final,words", [("3-1", "invalid range"), (" , ", "no members"),
                                         ("4000", "no CPU of 4000 exists")])
def test_exec_cpu_affinity_refusals(bundle, final, words):
    bundle.config["process"]["execCPUAffinity"] = {"final": final}
    assert words in _refused(bundle, "process.execCPUAffinity.final")


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="LINUX32 shows as i686 on x86_64")
def test_personality_linux32(bundle):
    bundle.config["linux"]["personality"] = {"domain": "LINUX32"}
    res = bundle.run(["uname", "-m"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "i686"
    bundle.config["linux"]["personality"] = {"domain": "LINUX"}
    assert bundle.run(["uname", "-m"]).stdout.strip() == "x86_64"


def test_personality_flags_are_ignored_with_a_warning(bundle, tmp_path):
    bundle.config["linux"]["personality"] = {"domain": "LINUX", "flags": ["X"]}
    log = tmp_path / "log"
    bundle.write(["true"])
    res = bundle.onggi("--log", str(log), "run", "-b", str(bundle.path), bundle.new_id())
    assert res.returncode == 0, res.stderr
    line = next(x for x in log.read_text().splitlines() if "linux.personality.flags" in x)
    assert "level=warning" in line and "ignored" in line


def _online_nodes() -> list[int]:
    from runtime.linux import mempolicy

    nodes = mempolicy.online_nodes()
    if not nodes:
        pytest.skip("no NUMA")
    return sorted(nodes)


@pytest.mark.parametrize("policy,want", [
    ({"mode": "MPOL_BIND", "nodes": "{n}"}, "bind:{n}"),
    ({"mode": "MPOL_INTERLEAVE", "nodes": "{n}"}, "interleave:{n}"),
    ({"mode": "MPOL_PREFERRED", "nodes": "{n}"}, "prefer:{n}"),
    ({"mode": "MPOL_LOCAL"}, "local"),
    ({"mode": "MPOL_BIND", "nodes": "{n}", "flags": ["MPOL_F_STATIC_NODES"]},
     "bind=static:{n}"),
])
def test_memory_policy(bundle, policy, want):
    n = _online_nodes()[0]
    policy = {k: (v.format(n=n) if isinstance(v, str) else v) for k, v in policy.items()}
    bundle.config["linux"]["memoryPolicy"] = policy
    res = bundle.run(["head", "-n1", "/proc/self/numa_maps"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[1] == want.format(n=n)


def test_no_memory_policy_is_default(bundle):
    _online_nodes()
    res = bundle.run(["head", "-n1", "/proc/self/numa_maps"])
    assert res.stdout.split()[1] == "default"


def test_memory_policy_offline_node_is_refused(bundle):
    bad = max(_online_nodes()) + 1
    bundle.config["linux"]["memoryPolicy"] = {"mode": "MPOL_BIND", "nodes": str(bad)}
    line = _refused(bundle, "linux.memoryPolicy.nodes")
    assert f"node {bad} is not online" in line


@pytest.mark.parametrize("policy,field", [
    ({"mode": "MPOL_LOCAL", "nodes": "0"}, "linux.memoryPolicy.nodes"),
    ({"mode": "MPOL_BIND"}, "linux.memoryPolicy.nodes"),
    ({"mode": "MPOL_BIND", "nodes": "0",
      "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}, "linux.memoryPolicy.flags"),
    ({"nodes": "0"}, "linux.memoryPolicy.mode"),
])
def test_memory_policy_refusals(bundle, policy, field):
    bundle.config["linux"]["memoryPolicy"] = policy
    _refused(bundle, field)


def test_memory_policy_the_kernel_refuses_names_the_field(bundle):
    """INTERLEAVE with NUMA_BALANCING passes our checks; the kernel says EINVAL."""
    n = _online_nodes()[0]
    bundle.config["linux"]["memoryPolicy"] = {"mode": "MPOL_INTERLEAVE", "nodes": str(n),
                                              "flags": ["MPOL_F_NUMA_BALANCING"]}
    res = bundle.run(["true"])
    assert res.returncode != 0
    assert res.stderr.startswith("onggi: linux.memoryPolicy: set_mempolicy(MPOL_INTERLEAVE")
    assert "invalid argument" in res.stderr and len(res.stderr.splitlines()) == 1


def test_all_together_and_inherited_by_children(bundle):
    """Children of the user process keep what it was given."""
    cpus = sorted(os.sched_getaffinity(0))
    bundle.config["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 3}
    bundle.config["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 6}
    bundle.config["process"]["execCPUAffinity"] = {"final": str(cpus[-1])}
    res = bundle.sh("grep -E '^(policy|prio) ' /proc/self/sched; ionice -p $$; "
                    "grep Cpus_allowed_list /proc/self/status")
    assert res.returncode == 0, res.stderr
    assert _sched(res.stdout) == {"policy": "3", "prio": "123"}
    assert "best-effort: prio 6" in res.stdout
    assert _allowed(res.stdout) == str(cpus[-1])


def _host_lacks(cap: str) -> bool:
    from runtime.spec import CAP_NUMBER

    with open("/proc/self/status") as f:
        bnd = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd"))
    return not bnd >> CAP_NUMBER[cap] & 1


def test_capability_the_runtime_lacks_is_named(bundle):
    """The conformance suite's process_capabilities asks for every capability; on a host
    whose bounding set lacks one, the error names the set and the capability."""
    missing = next((c for c in ("CAP_SYS_RESOURCE", "CAP_BPF", "CAP_PERFMON",
                                "CAP_CHECKPOINT_RESTORE") if _host_lacks(c)), None)
    if missing is None:
        pytest.skip("the host's bounding set has every capability tried")
    caps = ["CAP_KILL", missing]
    bundle.config["process"]["capabilities"] = {"bounding": caps, "effective": caps,
                                                "permitted": caps}
    res = bundle.run(["true"])
    assert res.returncode != 0
    assert res.stderr == (f"onggi: process.capabilities.permitted: {missing} not in the "
                          "runtime's own capability set (the host's bounding set lacks it; "
                          "capset: operation not permitted)\n")


def test_effective_outside_permitted_is_named(bundle):
    bundle.config["process"]["capabilities"] = {"bounding": ["CAP_KILL"],
                                                "effective": ["CAP_KILL", "CAP_CHOWN"],
                                                "permitted": ["CAP_KILL"]}
    res = bundle.run(["true"])
    assert res.returncode != 0
    assert res.stderr.startswith("onggi: process.capabilities.effective: CAP_CHOWN not in "
                                 "process.capabilities.permitted")
