"""containerd 1.6 on its own socket, driven with ctr, with the runtime under test."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from . import cgroups
from .common import (
    EXEC_PROBE,
    SBIN_PATH,
    Runtime,
    Workdir,
    called,
    check_exec_probe,
    ensure_packages,
    expect,
    in_pty,
    is_sleep,
    kill_pid,
    ns_of,
    run,
    runtime_calls,
    unique,
    wait_for,
    write_wrapper,
)
from .image import IMAGE
from .steps import Step, collector

PACKAGES = ["containerd", "podman", "busybox-static", "util-linux", "bsdutils"]
STEPS: list[Step] = []
step = collector("containerd", STEPS)

# every containerd of ours: its own root, state, sockets and opt dir; {top} holds more
# top-level keys (they must come before the first table)
CONFIG = """\
version = 2
root = "{base}/root"
state = "{base}/state"
{top}
[grpc]
  address = "{base}/containerd.sock"
[ttrpc]
  address = "{base}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"
"""


def start_containerd(work: Workdir, base: Path, config: str, path_dirs: list[Path]) -> Path:
    """Start containerd with `config`, registering its stop; returns its socket."""
    for d in ("root", "state", "opt"):
        (base / d).mkdir(parents=True, exist_ok=True)
    (base / "config.toml").write_text(config)
    sock = base / "containerd.sock"
    env = dict(os.environ, PATH=":".join([*map(str, path_dirs), SBIN_PATH]))
    with open(base / "containerd.log", "ab") as log:
        proc = subprocess.Popen(["containerd", "--config", str(base / "config.toml")],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                start_new_session=True, close_fds=True)
    work.on_cleanup("shims", lambda: kill_shims(sock))
    work.on_cleanup("containerd", lambda: kill_pid(proc.pid))
    ok = wait_for(lambda: proc.poll() is not None or run(
        ["ctr", "--address", str(sock), "version"], check=False).returncode == 0,
        "containerd to answer", 30)
    if proc.poll() is not None or not ok:
        tail = (base / "containerd.log").read_text()[-2000:]
        raise RuntimeError(f"containerd exited ({proc.returncode}): {tail}")
    return sock


def kill_shims(sock: Path) -> None:
    """The shims our containerd started (their command line names its socket)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd[0].endswith(b"containerd-shim-runc-v2") and str(sock).encode() in cmd:
            kill_pid(int(d.name), grace=2)


class Ctr:
    """ctr against our containerd, in a namespace of our own; containers run the runtime
    under test through a logging wrapper (`--runc-binary`, or `runc` on containerd's PATH)."""

    def __init__(self, runtime: Runtime, work: Workdir, record_dir: Path | None = None):
        self.runtime = runtime
        self.work = work
        self.base = work.path / "containerd"
        self.ns = unique("onggi-e-")
        self.calls = self.base / "runtime-calls.log"
        self.rt_root = self.base / "rt-root"
        self.fifo = self.base / "fifo"
        self.record_dir = record_dir
        self.ids: list[str] = []

    def setup(self) -> None:
        bindir = self.base / "bin"
        for d in (self.rt_root, self.fifo, bindir):
            d.mkdir(parents=True, exist_ok=True)
        self.wrapper = write_wrapper(bindir / f"{self.runtime.name}-logged", self.runtime,
                                     self.calls, record_dir=self.record_dir)
        # what the shim runs when a container has no BinaryName: `runc` from containerd's PATH
        write_wrapper(bindir / "runc", self.runtime, self.calls, record_dir=self.record_dir)
        self.sock = start_containerd(self.work, self.base, CONFIG.format(
            base=self.base, top='disabled_plugins = ["io.containerd.grpc.v1.cri"]'),
                                     [bindir])
        self.work.on_cleanup("containerd cgroups", lambda: cgroups.remove_we_made(
            self.ns, set(), recursive=True))
        self.work.on_cleanup("containerd containers", self.remove_all)
        self.rt = ["--runc-binary", str(self.wrapper), "--runc-root", str(self.rt_root),
                   "--fifo-dir", str(self.fifo)]

    def import_image(self, archive: Path) -> None:
        self("image", "import", str(archive))

    def __call__(self, *args: str, check: bool = True, timeout: float = 60):
        return run(self.argv(*args), check=check, timeout=timeout)

    def argv(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.sock), "--namespace", self.ns, *args]

    def new_id(self) -> str:
        cid = unique("ct-")
        self.ids.append(cid)
        return cid

    def run_d(self, *opts: str, cmd: tuple[str, ...] = ("sleep", "1000")) -> str:
        cid = self.new_id()
        self("run", "-d", *self.rt, *opts, IMAGE, cid, *cmd)
        return cid

    def task(self, cid: str) -> tuple[int, str]:
        """(pid, status) from `ctr task ls`."""
        for line in self("task", "ls").stdout.splitlines()[1:]:
            f = line.split()
            if f[0] == cid:
                return int(f[1]), f[2]
        raise AssertionError(f"{cid}: no task")

    def exec(self, cid: str, *cmd: str, check: bool = True):
        return self("task", "exec", "--fifo-dir", str(self.fifo), "--exec-id", unique("e"),
                    cid, *cmd, check=check)

    def remove_all(self) -> None:
        for cid in self("container", "ls", "-q", check=False).stdout.split():
            self("task", "delete", "-f", cid, check=False)
            self("container", "rm", cid, check=False)
        for root in (self.rt_root / self.ns, Path("/run/containerd/runc") / self.ns):
            for cid in run([self.runtime.path, "--root", str(root), "list", "-q"],
                           check=False).stdout.split():
                run([self.runtime.path, "--root", str(root), "delete", "--force", cid],
                    check=False)
        shutil.rmtree(Path("/run/containerd/runc", self.ns), ignore_errors=True)


