"""What a container can leave on the host, seen robustly on a shared machine.

Other helpers run containers, mount things and make cgroups on this machine at the same
time, so nothing here counts raw lines: only what names the test's own paths, ids or tag
does, and new mounts of the kinds a container makes (proc, sysfs, cgroup...) outside the
places where other tests keep theirs (/tmp, /run, /var: a test there may well run a
container without a mount namespace, whose mounts then show up in the host's table).

    probe = Probe(paths=[bundle_dir, state_root], ids=[cid], tag=TAG)
    before = probe.snapshot()
    ...                                   # create, kill, delete --force
    assert probe.leaks(before) == []      # ["process 123 ...", "mount ...", ...]
"""

from __future__ import annotations

import os
import time

# Filesystems a container mounts: one of these appearing in the host's table outside other
# tests' places is a leak (one under the test's own paths is, whatever its type).
# (Not nsfs or overlay: engines and the image tool make those on the host, legitimately.)
CONTAINER_FS = frozenset({"proc", "sysfs", "cgroup", "cgroup2", "mqueue", "devpts"})
OTHERS = (b"/tmp/", b"/run/", b"/var/")
CGROUP_ROOT = "/sys/fs/cgroup"
TAG_VAR = "ONGGI_LEAK_TAG"


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _proc_state(pid: str) -> bytes:
    data = _read(f"/proc/{pid}/stat")
    return data[data.rindex(b")") + 2 :][:1] if b")" in data else b""


class Probe:
    def __init__(self, paths: list[str | os.PathLike] = (), ids: list[str] = (),
                 tag: str | None = None) -> None:
        self.paths = [os.fsencode(str(p)) for p in paths]
        self.ids = list(ids)
        self.tag = f"{TAG_VAR}={tag}".encode() if tag else None

    # --------------------------------------------------------------- the parts

    def processes(self) -> list[str]:
        """Live processes of ours: onggi's own children name our paths on their command
        line until they exec; a container's process carries our tag in its environment."""
        me = str(os.getpid())
        out = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if pid == me:
                continue
            cmd = _read(f"/proc/{pid}/cmdline")
            hit = any(p in cmd for p in self.paths)
            if not hit and self.tag:
                hit = self.tag in _read(f"/proc/{pid}/environ").split(b"\0")
            if hit and _proc_state(pid) not in (b"Z", b"X", b""):
                line = cmd.replace(b"\0", b" ").decode(errors="replace")
                out.append(f"process {pid}: {line}")
        return out

    def mounts(self) -> set[str]:
        out = set()
        for line in _read("/proc/self/mountinfo").splitlines():
            fields = line.split(b" - ", 1)
            fstype = fields[1].split()[0].decode() if len(fields) == 2 else ""
            target = line.split()[4]
            if any(p in line for p in self.paths) or (
                    fstype in CONTAINER_FS and not target.startswith(OTHERS)):
                out.add(line.decode(errors="replace"))
        return out

    def cgroups(self) -> list[str]:
        """cgroup dirs named after one of our ids (or holding it: systemd's a:b:id), three
        levels down each hierarchy at most."""
        out: list[str] = []
        if not self.ids:
            return out

        def walk(d: str, depth: int) -> None:
            try:
                entries = list(os.scandir(d))
            except OSError:
                return
            for e in entries:
                if not e.is_dir(follow_symlinks=False):
                    continue
                if any(i in e.name for i in self.ids):
                    out.append(f"cgroup {e.path}")
                elif depth < 3:
                    walk(e.path, depth + 1)

        walk(CGROUP_ROOT, 0)
        return out

    def netdevs(self) -> list[str]:
        try:
            names = os.listdir("/sys/class/net")
        except OSError:
            return []
        return [f"netdev {n}" for n in names if any(i[:15] in n or n in i for i in self.ids)]

    # --------------------------------------------------------------- together

    def snapshot(self) -> dict:
        return {"mounts": self.mounts()}

    def leaks(self, before: dict, grace: float = 2.0) -> list[str]:
        """Everything of ours left since `before`. Processes get `grace` seconds to finish
        exiting (a stage 1 orphaned a few microseconds before its creator was killed exits
        by itself on the sync socket's EOF); see lingering() for who needed it."""
        self.lingering = self.processes()
        procs = self.lingering
        deadline = time.monotonic() + grace
        while procs and time.monotonic() < deadline:
            time.sleep(0.01)
            procs = self.processes()
        new_mounts = sorted(f"mount {m}" for m in self.mounts() - before["mounts"])
        return procs + new_mounts + self.cgroups() + self.netdevs()


def state_dirs(root: str | os.PathLike, ids: list[str] = ()) -> list[str]:
    """The state dirs (and stray files) left under a --root: all of them, or those of ids."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return [f"state {root}/{n}" for n in names if not ids or n in ids]
