"""One pod's life through crictl, step by step, each checking its real effect.

The steps run in order on one pod and one container (as kubelet drives them); a step whose
pod or container an earlier step failed to make fails too, saying so."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from engines import cgroups
from engines.common import StepFailed, called, expect, ns_of, runtime_calls, wait_for
from engines.image import IMAGE
from engines.steps import Step, collector

from .node import Node

STEPS: list[Step] = []
step = collector("cri", STEPS)

MEMORY = 64 << 20
CPU_QUOTA, CPU_PERIOD = 50000, 100000
COMMAND = ["sh", "-c", "echo started; trap 'echo got-TERM; exit 0' TERM; "
           "while :; do sleep 0.1; done"]


class Pod:
    """The pod and container the steps share."""

    def __init__(self, node: Node):
        self.node = node
        self.pod_id = ""
        self.cid = ""
        self.files = node.base / "pod-files"
        self.files.mkdir(exist_ok=True)
        uid = uuid.uuid4().hex
        self.pod_config = self._write("pod.json", {
            "metadata": {"name": "onggi-pod", "namespace": "default", "uid": uid,
                         "attempt": 0},
            "hostname": "onggi-pod",
            "log_directory": str(node.base / "logs" / uid),
            "linux": {"cgroup_parent": node.cgroup_parent}})
        self.ctr_config = self._write("container.json", {
            "metadata": {"name": "main"}, "image": {"image": IMAGE},
            "command": COMMAND, "log_path": "main.log",
            "linux": {"resources": {"memory_limit_in_bytes": MEMORY,
                                    "cpu_quota": CPU_QUOTA, "cpu_period": CPU_PERIOD}}})

    def _write(self, name: str, obj: dict) -> Path:
        path = self.files / name
        path.write_text(json.dumps(obj, indent=1))
        return path

    def need_pod(self) -> str:
        if not self.pod_id:
            raise StepFailed("no pod: runp failed")
        return self.pod_id

    def need_container(self) -> str:
        if not self.cid:
            raise StepFailed("no container: create failed")
        return self.cid

    def inspect(self, kind: str, ident: str) -> dict:
        return json.loads(self.node.crictl(kind, "-o", "json", ident).stdout)

    def pid(self) -> int:
        return int(self.inspect("inspect", self.need_container())["info"]["pid"])



@step("runp")
def runp(p: Pod) -> None:
    """`runp --runtime <handler>`: the sandbox is READY, made by the runtime under test,
    with an IP from the CNI bridge's subnet."""
    n = p.node
    p.pod_id = n.crictl("runp", "--runtime", n.runtime.name, str(p.pod_config)).stdout.strip()
    st = p.inspect("inspectp", p.pod_id)
    expect(st["status"]["state"] == "SANDBOX_READY", f"state {st['status']['state']}")
    calls = runtime_calls(n.calls, p.pod_id)
    expect(called(calls, "create") and any(f"rt-{n.runtime.name}/" in c for c in calls),
           f"the sandbox was not created by the {n.runtime.name} handler: {calls}")
    ip = st["status"]["network"]["ip"]
    prefix = n.subnet.rsplit(".", 1)[0] + "."
    expect(ip.startswith(prefix), f"pod IP {ip!r} not in {n.subnet}")


@step("create")
def create(p: Pod) -> None:
    """`create`: the container is CREATED in the pod."""
    pod = p.need_pod()
    p.cid = p.node.crictl("create", pod, str(p.ctr_config), str(p.pod_config)).stdout.strip()
    st = p.inspect("inspect", p.cid)
    expect(st["status"]["state"] == "CONTAINER_CREATED", f"state {st['status']['state']}")


@step("start")
def start(p: Pod) -> None:
    """`start`: RUNNING, in the pod's network namespace."""
    cid = p.need_container()
    p.node.crictl("start", cid)
    st = p.inspect("inspect", cid)
    expect(st["status"]["state"] == "CONTAINER_RUNNING", f"state {st['status']['state']}")
    pid = p.pid()
    sandbox_pid = int(p.inspect("inspectp", p.need_pod())["info"]["pid"])
    expect(ns_of(pid, "net") == ns_of(sandbox_pid, "net"), "not in the pod's network namespace")
    expect(ns_of(pid, "net") != ns_of("self", "net"), "in the host's network namespace")