def setup(runtime: Runtime, work: Workdir, record_dir: Path | None = None) -> Ctr:
    """containerd plus the busybox image, imported from a docker-archive podman writes."""
    from .podman import Podman

    pm = Podman(runtime, work)
    pm.setup()
    archive = work.path / "bb-docker.tar"
    pm("save", "--format", "docker-archive", "-o", str(archive), IMAGE)
    c = Ctr(runtime, work, record_dir)
    c.setup()
    c.import_image(archive)
    return c


def ensure_installed() -> None:
    ensure_packages(PACKAGES)


def exit_status(c: Ctr, cid: str) -> int:
    """`task delete` of a stopped task; ctr 1.6 warns of a non-zero status and exits 0."""
    res = c("task", "delete", cid)
    found = re.search(r"exit with non-zero exit code (\d+)", res.stderr)
    return int(found.group(1)) if found else 0



def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


# ---- lifecycle ----

@step("run-rm")
def run_rm(c: Ctr) -> None:
    """`run --rm` prints the output through the runtime under test and leaves nothing."""
    cid = c.new_id()
    out = c("run", "--rm", *c.rt, IMAGE, cid, "echo", "hello from busybox").stdout
    expect(out == "hello from busybox\n", f"output {out!r}")
    calls = runtime_calls(c.calls, cid)
    expect(called(calls, "create") and called(calls, "start"),
           f"runtime under test not called: {calls}")
    expect(cid not in c("container", "ls", "-q").stdout.split(), "container left behind")
    left = run([c.runtime.path, "--root", str(c.rt_root / c.ns), "list", "-q"]).stdout
    expect(cid not in left.split(), "left in the runtime's state")


@step("run-rm-quick-exit")
def run_rm_quick_exit(c: Ctr) -> None:
    """30 × `run --rm true`: `start` must not lose the race with a process that exits (and
    is reaped by the shim) the moment it is released."""
    for i in range(30):
        res = c("run", "--rm", *c.rt, IMAGE, c.new_id(), "true", check=False)
        expect(res.returncode == 0, f"run {i + 1} of 30: {res.stderr.strip()}")


@step("exit-code")
def exit_code(c: Ctr) -> None:
    """`run` exits with the container's status (0, 3)."""
    expect(c("run", "--rm", *c.rt, IMAGE, c.new_id(), "true", check=False).returncode == 0,
           "true: non-zero")
    res = c("run", "--rm", *c.rt, IMAGE, c.new_id(), "sh", "-c", "exit 3", check=False)
    expect(res.returncode == 3, f"exit {res.returncode}, want 3: {res.stderr}")


@step("missing-binary")
def missing_binary(c: Ctr) -> None:
    """A command not in the image: run fails with the runtime's 'no such file' error."""
    res = c("run", "--rm", *c.rt, IMAGE, c.new_id(), "/no/such/binary", check=False)
    expect(res.returncode != 0, "run succeeded")
    expect("/no/such/binary" in res.stderr and "no such file or directory" in res.stderr,
           f"error: {res.stderr.strip()}")


