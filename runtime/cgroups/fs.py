"""The cgroupfs driver: the Manager for v1, hybrid (v1 controllers plus the cgroup2
`unified` tree, which runc also joins) and pure v2 hosts, writing the files directly.

paths: {v1 subsystem: dir, ..., "": cgroup2 dir}. On v1 and hybrid the resources go to the
v1 controllers (v1.py) and the unified dir is only joined (for cgroup.kill, and so that
cgroup2-aware tools place the container); on v2 everything is in the one dir (v2.py).
"""

from __future__ import annotations

import _signal as signal
import errno
import os

from runtime import log
from runtime.cgroups import NOTE, Manager, Options, files, freezer, paths, tree
from runtime.cgroups.files import CgroupError
from runtime.cgroups.paths import UNIFIED, Layout

_IGNORABLE = (errno.EPERM, errno.EACCES, errno.EROFS)  # rootless: not ours to write
_JOIN_ONLY = ("name=systemd", UNIFIED)  # joined on v1/hybrid, errors ignored (runc)
_DOMAIN = ("memory", "cpu", "blockIO", "hugepageLimits", "rdma")


class FsManager(Manager):
    driver = "fs"

    def __init__(self, layout: Layout, dirs: dict[str, str], *, parents: list[str] = (),
                 rootless: bool = False, userns: bool = False, explicit: bool = True) -> None:
        self.layout = layout
        self._paths = dict(dirs)
        self.parents = list(parents)  # the ancestors we created, for destroy
        self.rootless = rootless
        self.userns = userns  # the runtime itself is in a user namespace
        self.explicit = explicit  # linux.cgroupsPath was given
        self.resources: dict = {}
        self._born_in: str | None = None  # the dir clone3 put stage 1 into
        self._self_joins: dict[str, str] = {}  # tasks file -> key: stage 1 joins by itself
        self._dropped: set[str] = set()
        self.state_dir = ""
        self._existed: list[str] | None = None  # our dirs that were there before us

    # ------------------------------------------------------------ construction

    @classmethod
    def for_create(cls, cfg, cid: str, opts: Options, layout: Layout | None = None) -> FsManager:
        layout = layout or paths.host_layout()
        inner = paths.inner(cfg.linux.cgroups_path, cid)
        dirs = paths.resolve(layout, inner)
        if layout.mode != "v2" and "devices" not in dirs:
            raise CgroupError("linux.resources.devices: the devices cgroup controller is not "
                              "mounted on this host")
        userns = _in_userns()
        rootless = opts.rootless == "true" or (opts.rootless == "auto"
                                               and (os.geteuid() != 0 or userns))
        m = cls(layout, dirs, rootless=rootless, userns=userns,
                explicit=bool(cfg.linux.cgroups_path))
        m.state_dir = opts.state_dir
        m.check(cfg.linux.resources)
        m.resources = cfg.linux.resources
        return m

    @classmethod
    def from_state(cls, st) -> FsManager:
        keys = set(st.cgroup_paths)
        mode = "v2" if keys == {UNIFIED} else ("hybrid" if UNIFIED in keys else "v1")
        m = cls(Layout(mode), st.cgroup_paths, parents=st.cgroup_data.get("parents", []))
        m.resources = st.cgroup_data.get("resources", {})
        return m

    @classmethod
    def from_note(cls, note: dict) -> FsManager:
        keys = set(note["paths"])
        mode = "v2" if keys == {UNIFIED} else ("hybrid" if UNIFIED in keys else "v1")
        return cls(Layout(mode), note["paths"], parents=note.get("parents", []))

    def _note(self, parents: list[str] = ()) -> None:
        """Before making anything: where it will be (see cgroups.NOTE)."""
        if not self.state_dir:
            return
        from runtime import fastjson

        if self._existed is None:  # the first note comes before we make anything
            self._existed = sorted(d for d in set(self._paths.values()) if os.path.isdir(d))
        doc = {**self.note_extra(), "driver": self.driver, "paths": self._paths,
               "parents": sorted(set(self.parents) | set(parents)), "existed": self._existed}
        fd = os.open(os.path.join(self.state_dir, NOTE),
                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, fastjson.dumps(doc).encode())
        finally:
            os.close(fd)

    def note_extra(self) -> dict:
        """What else a driver needs in the note to remove what it made (from_note)."""
        return {}

    def _would_make(self) -> list[str]:
        """The missing ancestors of our dirs: the parents we are about to create."""
        out = []
        for d in set(self._paths.values()):
            cur = os.path.dirname(d)
            while cur and not os.path.isdir(cur):
                out.append(cur)
                cur = os.path.dirname(cur)
        return out

    @property
    def mode(self) -> str:
        return self.layout.mode

    @property
    def paths(self) -> dict[str, str]:
        return dict(self._paths)

    def saved(self) -> dict:
        return {"parents": self.parents, "resources": self.resources}

    def check(self, res: dict) -> None:
        """What can be refused before any process exists."""
        from runtime.cgroups import devices, resources

        rules = devices.rules(res.get("devices"))
        devices.emulate(rules)
        if self.mode != "v2" and res.get("unified"):
            raise resources.refuse("unified", "needs cgroup v2; this host has cgroup v1 "
                                   "controllers")
        if self.mode == "v2":
            mem = resources.section(res, "memory")
            resources.swap_to_v2(mem.get("swap") or 0, mem.get("limit") or 0)
        if res.get("hugepageLimits"):
            resources.check_hugepages(res, resources.hugepage_sizes())

    # ------------------------------------------------------------ create

    def fork(self, child) -> int:
        """Stage 1 is born in its cgroup2 dir (pure v2, and a hybrid host's unified dir):
        clone3(CLONE_INTO_CGROUP); on a v1-only host, or when the kernel refuses, a plain
        fork, and self_join()/apply() move it in."""
        from runtime.linux import process

        d = self._paths.get(UNIFIED)
        if d is None:
            return process.fork(child)
        try:
            self._note(self._would_make())
            if self.mode == "v2":
                self._make_v2(d)
            else:
                self._mkdirs(UNIFIED, d)
            from runtime.cgroups import clone3

            pid = clone3.fork(d, child)
        except (OSError, CgroupError) as e:
            log.debug(f"clone3(CLONE_INTO_CGROUP) into {d}: {e}; forking and joining instead")
            return process.fork(child)
        self._born_in = d
        return pid

    def apply(self, pid: int) -> None:
        for key, d in self._to_join():
            self._join(key, d, pid)

    def self_join(self, pid: int) -> list[str]:
        """The v1 cgroups' `tasks` files, for stage 1 to write "0" to: a thread that moves
        itself takes no global lock in the kernel (Linux >= 6.0), where a pid written to
        cgroup.procs makes the kernel wait for an RCU grace period (~10 ms here, paid on
        every create). Stage 1 has one thread, so it is the whole process. cgroup2 has no
        `tasks`: a cgroup2 dir stage 1 was not born in is joined here, by pid."""
        self._self_joins = {}
        for key, d in self._to_join():
            if key == UNIFIED:
                self._join(key, d, pid)
            else:
                self._self_joins[d + "/tasks"] = key
        return list(self._self_joins)

    def rejoin(self, pid: int, failed: list[str]) -> None:
        """What stage 1 could not join by itself: by pid, as apply() (and its errors)."""
        for tasks in failed:
            self._join(self._self_joins[tasks], tasks.removesuffix("/tasks"), pid)

    def _to_join(self) -> list[tuple[str, str]]:
        """Make the cgroups (mkdir -p, the cpuset's cpus and mems, the rt runtime), each
        before its join; returns the (key, dir) pairs to join, each dir once, in runc's
        order."""
        if self._born_in is None:
            self._note(self._would_make())
        if self.mode == "v2":
            d = self._paths[UNIFIED]
            if self._born_in != d:
                self._make_v2(d)
                if UNIFIED in self._paths:
                    return [(UNIFIED, d)]
            return []
        cpu = self.resources.get("cpu") or {}
        out: list[tuple[str, str]] = []
        joined = {self._born_in}
        for key in paths.SUBSYSTEMS + (UNIFIED,):
            d = self._paths.get(key)
            if d is None or d in joined:
                continue
            try:
                made = self._mkdirs(key, d)
                if key == "cpuset":
                    from runtime.cgroups import v1

                    v1.prepare_cpuset(d, cpu, made[0] if made else d)
                elif key == "cpu":  # before the pid joins: an rt task needs rt runtime there
                    from runtime.cgroups import v1

                    v1.set_rt(d, cpu)
            except (OSError, CgroupError) as e:
                if self._skip(key, e):
                    continue
                raise
            out.append((key, d))
            joined.add(d)
        return out

    def _make_v2(self, d: str) -> None:
        from runtime.cgroups import v2

        res = self.resources
        try:
            made = v2.create(self.layout.v2_root, d, any(res.get(k) for k in _DOMAIN))
        except CgroupError as e:
            if self._skip(UNIFIED, e):
                return
            raise
        self._note_made(d, made)

    def _mkdirs(self, key: str, d: str) -> list[str]:
        """mkdir -p; returns the dirs made, top first."""
        made = []
        todo = []
        cur = d
        while not os.path.isdir(cur):
            todo.append(cur)
            cur = os.path.dirname(cur)
        for p in reversed(todo):
            try:
                os.mkdir(p, 0o755)
                made.append(p)
            except FileExistsError:
                pass
            except OSError as e:
                tree.remove_parents(made)
                raise CgroupError(f"linux.cgroupsPath: creating {p}: {files.reason(e)}",
                                  e.errno) from None
        self._note_made(d, made)
        return made

    def _note_made(self, leaf: str, made: list[str]) -> None:
        self.parents += [p for p in made if p != leaf and p not in self.parents]

    def _join(self, key: str, d: str, pid: int) -> None:
        try:
            files.add_pid(d, pid)
        except CgroupError as e:
            if not self._skip(key, e):
                raise

    def _skip(self, key: str, e: Exception) -> bool:
        """runc: name=systemd and the hybrid unified dir are best effort; rootless skips
        what it may not write when no cgroupsPath was asked for."""
        err = getattr(e, "errno", None)
        if key in _JOIN_ONLY and self.mode != "v2":
            log.debug(f"cgroups: not joining {self._paths[key]}: {e}")
        elif self.rootless and not self.explicit and err in _IGNORABLE:
            log.warn(f"cgroups are not writable here ({e}); running without cgroup "
                     f"{key or 'v2'} limits (rootless)")
        else:
            return False
        d = self._paths.pop(key, None)
        self._dropped.add(key)
        if d is not None and d not in (self._existed or ()):
            try:  # made for us: no state will name it, so nothing else would remove it
                os.rmdir(d)
            except OSError:
                pass
        return True

    def set(self, resources: dict, skip_devices: bool = False) -> None:
        self._check_dropped(resources)
        if self.mode == "v2":
            from runtime.cgroups import v2

            if UNIFIED in self._paths:
                v2.set_all(self._paths[UNIFIED], resources, skip_devices=skip_devices,
                           userns=self.userns)
            return
        from runtime.cgroups import v1

        v1_dirs = {k: v for k, v in self._paths.items() if k not in _JOIN_ONLY}
        skip_devices = skip_devices or self.userns or "devices" in self._dropped
        v1.set_all(v1_dirs, resources, skip_devices=skip_devices)

    def _check_dropped(self, res: dict) -> None:
        if not self._dropped - {"name=systemd"} or not self.rootless:
            return
        wanted = [k for k, v in res.items() if v and k != "devices"]
        if wanted:
            raise CgroupError(f"linux.resources.{wanted[0]}: cannot be set: the cgroups are "
                              "not writable here (rootless) and the container could not "
                              "join or create them")

    # ------------------------------------------------------------ the verbs

    def freeze(self) -> None:
        freezer.freeze(self._paths)

    def thaw(self) -> None:
        freezer.thaw(self._paths)

    def frozen(self) -> bool:
        return freezer.paused(self._paths)

    def stats(self) -> dict:
        from runtime.cgroups import stats

        return stats.stats(self._paths)

    def _walk_root(self) -> str | None:
        for key in ("freezer", "devices", UNIFIED, "pids", "memory"):
            if key in self._paths:
                return self._paths[key]
        return next(iter(self._paths.values()), None)

    def pids(self) -> list[int]:
        d = self._walk_root()
        return tree.all_pids(d) if d else []

    def kill_all(self, sig: int) -> None:
        """Every process of the cgroup: cgroup.kill for SIGKILL where there is a cgroup2 dir
        (v2, hybrid); else freeze, signal each, thaw (runc's signalAllProcesses). A paused
        container stays paused, unless the signal is SIGKILL (a frozen task cannot die)."""
        d = self._paths.get(UNIFIED)
        was = self.frozen()
        if sig == signal.SIGKILL and d is not None and files.exists(d, "cgroup.kill"):
            files.write(d, "cgroup.kill", "1")
            if was:
                self.thaw()
            return
        try:
            self.freeze()
        except CgroupError as e:
            log.warn(f"kill --all: freezing: {e}")
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if not was or sig == signal.SIGKILL:
                try:
                    self.thaw()
                except CgroupError as e:
                    log.warn(f"kill --all: thawing: {e}")

    def destroy(self) -> None:
        """Remove the container's cgroups (waiting while they drain), then the parents we
        made on the way if they are empty."""
        failed = []
        for d in sorted(set(self._paths.values()), key=len, reverse=True):
            try:
                tree.remove(d)
            except OSError as e:
                failed.append(f"{d}: {files.reason(e)}")
        tree.remove_parents(self.parents)
        if failed:
            raise CgroupError("cannot remove cgroup " + "; ".join(failed))


def _in_userns() -> bool:
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False
