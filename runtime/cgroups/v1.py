"""cgroup v1: linux.resources written to each controller's directory, in runc's order
(cpuset, devices, memory, cpu, pids, blkio, hugetlb, net_cls, net_prio, rdma), with runc's
write orders where the kernel cares (memory before or after swap, period and quota, rt).

A field whose controller is not mounted is an error naming the field; an unset field
writes nothing.
"""

from __future__ import annotations

import errno

from runtime import log
from runtime.cgroups import devices, files
from runtime.cgroups import resources as R
from runtime.cgroups.files import CgroupError, write
from runtime.cgroups.resources import field, refuse, section


class Ctx:
    """Where to write: {subsystem: dir}."""

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths

    def dir(self, subsys: str, name: str) -> str:
        p = self.paths.get(subsys)
        if p is None:
            raise refuse(name, f"the {subsys} cgroup controller is not mounted on this host")
        return p


def set_all(paths: dict[str, str], res: dict, *, skip_devices: bool = False,
            hugepage_sizes: list[str] | None = None) -> None:
    if res.get("unified"):
        raise refuse("unified", "needs cgroup v2; this host has cgroup v1 controllers")
    c = Ctx(paths)
    cpu = section(res, "cpu")
    set_cpuset(c, cpu)
    if not skip_devices and "devices" in paths:  # always: the default rules apply too
        devices.set_v1(paths["devices"], devices.rules(res.get("devices")))
    elif not skip_devices and res.get("devices"):
        raise refuse("devices", "the devices cgroup controller is not mounted on this host")
    set_memory(c, section(res, "memory"))
    set_cpu(c, cpu)
    set_pids(c, res.get("pids"))
    set_blkio(c, section(res, "blockIO"))
    set_hugetlb(c, res.get("hugepageLimits") or (), hugepage_sizes)
    set_network(c, section(res, "network"))
    set_rdma(c, res.get("rdma") or {})


# ---------------------------------------------------------------- cpuset


def set_cpuset(c: Ctx, cpu: dict) -> None:
    for key in ("cpus", "mems"):
        if cpu.get(key):
            write(c.dir("cpuset", f"cpu.{key}"), f"cpuset.{key}", cpu[key], field("cpu", key))


def prepare_cpuset(path: str, cpu: dict, made_from: str) -> None:
    """Before a pid may join: a new v1 cpuset has empty cpus and mems, so every dir we
    made gets its parent's (or the config's, for the leaf). `made_from` is the first dir
    we created on the way down (or `path` itself)."""
    import os

    cur = made_from
    parts = path[len(made_from):].strip("/").split("/") if path != made_from else []
    chain = [cur] + [cur := os.path.join(cur, p) for p in parts]
    for d in chain:
        parent = os.path.dirname(d)
        for key in ("cpus", "mems"):
            want = cpu.get(key) if d == path else None
            if want:
                write(d, f"cpuset.{key}", want, field("cpu", key))
            elif not files.read_or(d, f"cpuset.{key}", "").strip():
                value = files.read_or(parent, f"cpuset.{key}", "").strip()
                if value:
                    write(d, f"cpuset.{key}", value, f"cpuset.{key} of {d}")


# ---------------------------------------------------------------- memory


