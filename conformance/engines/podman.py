"""podman 4.3 with the runtime under test: private configs, the busybox image, the steps."""

from __future__ import annotations

import json
import os
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
    ns_of,
    run,
    runtime_calls,
    unique,
    wait_for,
    write_wrapper,
)
from .image import IMAGE, rootfs_tar
from .steps import Step, collector

PACKAGES = ["podman", "conmon", "netavark", "containernetworking-plugins", "catatonit",
            "iptables", "busybox-static", "util-linux", "bsdutils"]
STEPS: list[Step] = []
step = collector("podman", STEPS)

STORAGE_CONF = """\
[storage]
driver = "overlay"
runroot = "{base}/runroot"
graphroot = "{base}/graphroot"
"""

# default_ulimits: podman gives root containers nofile=1048576, above this machine's hard
# limit (20000) and without CAP_SYS_RESOURCE to raise it, so prlimit() would fail.
CONTAINERS_CONF = """\
[containers]
log_driver = "k8s-file"
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[network]
network_backend = "netavark"
network_config_dir = "{base}/networks"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{base}/events.log"
tmp_dir = "{base}/tmp"
volume_path = "{base}/volumes"
lock_type = "file"
runtime = "{name}"
runtime_supports_json = ["crun", "runc", "kata", "runsc", "krun", "{name}"]
runtime_supports_nocgroups = ["crun", "krun"]

[engine.runtimes]
{name} = ["{wrapper}"]
"""