@step("run-detached")
def run_detached(c: Ctr) -> None:
    """`run -d`: task RUNNING, its pid the container's sleep, in new namespaces."""
    cid = c.run_d()
    pid, status = c.task(cid)
    expect(status == "RUNNING", f"status {status}")
    is_sleep(pid)
    for kind in ("pid", "mnt", "uts", "ipc", "net"):
        expect(ns_of(pid, kind) != ns_of("self", kind), f"{kind} namespace is the host's")


@step("task-ps")
def task_ps(c: Ctr) -> None:
    """`task ps` lists the container's host pids (runtime `ps --format json`)."""
    cid = c.run_d(cmd=("sh", "-c", "sleep 1001 & wait"))
    pid, _ = c.task(cid)
    child = wait_for(lambda: [p for p in Path(f"/proc/{pid}/task/{pid}/children")
                              .read_text().split()], "the shell's child")
    rows = c("task", "ps", cid).stdout.split()
    expect(str(pid) in rows and child[0] in rows, f"task ps {rows}, want {pid} and {child}")


@step("task-exec", needs=("exec",))
def task_exec(c: Ctr) -> None:
    """`task exec` runs in the container's namespaces and cgroups and prints its output."""
    cid = c.run_d()
    pid, _ = c.task(cid)
    check_exec_probe(c.exec(cid, "sh", "-c", EXEC_PROBE).stdout, pid)


@step("task-exec-exit-code", needs=("exec",))
def task_exec_exit_code(c: Ctr) -> None:
    """`task exec` exits with the process's status."""
    cid = c.run_d()
    res = c.exec(cid, "sh", "-c", "exit 4", check=False)
    expect(res.returncode == 4, f"exit {res.returncode}, want 4: {res.stderr}")


@step("task-exec-tty", needs=("exec",))
def task_exec_tty(c: Ctr) -> None:
    """`task exec -t` under a pty gets a terminal."""
    cid = c.run_d()
    res = in_pty(c.argv("task", "exec", "-t", "--fifo-dir", str(c.fifo), "--exec-id",
                        unique("e"), cid, "sh", "-c", "tty; test -t 0 && echo is-tty"))
    expect(res.returncode == 0, f"exit {res.returncode}: {res.stdout}")
    expect("/dev/pts/" in res.stdout and "is-tty" in res.stdout, f"output {res.stdout!r}")


@step("pause-resume", needs=("pause", "cgroups"))
def pause_resume(c: Ctr) -> None:
    """`task pause` freezes the cgroup (status PAUSED); `task resume` thaws it."""
    cid = c.run_d()
    pid, _ = c.task(cid)
    c("task", "pause", cid)
    try:
        expect(c.task(cid)[1] == "PAUSED", f"status {c.task(cid)[1]}")
        expect(cgroups.frozen(pid), "the freezer cgroup is not FROZEN")
    finally:
        c("task", "resume", cid, check=False)
    expect(c.task(cid)[1] == "RUNNING", "not RUNNING after resume")
    expect(not cgroups.frozen(pid), "still frozen after resume")


@step("task-metrics", needs=("cgroups",))
def task_metrics(c: Ctr) -> None:
    """`task metrics` reads the container's own cgroup: its limit and its 2 pids."""
    cid = c.run_d("--memory-limit", str(64 << 20), cmd=("sh", "-c", "sleep 1002 & wait"))
    pid, _ = c.task(cid)
    wait_for(lambda: len(cgroups.procs(pid)) == 2, "two processes in the pids cgroup", 5)
    m = json.loads(c("task", "metrics", "--format", "json", cid).stdout)
    limit = m["memory"]["usage"]["limit"] if "usage" in m.get("memory", {}) else \
        m["memory"]["usage_limit"]
    expect(limit == 64 << 20, f"memory limit {limit}: not the container's own cgroup")
    current = m["pids"]["current"]
    expect(current == 2, f"pids.current {current}, want 2")