def set_memory(c: Ctx, mem: dict) -> None:
    if not mem:
        return
    for k in ("kernel", "kernelTCP"):
        if mem.get(k):
            log.warn(f"{field('memory', k)}: kernel memory limits are ignored "
                     "(the kernel no longer enforces them; runc ignores them too)")
    keys = ("limit", "reservation", "swap", "swappiness", "disableOOMKiller", "useHierarchy")
    if not any(k in mem for k in keys):
        return
    d = c.dir("memory", "memory")
    _memory_and_swap(d, mem.get("limit") or 0, mem.get("swap") or 0)
    if mem.get("reservation"):
        write(d, "memory.soft_limit_in_bytes", mem["reservation"], field("memory", "reservation"))
    if mem.get("disableOOMKiller"):
        write(d, "memory.oom_control", "1", field("memory", "disableOOMKiller"))
    sw = mem.get("swappiness")
    if sw is not None and sw != 2**64 - 1:  # runc: (uint64)-1 means unset
        if sw > 100:
            raise refuse("memory.swappiness", f"{sw} is out of range 0-100")
        write(d, "memory.swappiness", sw, field("memory", "swappiness"))
    if "useHierarchy" in mem:
        # the kernel is hierarchical and refuses "0" (EINVAL): that error names the field
        write(d, "memory.use_hierarchy", "1" if mem["useHierarchy"] else "0",
              field("memory", "useHierarchy"))


def _memory_and_swap(d: str, limit: int, swap: int) -> None:
    """runc's setMemoryAndSwap: memory+swap may never be below memory, so when growing
    write memsw first, when shrinking memory first."""
    has_memsw = files.exists(d, "memory.memsw.limit_in_bytes")
    if limit == -1 and swap == 0 and has_memsw:
        swap = -1
    if swap and not has_memsw:
        raise refuse("memory.swap", "this kernel has no swap accounting "
                     "(memory.memsw.limit_in_bytes is missing; boot with swapaccount=1)")
    if limit and swap:
        cur = files.read_int(d, "memory.limit_in_bytes")
        if swap == -1 or cur < swap:
            write(d, "memory.memsw.limit_in_bytes", swap, field("memory", "swap"))
            _limit(d, limit)
            return
    if limit:
        _limit(d, limit)
    if swap:
        write(d, "memory.memsw.limit_in_bytes", swap, field("memory", "swap"))


def _limit(d: str, limit: int) -> None:
    try:
        write(d, "memory.limit_in_bytes", limit, field("memory", "limit"))
    except CgroupError as e:
        if e.errno != errno.EBUSY:
            raise
        usage = files.read_int(d, "memory.usage_in_bytes")
        peak = files.read_int(d, "memory.max_usage_in_bytes")
        raise refuse("memory.limit", f"unable to set memory limit to {limit} (current usage: "
                     f"{usage}, peak usage: {peak})") from None


# ---------------------------------------------------------------- cpu


def set_cpu(c: Ctx, cpu: dict) -> None:
    keys = ("shares", "period", "quota", "burst", "idle", "realtimePeriod", "realtimeRuntime")
    if not any(cpu.get(k) is not None and (cpu.get(k) or k == "idle") for k in keys):
        return
    d = c.dir("cpu", "cpu")
    shares = cpu.get("shares")
    if shares:
        write(d, "cpu.shares", shares, field("cpu", "shares"))
        got = files.read_int(d, "cpu.shares")
        if shares > got:
            raise refuse("cpu.shares", f"{shares}: the maximum allowed cpu-shares is {got}")
        if shares < got:
            raise refuse("cpu.shares", f"{shares}: the minimum allowed cpu-shares is {got}")
    quota = cpu.get("quota") or 0
    later = []
    for key, name in (("period", "cpu.cfs_period_us"), ("burst", "cpu.cfs_burst_us")):
        v = cpu.get(key)
        if not v:
            continue
        try:
            write(d, name, v, field("cpu", key))
        except CgroupError as e:
            if e.errno == errno.EINVAL and quota:
                later.append((name, v, key))  # valid only once the new quota is in
            else:
                raise
    if quota:
        write(d, "cpu.cfs_quota_us", quota, field("cpu", "quota"))
    for name, v, key in later:
        write(d, name, v, field("cpu", key))
    if cpu.get("idle") is not None:
        write(d, "cpu.idle", cpu["idle"], field("cpu", "idle"))
    set_rt(d, cpu)