class Podman:
    """podman with private storage and configs under `work`, running `runtime` through a
    logging wrapper that adds a private --root (podman passes none)."""

    def __init__(self, runtime: Runtime, work: Workdir, record_dir: Path | None = None):
        self.runtime = runtime
        self.work = work
        self.base = work.path / "podman"
        self.calls = self.base / "runtime-calls.log"
        self.rt_root = self.base / "rt-state"
        self.record_dir = record_dir
        self.names: list[str] = []

    def setup(self) -> None:
        for d in ("runroot", "graphroot", "networks", "tmp", "volumes", "bin"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        wrapper = write_wrapper(self.base / "bin" / self.runtime.name, self.runtime,
                                self.calls, root=self.rt_root, record_dir=self.record_dir)
        fmt = dict(base=self.base, name=self.runtime.name, wrapper=wrapper)
        (self.base / "storage.conf").write_text(STORAGE_CONF.format(**fmt))
        (self.base / "containers.conf").write_text(CONTAINERS_CONF.format(**fmt))
        self.env = {"PATH": SBIN_PATH, "HOME": os.environ.get("HOME", "/root"),
                    "CONTAINERS_CONF": str(self.base / "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": str(self.base / "storage.conf"),
                    "TERM": "xterm"}
        before = cgroups.existing("libpod_parent")
        self.work.on_cleanup("podman cgroups", lambda: [
            cgroups.remove_we_made(rel, before) for rel in ("libpod_parent/conmon",
                                                            "libpod_parent")])
        self.work.on_cleanup("podman containers", self.remove_all)
        self("import", "--change", 'CMD ["/bin/sh"]', str(rootfs_tar(self.work.path)), IMAGE)

    # cwd: conmon runs there and drops an `oom` file there when a container is OOM-killed
    def __call__(self, *args: str, check: bool = True, timeout: float = 60):
        return run(["podman", *args], check=check, timeout=timeout, env=self.env,
                   cwd=str(self.base))

    def pty(self, *args: str):
        return in_pty(["podman", *args], env=self.env, cwd=str(self.base))

    def name(self) -> str:
        n = unique("pm-")
        self.names.append(n)
        return n

    def run_d(self, *args: str, cmd: tuple[str, ...] = ("sleep", "1000")) -> str:
        """`podman run -d` of cmd with options `args`; returns the container's name."""
        n = self.name()
        self("run", "-d", "--name", n, *args, IMAGE, *cmd)
        return n

    def inspect(self, name: str, fmt: str) -> str:
        return self("inspect", "--format", fmt, name).stdout.strip()

    def pid(self, name: str) -> int:
        pid = int(self.inspect(name, "{{.State.Pid}}"))
        expect(pid > 0, f"{name}: inspect gives no pid")
        return pid

    def wait_exited(self, name: str, timeout: float = 15) -> int:
        wait_for(lambda: self.inspect(name, "{{.State.Status}}") in ("exited", "stopped"),
                 f"{name} to exit", timeout)
        return int(self.inspect(name, "{{.State.ExitCode}}"))

    def remove_all(self) -> None:
        """rm -f every container this run made, then the netns files podman may leave."""
        res = self("ps", "-aq", "--no-trunc", check=False)
        ids = res.stdout.split()
        netns = [self.inspect(i, "{{.NetworkSettings.SandboxKey}}") for i in ids]
        if ids:
            self("rm", "-f", "-t", "0", *ids, check=False, timeout=120)
        for ns in filter(None, netns):
            if Path(ns).exists():
                run(["umount", ns], check=False)
                Path(ns).unlink(missing_ok=True)
        leftover = run([self.runtime.path, "--root", str(self.rt_root), "list", "-q"],
                       check=False).stdout.split()
        for cid in leftover:
            run([self.runtime.path, "--root", str(self.rt_root), "delete", "--force", cid],
                check=False)



# ---- lifecycle ----

@step("run-rm")
def run_rm(p: Podman) -> None:
    """`run --rm` prints the output, went through the runtime under test, leaves nothing."""
    n = p.name()
    cidfile = p.base / f"{n}.cid"
    out = p("run", "--rm", "--name", n, "--cidfile", str(cidfile), IMAGE,
            "echo", "hello from busybox").stdout
    expect(out == "hello from busybox\n", f"output {out!r}")
    calls = runtime_calls(p.calls, cidfile.read_text().strip())
    expect(called(calls, "create") and called(calls, "start"),
           f"the runtime under test was not called for create/start: {calls}")
    expect(p("ps", "-a", "-q", "--filter", f"name={n}").stdout.strip() == "",
           "container still listed after --rm")


@step("exit-code")
def exit_code(p: Podman) -> None:
    """`run` exits with the container's exit status (0 and 3)."""
    expect(p("run", "--rm", IMAGE, "true", check=False).returncode == 0, "true: non-zero")
    res = p("run", "--rm", IMAGE, "sh", "-c", "exit 3", check=False)
    expect(res.returncode == 3, f"exit 3 gave {res.returncode}: {res.stderr}")


@step("missing-binary-127")
def missing_binary(p: Podman) -> None:
    """A command not in the image: exit 127 and an error that names it."""
    res = p("run", "--rm", IMAGE, "/no/such/binary", check=False)
    expect(res.returncode == 127, f"exit {res.returncode}, want 127: {res.stderr}")
    expect("/no/such/binary" in res.stderr, f"error does not name the binary: {res.stderr}")


@step("not-executable-126")
def not_executable(p: Podman) -> None:
    """A file without exec permission: exit 126 and 'permission denied'."""
    res = p("run", "--rm", IMAGE, "/etc/passwd", check=False)
    expect(res.returncode == 126, f"exit {res.returncode}, want 126: {res.stderr}")
    expect("permission denied" in res.stderr.lower(), f"error: {res.stderr}")


@step("run-detached")
def run_detached(p: Podman) -> None:
    """`run -d`: running, its pid is the container's sleep, in new namespaces."""
    n = p.run_d()
    expect(p.inspect(n, "{{.State.Status}}") == "running", "not running")
    pid = p.pid(n)
    is_sleep(pid)
    for kind in ("pid", "mnt", "uts", "ipc", "net"):
        expect(ns_of(pid, kind) != ns_of("self", kind), f"{kind} namespace is the host's")


@step("exec", needs=("exec",))
def exec_(p: Podman) -> None:
    """`exec` runs in the container's namespaces and cgroups and prints its output."""
    n = p.run_d()
    pid = p.pid(n)
    check_exec_probe(p("exec", n, "sh", "-c", EXEC_PROBE).stdout, pid)


@step("exec-exit-code", needs=("exec",))
def exec_exit_code(p: Podman) -> None:
    """`exec` exits with the process's status, 127 for a missing binary."""
    n = p.run_d()
    res = p("exec", n, "sh", "-c", "exit 5", check=False)
    expect(res.returncode == 5, f"exit {res.returncode}, want 5: {res.stderr}")
    res = p("exec", n, "/no/such/binary", check=False)
    expect(res.returncode == 127, f"missing binary: exit {res.returncode}, want 127")


@step("exec-tty", needs=("exec",))
def exec_tty(p: Podman) -> None:
    """`exec -it` under a pty gets a terminal of its own."""
    n = p.run_d()
    res = p.pty("exec", "-it", n, "sh", "-c", "tty; test -t 0 && test -t 1 && echo both-tty")
    expect(res.returncode == 0, f"exit {res.returncode}: {res.stdout}")
    expect("/dev/pts/" in res.stdout and "both-tty" in res.stdout, f"output {res.stdout!r}")


@step("pause-unpause", needs=("pause", "cgroups"))
def pause_unpause(p: Podman) -> None:
    """`pause` freezes the container's cgroup (and status says paused); `unpause` thaws it."""
    n = p.run_d()
    pid = p.pid(n)
    p("pause", n)
    try:
        expect(p.inspect(n, "{{.State.Status}}") == "paused", "status is not paused")
        expect(cgroups.frozen(pid), "the container's freezer cgroup is not FROZEN")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        expect(state in ("D", "S", "T"), f"process state {state}")
    finally:
        p("unpause", n, check=False)
    expect(p.inspect(n, "{{.State.Status}}") == "running", "status is not running after unpause")
    expect(not cgroups.frozen(pid), "still frozen after unpause")


@step("update-memory", needs=("update", "cgroups"))
def update_memory(p: Podman) -> None:
    """`update --memory 128m` changes the limit in the container's own cgroup."""
    n = p.run_d("--memory", "64m")
    pid = p.pid(n)
    p("update", "--memory", "128m", n)
    expect(cgroups.memory_limit(pid) == 128 << 20,
           f"host cgroup memory limit {cgroups.memory_limit(pid)}, want {128 << 20}")


@step("top")
def top(p: Podman) -> None:
    """`top` lists the container's processes (with a shell and its child)."""
    n = p.run_d(cmd=("sh", "-c", "sleep 1001 & wait"))
    out = wait_for(lambda: (r := p("top", n, "pid", "args").stdout) and "sleep 1001" in r and r,
                   "sleep 1001 in podman top")
    rows = out.splitlines()
    expect(rows[0].split() == ["PID", "COMMAND"], f"header {rows[0]!r}")
    expect(any("sh -c sleep 1001 & wait" in r for r in rows[1:]), f"no shell row: {out}")


@step("stats", needs=("cgroups",))
def stats(p: Podman) -> None:
    """`stats --no-stream` shows the container's own cgroup: its 64 MiB limit and 2 pids."""
    n = p.run_d("--memory", "64m", cmd=("sh", "-c", "sleep 1002 & wait"))
    wait_for(lambda: len(cgroups.procs(p.pid(n))) == 2, "two processes in the pids cgroup", 5)
    out = p("stats", "--no-stream", "--format", "json", n).stdout
    st = json.loads(out)[0]
    expect(st["mem_usage"].endswith("/ 67.11MB"), f"mem_usage {st['mem_usage']!r}: "
           "not the container's 64 MiB limit (conmon's cgroup has none)")
    expect(str(st["pids"]) == "2", f"pids {st['pids']!r}, want 2 (sh and sleep)")


@step("stop-trapped-term")
def stop_trapped(p: Podman) -> None:
    """`stop` sends TERM; a process that traps it exits with its own status, quickly."""
    n = p.run_d(cmd=("sh", "-c", "trap 'exit 7' TERM; while :; do sleep 0.1; done"))
    t0 = time.monotonic()
    p("stop", "-t", "10", n)
    took = time.monotonic() - t0
    expect(p.inspect(n, "{{.State.ExitCode}}") == "7", "exit code is not the trap's 7")
    expect(took < 5, f"stop took {took:.1f}s: TERM did not reach the trap")


@step("stop-ignored-term")
def stop_ignored(p: Podman) -> None:
    """`stop -t 1` of a process that ignores TERM kills it after the timeout (137)."""
    n = p.run_d(cmd=("sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"))
    pid = p.pid(n)
    t0 = time.monotonic()
    p("stop", "-t", "1", n)
    took = time.monotonic() - t0
    expect(p.inspect(n, "{{.State.ExitCode}}") == "137", "exit code is not 137 (KILL)")
    expect(took >= 1, f"stop took {took:.2f}s: it did not wait the timeout")
    expect(not Path(f"/proc/{pid}").exists(), f"pid {pid} still there")


@step("kill")
def kill(p: Podman) -> None:
    """`kill` (KILL) ends the process: exit 137, pid gone; `kill -s USR1` reaches a trap."""
    n = p.run_d(cmd=("sh", "-c", "trap 'exit 10' USR1; while :; do sleep 0.1; done"))
    p("kill", "-s", "USR1", n)
    expect(p.wait_exited(n) == 10, "USR1 did not reach the trap (exit 10)")
    n = p.run_d()
    pid = p.pid(n)
    p("kill", n)
    expect(p.wait_exited(n) == 137, "exit code is not 137")
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), f"pid {pid} to go")


