"""The systemd cgroup driver (--systemd-cgroup): systemd makes the container's cgroup, a
transient scope started over D-Bus, and the rest is written to cgroupfs by the fs driver,
as runc's systemd driver does (pure cgroup v2 only, see for_create).

linux.cgroupsPath is "slice:prefix:name" (runc's rules):
  ""                      -> system.slice, unit "onggi-<id>.scope"
  "system.slice:docker:x" -> /sys/fs/cgroup/system.slice/docker-x.scope
  "a-b.slice:p:x"         -> /sys/fs/cgroup/a.slice/a-b.slice/p-x.scope (nested slices)
  "-.slice:p:x"           -> /sys/fs/cgroup/p-x.scope (the root slice)
  an empty slice is system.slice; an empty prefix gives "-x.scope" (as runc).

create: fork stage 1 (no clone3: systemd moves it in, a scope cannot start empty), then
apply(pid) = StartTransientUnit(unit, props) with the resources already in systemd's terms
(sdprops.py), Delegate=yes, PIDs=[stage 1], DefaultDependencies=no; wait for the job; then
the fs driver enables controllers and, at set(), writes every resource to the scope's dir
(the eBPF device program included). update: SetUnitProperties, then the files. delete (and
a failed create): the processes killed, StopUnit, ResetFailedUnit, the dir removed if left.
The D-Bus code (sdbus.py, jeepney) is imported only here, only when systemd is talked to.
"""

from __future__ import annotations

import os
import posixpath
import re
import signal

from runtime import log
from runtime.cgroups import Manager, Options, paths
from runtime.cgroups.files import CgroupError
from runtime.cgroups.fs import FsManager
from runtime.cgroups.paths import UNIFIED, Layout

DEFAULT_SLICE = "system.slice"
DEFAULT_PREFIX = "onggi"  # runc's is "runc"
FIELD = "linux.cgroupsPath"
_UNIT_CHARS = re.compile(r"[A-Za-z0-9:_.\\-]+")


def parse(cgroups_path: str | None, cid: str) -> tuple[str, str, str]:
    """(slice, prefix, name) of a systemd cgroupsPath."""
    if not cgroups_path:
        return DEFAULT_SLICE, DEFAULT_PREFIX, cid
    parts = cgroups_path.split(":")
    if len(parts) != 3:
        raise CgroupError(f'{FIELD}: expected cgroupsPath to be of format "slice:prefix:name" '
                          f"for systemd cgroups, got {cgroups_path!r} instead")
    slice_, prefix, name = parts
    if not name:
        raise CgroupError(f"{FIELD}: {cgroups_path!r}: the name part is empty")
    if name.endswith(".slice"):
        raise CgroupError(f"{FIELD}: {cgroups_path!r}: a container's unit is a scope; "
                          f"{name} is a slice, which cannot hold processes")
    return slice_ or DEFAULT_SLICE, prefix, name


def unit_name(prefix: str, name: str) -> str:
    unit = f"{prefix}-{name}.scope"
    if len(unit) > 255 or not _UNIT_CHARS.fullmatch(unit):
        raise CgroupError(f"{FIELD}: {unit!r} is not a valid systemd unit name (letters, "
                          "digits and :_.\\- only, at most 255 characters)")
    return unit


def expand_slice(slice_: str) -> str:
    """A slice's cgroup path: "a-b-c.slice" -> "/a.slice/a-b.slice/a-b-c.slice", "-.slice"
    -> "/" (runc's ExpandSlice)."""
    if not slice_.endswith(".slice") or "/" in slice_ or len(slice_) <= len(".slice"):
        raise CgroupError(f"{FIELD}: invalid slice name: {slice_}")
    stem = slice_[: -len(".slice")]
    if stem == "-":
        return "/"
    out, prefix = "", ""
    for part in stem.split("-"):
        if not part:
            raise CgroupError(f"{FIELD}: invalid slice name: {slice_}")
        out += f"/{prefix}{part}.slice"
        prefix += part + "-"
    if not _UNIT_CHARS.fullmatch(slice_):
        raise CgroupError(f"{FIELD}: invalid slice name: {slice_}")
    return out


def scope_dir(v2_root: str, slice_: str, unit: str) -> str:
    return posixpath.normpath(f"{v2_root}{expand_slice(slice_)}/{unit}")