@step("resources", needs=("cgroups",))
def resources(p: Pod) -> None:
    """The container's cgroup is under the pod's cgroup_parent, with the spec's limits."""
    pid = p.pid()
    path = cgroups.proc_cgroups(pid)["memory" if not cgroups.is_v2() else ""]
    expect(path.startswith(p.node.cgroup_parent + "/"), f"cgroup {path} not under the parent")
    expect(cgroups.memory_limit(pid) == MEMORY, f"memory {cgroups.memory_limit(pid)}")
    expect(cgroups.cpu_quota(pid) == (CPU_QUOTA, CPU_PERIOD), f"cpu {cgroups.cpu_quota(pid)}")


@step("network")
def network(p: Pod) -> None:
    """The container's eth0 holds the pod's IP."""
    ip = p.inspect("inspectp", p.need_pod())["status"]["network"]["ip"]
    pid = p.pid()
    addrs = Path(f"/proc/{pid}/net/fib_trie").read_text()
    expect(ip in addrs, f"pod IP {ip} not on the container's interfaces")


@step("exec", needs=("exec",))
def exec_(p: Pod) -> None:
    """`exec` (sync and streamed) runs in the container and returns its exit code."""
    cid = p.need_container()
    pid = p.pid()
    out = p.node.crictl("exec", "-s", cid, "sh", "-c", "for k in mnt net pid; do "
                        "readlink /proc/self/ns/$k; done").stdout.split()
    want = [ns_of(pid, k) for k in ("mnt", "net", "pid")]
    expect(out == want, f"exec's namespaces {out} are not the container's {want}")
    # crictl 1.36 exits 1 for any non-zero exec status, and names the status in words
    res = p.node.crictl("exec", "-s", cid, "sh", "-c", "exit 3", check=False)
    expect(res.returncode == 1 and "exited with 3" in res.stderr,
           f"sync exec of exit 3: exit {res.returncode}: {res.stderr}")
    # streamed (SPDY through containerd's stream server): crictl reports the code in words
    res = p.node.crictl("exec", cid, "sh", "-c", "echo streamed; exit 3", check=False)
    expect("streamed" in res.stdout and "exit code 3" in res.stderr,
           f"streamed exec: output {res.stdout!r}: {res.stderr}")


@step("logs")
def logs(p: Pod) -> None:
    """`logs` holds what the container wrote."""
    cid = p.need_container()
    wait_for(lambda: "started" in p.node.crictl("logs", cid).stdout, "'started' in the log")


@step("stats", needs=("cgroups",))
def stats(p: Pod) -> None:
    """`stats` reads the container's own cgroup: some memory in use, under its 64 MiB."""
    cid = p.need_container()
    st = json.loads(p.node.crictl("stats", "-o", "json", "--id", cid).stdout)["stats"][0]
    used = int(st["memory"]["workingSetBytes"]["value"])
    expect(0 < used < MEMORY, f"working set {used}: not the container's cgroup")
    expect(st["attributes"]["id"] == cid, "stats of another container")


@step("stop")
def stop(p: Pod) -> None:
    """`stop` delivers TERM (the trap exits 0) and the container is EXITED."""
    cid = p.need_container()
    pid = p.pid()
    t0 = time.monotonic()
    p.node.crictl("stop", "--timeout", "10", cid)
    expect(time.monotonic() - t0 < 8, "stop waited for the timeout: TERM not delivered")
    st = p.inspect("inspect", cid)["status"]
    expect(st["state"] == "CONTAINER_EXITED", f"state {st['state']}")
    expect(st["exitCode"] == 0, f"exit code {st['exitCode']}")
    expect(not Path(f"/proc/{pid}").exists(), f"pid {pid} still there")


@step("rm")
def rm(p: Pod) -> None:
    """`rm`: the container is gone from crictl and from the runtime's state."""
    cid = p.need_container()
    p.node.crictl("rm", cid)
    expect(cid not in p.node.crictl("ps", "-a", "-q").stdout.split(), "still listed")
    calls = runtime_calls(p.node.calls, cid)
    expect(called(calls, "delete"), f"the runtime was not asked to delete it: {calls[-2:]}")


@step("stopp")
def stopp(p: Pod) -> None:
    """`stopp`: the sandbox is NOTREADY and its pause process gone."""
    pod = p.need_pod()
    pid = int(p.inspect("inspectp", pod)["info"]["pid"])
    p.node.crictl("stopp", pod)
    st = p.inspect("inspectp", pod)["status"]
    expect(st["state"] == "SANDBOX_NOTREADY", f"state {st['state']}")
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), f"pause pid {pid} to go")


@step("rmp")
def rmp(p: Pod) -> None:
    """`rmp`: the pod is gone."""
    pod = p.need_pod()
    p.node.crictl("rmp", pod)
    expect(pod not in p.node.crictl("pods", "-q").stdout.split(), "pod still listed")