@step("rm-force")
def rm_force(p: Podman) -> None:
    """`rm -f` of a running container: process, podman record and runtime state all gone."""
    n = p.run_d()
    pid = p.pid(n)
    cid = p.inspect(n, "{{.Id}}")
    p("rm", "-f", "-t", "0", n)
    expect(not Path(f"/proc/{pid}").exists(), f"pid {pid} still there")
    expect(p("ps", "-aq", "--filter", f"name={n}").stdout.strip() == "", "still listed")
    state = run([p.runtime.path, "--root", str(p.rt_root), "list", "-q"]).stdout.split()
    expect(cid not in state, f"{cid} left in the runtime's state dir")


@step("run-tty")
def run_tty(p: Podman) -> None:
    """`run -it` under a pty: the container's stdio is a terminal."""
    res = p.pty("run", "-it", "--rm", IMAGE, "sh", "-c",
                "tty; test -t 0 && test -t 1 && echo both-tty")
    expect(res.returncode == 0, f"exit {res.returncode}: {res.stdout}")
    expect("/dev/pts/0\nboth-tty" in res.stdout, f"output {res.stdout!r}")


# ---- resources ----

def _limits_seen(p: Podman, *opts: str, key: str) -> tuple[str, int]:
    """A container with `opts`: (what it reads from its own cgroup mount, its host pid)."""
    n = p.run_d(*opts, cmd=("sh", "-c", f"cat {cgroups.inside_paths()[key]}; exec sleep 1000"))
    pid = p.pid(n)
    inside = wait_for(lambda: p("logs", n).stdout.strip(), f"{n} to print its limit")
    return str(inside), pid


