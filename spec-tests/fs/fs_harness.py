"""A fork-based stand-in for the container init, to test rootfs without the rest of onggi.

`run(raw, bundle, args)` parses the config, plans in the parent, forks; the child unshares a
mount namespace (and pid/user/cgroup ones when asked), runs mounts.mount_all and pivot.pivot/finish
exactly as the init does and execs `args` inside. Returns (rc, stdout, stderr).
"""

from __future__ import annotations

import copy
import json
import os
import select
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runtime import launch, messages, spec
from runtime.errors import OnggiError
from runtime.linux import mountplan, mounts, pivot, procfs
from runtime.linux import syscalls as sc

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWNET = 0x40000000
CLONE_NEWIPC = 0x08000000


def default_config() -> dict:
    from runtime.spec_default import default_spec

    cfg = default_spec()
    cfg["process"]["terminal"] = False
    cfg["root"]["readonly"] = False
    # the harness runs as host root: only mount (+pid for a clean /proc) namespaces
    cfg["linux"]["namespaces"] = [{"type": "mount"}, {"type": "pid"}]
    cfg.pop("hostname", None)
    cfg["mounts"] = [m for m in cfg["mounts"] if m["type"] != "cgroup"]
    return cfg


@dataclass
class Result:
    rc: int
    out: str
    err: str


class _Sources:
    """What init._receive_mount_sources needs: the sync socket and the plan."""

    def __init__(self, sock, plan) -> None:
        self.sock, self.plan = sock, plan