@step("task-update", needs=("update", "cgroups"))
def task_update(c: Ctr) -> None:
    """Tasks/Update (gRPC; ctr 1.6 has no command) changes memory and pids on the host."""
    from .tasks_update import update_task

    cid = c.run_d("--memory-limit", str(64 << 20))
    pid, _ = c.task(cid)
    update_task(str(c.sock), c.ns, cid, {"memory": {"limit": 128 << 20},
                                         "pids": {"limit": 77}})
    expect(cgroups.memory_limit(pid) == 128 << 20, f"memory {cgroups.memory_limit(pid)}")
    expect(cgroups.pids_limit(pid) == 77, f"pids {cgroups.pids_limit(pid)}")


@step("task-kill")
def task_kill(c: Ctr) -> None:
    """`task kill -s USR1` reaches a trap (exit 10); `-s KILL` stops a sleep (137)."""
    cid = c.run_d(cmd=("sh", "-c", "trap 'exit 10' USR1; while :; do sleep 0.1; done"))
    c("task", "kill", "-s", "USR1", cid)
    wait_for(lambda: c.task(cid)[1] == "STOPPED", f"{cid} to stop")
    expect(exit_status(c, cid) == 10, "exit status is not 10")
    cid = c.run_d()
    pid, _ = c.task(cid)
    c("task", "kill", "-s", "KILL", cid)
    wait_for(lambda: c.task(cid)[1] == "STOPPED", f"{cid} to stop")
    expect(_gone(pid), f"pid {pid} still there")
    expect(exit_status(c, cid) == 137, "exit status is not 137")


@step("task-delete-force")
def task_delete_force(c: Ctr) -> None:
    """`task delete -f` of a running task: process, task and runtime state gone."""
    cid = c.run_d(cmd=("sh", "-c", "sleep 1003 & wait"))
    pid, _ = c.task(cid)
    c("task", "delete", "-f", cid)
    wait_for(lambda: _gone(pid), f"pid {pid} to go")
    expect(cid not in c("task", "ls", "-q").stdout.split(), "task still listed")
    left = run([c.runtime.path, "--root", str(c.rt_root / c.ns), "list", "-q"]).stdout
    expect(cid not in left.split(), "left in the runtime's state")


@step("run-tty")
def run_tty(c: Ctr) -> None:
    """`run -t` under a pty: the container's stdio is a terminal."""
    res = in_pty(c.argv("run", "-t", "--rm", *c.rt, IMAGE, c.new_id(), "sh", "-c",
                        "tty; test -t 0 && test -t 1 && echo both-tty"))
    expect(res.returncode == 0, f"exit {res.returncode}: {res.stdout}")
    expect("/dev/pts/0" in res.stdout and "both-tty" in res.stdout, f"output {res.stdout!r}")


# ctr 1.6's default spec has no cgroup mount (CRI adds one), so the container cannot read
# its limits: the host's files and the kernel enforcing them are the effect to check.

@step("memory-limit", needs=("cgroups",))
def memory_limit(c: Ctr) -> None:
    """`--memory-limit 64 MiB`: the limit on the host, and enforced (OOM kill, 137)."""
    pid, _ = c.task(c.run_d("--memory-limit", str(64 << 20)))
    expect(cgroups.memory_limit(pid) == 64 << 20, f"host: {cgroups.memory_limit(pid)}")
    res = c("run", "--rm", *c.rt, "--memory-limit", str(32 << 20), IMAGE, c.new_id(),
            "dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1", check=False)
    expect(res.returncode == 137, f"128 MiB in a 32 MiB container: exit {res.returncode}")


@step("cpus-limit", needs=("cgroups",))
def cpus_limit(c: Ctr) -> None:
    """`--cpus 0.5`: a 50 ms quota per 100 ms period on the host."""
    pid, _ = c.task(c.run_d("--cpus", "0.5"))
    expect(cgroups.cpu_quota(pid) == (50000, 100000), f"host: {cgroups.cpu_quota(pid)}")


@step("runc-on-path")
def runc_on_path(c: Ctr) -> None:
    """No BinaryName option: the shim runs `runc` from containerd's PATH, here the runtime
    under test."""
    cid = c.new_id()
    t0 = time.monotonic()
    out = c("run", "--rm", "--fifo-dir", str(c.fifo), IMAGE, cid, "echo", "via PATH").stdout
    expect(out == "via PATH\n", f"output {out!r} ({time.monotonic() - t0:.1f}s)")
    calls = runtime_calls(c.calls, cid)
    expect(called(calls, "create"),
           f"the runtime under test was not called as runc: {calls}")
    expect(any(f"/run/containerd/runc/{c.ns}" in ln for ln in calls),
           "not run with the shim's default root")