@step("memory-limit", needs=("cgroups",))
def memory_limit(p: Podman) -> None:
    """`--memory 64m`: the limit inside and on the host, and enforced (OOM kill, 137)."""
    inside, pid = _limits_seen(p, "--memory", "64m", key="memory")
    expect(inside in ("67108864",), f"inside the container: {inside}")
    expect(cgroups.memory_limit(pid) == 64 << 20, f"host: {cgroups.memory_limit(pid)}")
    res = p("run", "--rm", "--memory", "32m", "--memory-swap", "32m", IMAGE,
            "dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1", check=False)
    expect(res.returncode == 137, f"128 MiB in a 32 MiB container: exit {res.returncode}")


@step("pids-limit", needs=("cgroups",))
def pids_limit(p: Podman) -> None:
    """`--pids-limit 20`: pids.max inside and on the host."""
    inside, pid = _limits_seen(p, "--pids-limit", "20", key="pids")
    expect(inside == "20", f"inside the container: {inside}")
    expect(cgroups.pids_limit(pid) == 20, f"host: {cgroups.pids_limit(pid)}")


@step("cpus-limit", needs=("cgroups",))
def cpus_limit(p: Podman) -> None:
    """`--cpus 0.5`: a 50 ms quota per 100 ms period inside and on the host."""
    inside, pid = _limits_seen(p, "--cpus", "0.5", key="cpu")
    expect(inside.split()[0] == "50000", f"inside the container: {inside}")
    expect(cgroups.cpu_quota(pid) == (50000, 100000), f"host: {cgroups.cpu_quota(pid)}")


# ---- network ----

@step("network-none")
def network_none(p: Podman) -> None:
    """`--network none`: a netns of its own with only lo."""
    out = p("run", "--rm", "--network", "none", IMAGE, "sh", "-c",
            "ls /sys/class/net; readlink /proc/self/ns/net").stdout.split()
    expect(out[:-1] == ["lo"], f"interfaces {out[:-1]}")
    expect(out[-1] != ns_of("self", "net"), "the host's network namespace")


@step("network-bridge")
def network_bridge(p: Podman) -> None:
    """The default network: eth0 with a 10.88.0.0/16 address and a route via the bridge."""
    out = p("run", "--rm", IMAGE, "sh", "-c", "ip -o -4 addr show eth0; ip route").stdout
    expect(" inet 10.88." in out, f"no 10.88.x.x address on eth0: {out}")
    expect("default via 10.88.0.1" in out, f"no default route via the bridge: {out}")


# ---- security ----