def set_rt(d: str, cpu: dict) -> None:
    """rt_period may only be lowered below the current runtime once the runtime is lower."""
    period, runtime = cpu.get("realtimePeriod"), cpu.get("realtimeRuntime")
    retry = False
    if period:
        try:
            write(d, "cpu.rt_period_us", period, field("cpu", "realtimePeriod"))
        except CgroupError as e:
            if e.errno != errno.EINVAL or not runtime:
                raise
            retry = True
    if runtime:
        write(d, "cpu.rt_runtime_us", runtime, field("cpu", "realtimeRuntime"))
    if retry:
        write(d, "cpu.rt_period_us", period, field("cpu", "realtimePeriod"))


# ---------------------------------------------------------------- pids, blkio, hugetlb


def pids_value(limit: int) -> str:
    """-1 (or any negative) is no limit; 0 is a real limit (runtime-spec; runc 1.1.5 skips it)."""
    return "max" if limit < 0 else str(limit)


def set_pids(c: Ctx, pids: dict | None) -> None:
    if pids is None or "limit" not in pids:
        return
    write(c.dir("pids", "pids.limit"), "pids.max", pids_value(pids["limit"]),
          field("pids", "limit"))


_THROTTLE = (("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
             ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
             ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
             ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device"))


def set_blkio(c: Ctx, bio: dict) -> None:
    if not bio:
        return
    d = c.dir("blkio", "blockIO")
    # CFQ's blkio.weight is gone since Linux 5.0; BFQ's takes the same values
    prefix = "blkio." if files.exists(d, "blkio.weight") else "blkio.bfq."
    if bio.get("weight"):
        _write_file(d, prefix + "weight", bio["weight"], "blockIO.weight")
    if bio.get("leafWeight"):
        _write_file(d, "blkio.leaf_weight", bio["leafWeight"], "blockIO.leafWeight")
    for i, wd in enumerate(bio.get("weightDevice") or ()):
        dev = f"{wd['major']}:{wd['minor']}"
        if wd.get("weight"):
            _write_file(d, prefix + "weight_device", f"{dev} {wd['weight']}",
                        f"blockIO.weightDevice[{i}].weight")
        if wd.get("leafWeight"):
            _write_file(d, "blkio.leaf_weight_device", f"{dev} {wd['leafWeight']}",
                        f"blockIO.weightDevice[{i}].leafWeight")
    for key, name in _THROTTLE:
        for i, t in enumerate(bio.get(key) or ()):
            _write_file(d, name, f"{t['major']}:{t['minor']} {t['rate']}", f"blockIO.{key}[{i}]")


def _write_file(d: str, name: str, value: object, fname: str) -> None:
    """A write whose file may be missing on this kernel: say so, naming the field."""
    if not files.exists(d, name):
        raise refuse(fname, f"this kernel has no {name} (see the README: Cgroups)")
    write(d, name, value, field(fname))


def set_hugetlb(c: Ctx, limits, sizes: list[str] | None) -> None:
    if not limits:
        return
    d = c.dir("hugetlb", "hugepageLimits")
    R.set_hugetlb(lambda name, value, fname: write(d, name, value, field(fname)), d, limits,
                  sizes, "hugetlb.{}.limit_in_bytes", "hugetlb.{}.rsvd.limit_in_bytes")


# ---------------------------------------------------------------- net_cls, net_prio, rdma


def set_network(c: Ctx, net: dict) -> None:
    if net.get("classID"):
        write(c.dir("net_cls", "network.classID"), "net_cls.classid", net["classID"],
              field("network", "classID"))
    for i, p in enumerate(net.get("priorities") or ()):
        write(c.dir("net_prio", "network.priorities"), "net_prio.ifpriomap",
              f"{p['name']} {p['priority']}", field(f"network.priorities[{i}]"))


def set_rdma(c: Ctx, rdma: dict) -> None:
    for dev, limits in rdma.items():
        write(c.dir("rdma", f"rdma.{dev}"), "rdma.max", R.rdma_line(dev, limits),
              field(f"rdma.{dev}"))