class SystemdManager(FsManager):
    driver = "systemd"

    def __init__(self, layout: Layout, dirs: dict[str, str], *, unit: str, slice_: str,
                 cid: str = "", parents: list[str] = ()) -> None:
        super().__init__(layout, dirs, parents=parents)
        self.unit = unit
        self.slice = slice_
        self.cid = cid
        self.extra: list = []  # properties from the config's annotations
        self._bus = None  # sdbus.Systemd, opened on first use
        self._version = -1
        self._sent = None  # the resources the unit was started with (create's set())
        self._fs_resources: dict = {}  # the same, as they go to cgroupfs

    # ------------------------------------------------------------ construction

    @classmethod
    def for_create(cls, cfg, cid: str, opts: Options) -> SystemdManager:
        layout = paths.host_layout()
        if layout.mode != "v2":
            raise CgroupError(f"--systemd-cgroup: onggi drives systemd only on a pure cgroup "
                              f"v2 host; this one is {layout.mode}: use the default cgroupfs "
                              "driver")
        if os.geteuid() != 0 or opts.rootless == "true":
            raise CgroupError("--systemd-cgroup: rootless containers (systemd's user "
                              "instance) are not supported by onggi")
        slice_, prefix, name = parse(cfg.linux.cgroups_path, cid)
        unit = unit_name(prefix, name)
        d = scope_dir(layout.v2_root, slice_, unit)
        m = cls(layout, {UNIFIED: d}, unit=unit, slice_=slice_, cid=cid)
        m.state_dir = opts.state_dir
        from runtime.cgroups import sdprops as P

        m.extra = P.annotation_properties(cfg.annotations)
        res = cfg.linux.resources
        m.check(res)
        P.resource_properties(res, 10**6)  # refuse what systemd cannot take, before any fork
        m.resources = res
        m.connect()  # before the fork: no D-Bus means no container
        return m

    @classmethod
    def from_state(cls, st) -> SystemdManager:
        data = st.cgroup_data
        m = cls(Layout("v2"), st.cgroup_paths, unit=data.get("unit", ""),
                slice_=data.get("slice", ""), parents=data.get("parents", []))
        m.resources = data.get("resources", {})
        return m

    @classmethod
    def from_note(cls, note: dict) -> SystemdManager:
        return cls(Layout("v2"), note["paths"], unit=note.get("unit", ""),
                   slice_=note.get("slice", ""), parents=note.get("parents", []))

    def saved(self) -> dict:
        return {**super().saved(), "unit": self.unit, "slice": self.slice}

    def note_extra(self) -> dict:
        return {"unit": self.unit, "slice": self.slice}

    def connect(self):
        if self._bus is None:
            from runtime.cgroups import sdbus

            self._bus = sdbus.Systemd()
            self._version = self._bus.version()
        return self._bus

    # ------------------------------------------------------------ create

    def fork(self, child) -> int:
        # no clone3 into the scope: systemd makes its cgroup once stage 1 exists
        return Manager.fork(self, child)

    def self_join(self, pid: int) -> list[str]:
        # systemd puts stage 1 into the scope it starts (PIDs): nothing for it to write
        return Manager.self_join(self, pid)

    def rejoin(self, pid: int, failed: list[str]) -> None:
        pass

    def apply(self, pid: int) -> None:
        from runtime.cgroups import sdprops as P

        self._note()
        bus = self.connect()
        props, fs_res = self._resource_properties(self.resources, skip_devices=False)
        bus.start_unit(self.unit, P.unit_properties(self.unit, self.slice, self.cid, pid)
                       + self.extra + props)
        self._sent, self._fs_resources = self.resources, fs_res
        # runc's fs2.CreateCgroupPath after the job: the controllers above the scope
        self._make_v2(self._paths[UNIFIED])
        if not os.path.isdir(self._paths[UNIFIED]):
            raise CgroupError(f"systemd started {self.unit}, but its cgroup "
                              f"{self._paths[UNIFIED]} is not there")

    def _resource_properties(self, res: dict, skip_devices: bool) -> tuple[list, dict]:
        """The properties, and the resources for cgroupfs: the cpu quota as systemd keeps
        it (rounded up to 10 ms per second), so that the files agree with systemd."""
        from runtime.cgroups import sdprops as P

        props = P.resource_properties(res, self._version, skip_devices=skip_devices)
        cpu = res.get("cpu") or {}
        quota = P.cpu_quota(cpu.get("quota") or 0, cpu.get("period") or 0, self._version)[1]
        if cpu.get("quota") and quota != cpu["quota"]:
            log.debug(f"systemd: cpu.quota {cpu['quota']} becomes {quota} (systemd keeps "
                      "CPUQuotaPerSecUSec in multiples of 10 ms)")
            res = {**res, "cpu": {**cpu, "quota": quota}}
        return props, res

    def set(self, resources: dict, skip_devices: bool = False) -> None:
        if resources is self._sent:  # create: systemd has them already
            fs_res = self._fs_resources
        else:  # update
            self._check_usage(resources)
            bus = self.connect()
            props, fs_res = self._resource_properties(resources, skip_devices)
            bus.set_properties(self.unit, props)
        super().set(fs_res, skip_devices)

    def _check_usage(self, res: dict) -> None:
        """checkBeforeUpdate before systemd writes memory.max (it would OOM-kill first)."""
        from runtime.cgroups import resources as R
        from runtime.cgroups import v2

        mem = R.section(res, "memory")
        if mem.get("checkBeforeUpdate") and UNIFIED in self._paths:
            limit = mem.get("limit") or 0
            v2._check_usage(v2.Writer(self._paths[UNIFIED]), limit,
                            R.swap_to_v2(mem.get("swap") or 0, limit))

    # ------------------------------------------------------------ the verbs

    def destroy(self) -> None:
        """Kill what is left (systemd's stop would wait for SIGTERM), stop the unit, reset
        it if it failed, then remove the dir if systemd left it."""
        try:
            if self.pids():
                self.kill_all(signal.SIGKILL)
        except (CgroupError, OSError) as e:  # systemd may be removing the scope meanwhile
            log.debug(f"killing what is left in {self.unit}: {e}")
        err = None
        if self.unit:
            try:
                result = self.connect().stop_unit(self.unit)
                if result not in ("", "done"):
                    log.warn(f"stopping systemd unit {self.unit}: got {result}")
            except CgroupError as e:
                err = e
        super().destroy()
        if err is not None:
            raise CgroupError(f"stopping systemd unit {self.unit}: {err}")