def _child(cfg, plan, argv, flags, no_pivot, ready_w, go_r, out_w, err_w, sysctl,
           after_pivot, sock) -> None:
    code = 125
    try:
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        if flags & CLONE_NEWUSER:
            sc.unshare(CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(go_r, 1)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        sc.unshare(flags & ~CLONE_NEWUSER)
        if plan.sources_in_parent:  # as the init: the parent opens the bind sources
            from runtime import init

            sock.send(b"ns")
            init._receive_mount_sources(_Sources(sock, plan))
        if flags & CLONE_NEWPID:
            pid = os.fork()
            if pid:
                _, status = os.waitpid(pid, 0)
                os._exit(os.waitstatus_to_exitcode(status))
        ctx = mounts.mount_all(cfg, plan)
        pivot.pivot(ctx, cfg, no_pivot)
        if after_pivot is not None:
            after_pivot()
        for key, value in sysctl:
            procfs.write("/proc/sys/" + key.replace(".", "/"), value)
        pivot.finish(ctx, cfg, plan)
        os.chdir(cfg.process.cwd if cfg.process else "/")
        os.execve("/bin/busybox", list(argv), {"PATH": "/bin:/sbin:/usr/bin"})
    except BaseException as e:  # noqa: BLE001
        try:
            os.write(2, f"harness: {type(e).__name__}: {e}\n".encode())
        except OSError:
            pass
    os._exit(code)


@dataclass
class Running:
    pid: int
    out_r: int
    err_r: int
    plan: object

    def wait(self, timeout: float = 20) -> Result:
        try:
            out, err = _drain(self.out_r, self.err_r, timeout)
        finally:
            os.close(self.out_r)
            os.close(self.err_r)
            for m in self.plan.mounts:
                if m.tree >= 0:
                    os.close(m.tree)
        _, status = os.waitpid(self.pid, 0)
        return Result(os.waitstatus_to_exitcode(status), out, err)


def start(raw: dict, bundle: Path, argv: list[str], *, no_pivot: bool = False,
          userns: tuple[str, str] | None = None, sysctl: tuple = (),
          after_pivot=None) -> Running:
    """Set up the filesystem for config `raw` and start busybox `argv` inside it."""
    raw = copy.deepcopy(raw)
    raw["process"]["args"] = list(argv)
    cfg = spec.parse(raw, str(bundle))
    plan = mountplan.plan(cfg)
    flags = CLONE_NEWNS
    kinds = {n.type for n in cfg.linux.namespaces}
    for kind, flag in (("pid", CLONE_NEWPID), ("user", CLONE_NEWUSER),
                       ("cgroup", CLONE_NEWCGROUP), ("network", CLONE_NEWNET),
                       ("ipc", CLONE_NEWIPC)):
        if kind in kinds:
            flags |= flag
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    ours, theirs = messages.pair()
    pid = os.fork()
    if pid == 0:
        _child(cfg, plan, argv, flags, no_pivot, ready_w, go_r, out_w, err_w, sysctl,
               after_pivot, theirs)
    for fd in (ready_w, go_r, out_w, err_w):
        os.close(fd)
    theirs.close()
    try:
        if flags & CLONE_NEWUSER:
            os.read(ready_r, 1)
            uid_map, gid_map = userns or ("0 0 4294967295\n", "0 0 4294967295\n")
            Path(f"/proc/{pid}/uid_map").write_text(uid_map)
            Path(f"/proc/{pid}/gid_map").write_text(gid_map)
        os.write(go_w, b"1")
        if plan.sources_in_parent and ours.recv(16) == b"ns":
            launch._send_mount_sources(ours, pid, plan)
    finally:
        os.close(ready_r)
        os.close(go_w)
        ours.close()
    return Running(pid, out_r, err_r, plan)


def run(raw: dict, bundle: Path, argv: list[str], *, timeout: float = 20, **kw) -> Result:
    """Set up the filesystem for config `raw`, run busybox `argv` inside it, wait."""
    return start(raw, bundle, argv, **kw).wait(timeout)


def _drain(out_r: int, err_r: int, timeout: float) -> tuple[str, str]:
    bufs = {out_r: b"", err_r: b""}
    open_ = {out_r, err_r}
    while open_:
        ready, _, _ = select.select(list(open_), [], [], timeout)
        if not ready:
            raise TimeoutError("container did not finish")
        for fd in ready:
            chunk = os.read(fd, 65536)
            if chunk:
                bufs[fd] += chunk
            else:
                open_.discard(fd)
    return bufs[out_r].decode(errors="replace"), bufs[err_r].decode(errors="replace")


def mountinfo_of(text: str) -> dict[str, dict]:
    """Parse /proc/self/mountinfo text (as printed in the container) by mount point; the
    last mount on a point wins, as it is the visible one."""
    out = {}
    for line in text.splitlines():
        if " - " not in line:
            continue
        left, _, right = line.partition(" - ")
        a, b = left.split(), right.split()
        out[a[4]] = {
            "opts": set(a[5].split(",")),
            "optional": a[6:],
            "fstype": b[0],
            "source": b[1],
            "super": set(b[2].split(",")) if len(b) > 2 else set(),
            "root": a[3],
        }
    return out


def host_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [" ".join(line.split()[3:5]) for line in f]


def write_config(path: Path, raw: dict) -> None:
    (path / "config.json").write_text(json.dumps(raw, indent=2))


def copy_rootfs(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest, symlinks=True)
    return dest


def have_runc() -> bool:
    return shutil.which("runc") is not None


def sh(cmd: str) -> str:
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True).stdout


class FsBundle:
    """The harness runner: mountplan.plan, mounts.mount_all, pivot.pivot/finish in a forked child."""

    runner = "harness"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rootfs = path / "rootfs"
        self.config = default_config()

    def run(self, argv: list[str], **kw) -> Result:
        return run(self.config, self.path, argv, **kw)

    def start(self, script: str, **kw) -> Running:
        return start(self.config, self.path, ["sh", "-c", script], **kw)

    def sh(self, script: str, **kw) -> Result:
        return self.run(["sh", "-c", script], **kw)

    def error(self, script: str = "true", **kw) -> str:
        """The error text of a run that must fail (config errors raise in the harness)."""
        try:
            r = self.sh(script, **kw)
        except OnggiError as e:
            return str(e)
        assert r.rc != 0, f"expected a failure, got: {r.out}"
        return r.err

    def mount(self, dest: str, type_: str | None = None, source: str | None = None,
              options: list[str] | None = None, **extra) -> dict:
        m = {"destination": dest}
        if type_ is not None:
            m["type"] = type_
        if source is not None:
            m["source"] = source
        if options is not None:
            m["options"] = options
        m.update(extra)
        self.config["mounts"].append(m)
        return m