@step("user")
def user(p: Podman) -> None:
    """`--user`: uid/gid as given, by number and by name from the image's passwd."""
    out = p("run", "--rm", "--user", "1000:1001", IMAGE, "sh", "-c", "id -u; id -g").stdout
    expect(out.split() == ["1000", "1001"], f"1000:1001: {out}")
    out = p("run", "--rm", "--user", "nobody", IMAGE, "sh", "-c", "id -u; id -g").stdout.split()
    expect(out == ["65534", "65534"], f"nobody: {out}")


@step("read-only")
def read_only(p: Podman) -> None:
    """`--read-only`: / refuses writes, /tmp (a tmpfs) takes them."""
    res = p("run", "--rm", "--read-only", IMAGE, "sh", "-c",
            "touch /x 2>&1; echo rc=$?; touch /tmp/x && echo tmp-ok", check=False)
    expect("Read-only file system" in res.stdout and "rc=1" in res.stdout,
           f"write to / was not refused: {res.stdout}")
    expect("tmp-ok" in res.stdout, f"/tmp is not writable: {res.stdout}")


@step("cap-drop-all")
def cap_drop_all(p: Podman) -> None:
    """`--cap-drop ALL`: no capabilities in any set; root cannot chown."""
    out = p("run", "--rm", "--cap-drop", "ALL", IMAGE, "sh", "-c",
            "grep ^Cap /proc/self/status; chown 1 /tmp 2>&1; echo rc=$?").stdout
    for s in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        expect(f"{s}:\t0000000000000000" in out, f"{s} not empty: {out}")
    expect("Operation not permitted" in out and "rc=1" in out, f"chown allowed: {out}")


# swapoff is one of the calls the default profile refuses outright, whatever the caps: with
# CAP_SYS_ADMIN the kernel itself answers EINVAL for a file that is no swap area.
SWAPOFF = "grep ^Seccomp: /proc/self/status; swapoff /etc/passwd"


@step("seccomp-default")
def seccomp_default(p: Podman) -> None:
    """The default profile is loaded (filter mode) and refuses swapoff with EPERM."""
    res = p("run", "--rm", "--cap-add", "SYS_ADMIN", IMAGE, "sh", "-c", SWAPOFF, check=False)
    expect("Seccomp:\t2" in res.stdout, f"no seccomp filter: {res.stdout}")
    expect("Operation not permitted" in res.stderr, f"swapoff not refused: {res.stderr}")


@step("seccomp-unconfined")
def seccomp_unconfined(p: Podman) -> None:
    """`--security-opt seccomp=unconfined`: no filter; swapoff reaches the kernel (EINVAL)."""
    res = p("run", "--rm", "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
            IMAGE, "sh", "-c", SWAPOFF, check=False)
    expect("Seccomp:\t0" in res.stdout, f"a filter is loaded: {res.stdout}")
    expect("Invalid argument" in res.stderr, f"swapoff did not reach the kernel: {res.stderr}")


# ---- observing ----

@step("logs")
def logs(p: Podman) -> None:
    """`logs` of a detached container holds its stdout and stderr lines."""
    n = p.run_d(cmd=("sh", "-c", "echo to-stdout; echo to-stderr >&2"))
    expect(p.wait_exited(n) == 0, "container did not exit 0")
    res = p("logs", n)
    expect("to-stdout" in res.stdout, f"stdout: {res.stdout!r}")
    expect("to-stderr" in res.stderr, f"stderr: {res.stderr!r}")


@step("ps-inspect")
def ps_inspect(p: Podman) -> None:
    """`ps` and `inspect` follow the state: Up/running with the runtime's name, then Exited."""
    n = p.run_d(cmd=("sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"))
    row = p("ps", "--filter", f"name={n}", "--format", "{{.Names}} {{.Status}}").stdout
    expect(row.startswith(f"{n} Up"), f"ps: {row!r}")
    runtime = p.inspect(n, "{{.OCIRuntime}}")
    expect(runtime == p.runtime.name, f"OCIRuntime {runtime!r}")
    p("stop", n)
    expect(p.inspect(n, "{{.State.Status}}") == "exited", "not exited after stop")
    row = p("ps", "-a", "--filter", f"name={n}", "--format", "{{.Status}}").stdout
    expect(row.startswith("Exited (0)"), f"ps -a: {row!r}")
    expect(p("ps", "-q", "--filter", f"name={n}").stdout.strip() == "",
           "still in plain ps after stop")


def ensure_installed() -> None:
    ensure_packages(PACKAGES)


def setup(runtime: Runtime, work: Workdir, record_dir: Path | None = None) -> Podman:
    p = Podman(runtime, work, record_dir)
    p.setup()
    return p
