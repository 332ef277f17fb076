"""cgroup v2 (unified): the container's directory made with its controllers enabled above
it, and linux.resources converted from the spec's v1 terms to v2 files (runc's fs2):

  memory.limit/swap/reservation -> memory.max / memory.swap.max (swap - limit) / memory.low
  cpu.shares -> cpu.weight (runc >= 1.4 / crun formula); quota+period -> cpu.max;
  burst -> cpu.max.burst; idle -> cpu.idle; cpus/mems -> cpuset.cpus/mems
  blockIO.weight -> io.bfq.weight, else io.weight (converted); throttle* -> io.max
  hugepageLimits -> hugetlb.<size>.max (+ .rsvd.max); pids -> pids.max; rdma -> rdma.max
  devices -> an eBPF program (bpf.py); unified -> written as given, last.
v1-only fields runc ignores on v2 are ignored here too, with a warning in the log:
memory.swappiness, memory.disableOOMKiller, cpu.realtimeRuntime/realtimePeriod,
blockIO.leafWeight and weightDevice[].leafWeight, network.
"""

from __future__ import annotations

import errno
import os

from runtime import log
from runtime.cgroups import devices, files
from runtime.cgroups import resources as R
from runtime.cgroups.files import CgroupError, write
from runtime.cgroups.resources import field, refuse, section
from runtime.errors import reason


def create(root: str, path: str, domain_needed: bool = True) -> list[str]:
    """mkdir -p `path` below the cgroup2 mount `root`, enabling every controller the root
    offers in each ancestor's cgroup.subtree_control (never the leaf's: it will hold the
    processes). Returns the directories made, top first."""
    avail = files.read_or(root, "cgroup.controllers", "").split()
    enable = " ".join("+" + c for c in avail)
    parts = [p for p in path[len(root):].split("/") if p]
    made: list[str] = []
    cur = root
    try:
        for i, part in enumerate([None, *parts]):
            if part is not None:
                cur = cur + "/" + part
                try:
                    os.mkdir(cur, 0o755)
                    made.append(cur)
                except FileExistsError:
                    pass
                _check_type(cur, domain_needed)
            if i < len(parts) and enable:
                _enable(cur, enable)
    except OSError as e:
        _undo(made)
        raise CgroupError(f"linux.cgroupsPath: creating {cur}: {reason(e)}",
                          e.errno) from None
    except CgroupError:
        _undo(made)
        raise
    return made


def _check_type(d: str, domain_needed: bool) -> None:
    t = files.read_or(d, "cgroup.type", "domain").strip()
    if t == "domain invalid":
        if domain_needed:
            raise CgroupError(f"linux.cgroupsPath: cannot enter cgroup v2 {d} with domain "
                              "controllers: it is in an invalid state")
        write(d, "cgroup.type", "threaded")
    elif t in ("domain threaded", "threaded") and domain_needed:
        raise CgroupError(f"linux.cgroupsPath: cannot enter cgroup v2 {d} with domain "
                          f"controllers: it is in {t} mode")


def _enable(d: str, enable: str) -> None:
    try:
        write(d, "cgroup.subtree_control", enable)
    except CgroupError:
        for c in enable.split():  # some may be refused (a threaded subtree, processes): try each
            try:
                write(d, "cgroup.subtree_control", c)
            except CgroupError:
                pass


def _undo(made: list[str]) -> None:
    for d in reversed(made):
        try:
            os.rmdir(d)
        except OSError:
            pass


# ---------------------------------------------------------------- set


class Writer:
    """Writes to one cgroup dir; a missing file means its controller is not enabled here."""

    def __init__(self, d: str) -> None:
        self.d = d

    def __call__(self, name: str, value: object, fname: str) -> None:
        try:
            write(self.d, name, value, field(fname))
        except CgroupError as e:
            if e.errno != errno.ENOENT:
                raise
            ctrl = name.partition(".")[0]
            have = files.read_or(self.d, "cgroup.controllers", "").split()
            if ctrl in have:
                raise refuse(fname, f"this kernel has no {name} in {self.d}") from None
            raise refuse(fname, f"the {ctrl} controller is not available in {self.d} "
                         f"(its cgroup.controllers: {' '.join(have) or 'none'})") from None


def set_all(d: str, res: dict, *, skip_devices: bool = False, userns: bool = False,
            hugepage_sizes: list[str] | None = None) -> None:
    w = Writer(d)
    set_pids(w, res.get("pids"))
    set_memory(w, section(res, "memory"))
    set_io(w, section(res, "blockIO"))
    set_cpu(w, section(res, "cpu"))
    if not skip_devices:
        set_devices(d, res.get("devices"), userns)
    set_cpuset(w, section(res, "cpu"))
    set_hugetlb(w, res.get("hugepageLimits") or (), hugepage_sizes)
    set_rdma(w, res.get("rdma") or {})
    _ignored(res)
    set_unified(d, res.get("unified") or {})


def set_pids(w: Writer, pids: dict | None) -> None:
    if pids is not None and "limit" in pids:
        lim = pids["limit"]
        w("pids.max", "max" if lim < 0 else lim, "pids.limit")


def set_memory(w: Writer, mem: dict) -> None:
    for k in ("kernel", "kernelTCP"):
        if mem.get(k):
            log.warn(f"{field('memory', k)}: kernel memory limits are ignored "
                     "(cgroup v2 has none; runc ignores them too)")
    if mem.get("useHierarchy") is False:
        raise refuse("memory.useHierarchy", "false is impossible: cgroup v2 is hierarchical")
    limit, swap = mem.get("limit") or 0, mem.get("swap") or 0
    swap_v2 = R.swap_to_v2(swap, limit)
    if mem.get("checkBeforeUpdate"):
        _check_usage(w, limit, swap_v2)
    if swap_v2 is not None:
        w("memory.swap.max", R.v2_value(swap_v2), "memory.swap")
    if limit:
        w("memory.max", R.v2_value(limit), "memory.limit")
    if mem.get("reservation"):
        w("memory.low", R.v2_value(mem["reservation"]), "memory.reservation")


def _check_usage(w: Writer, limit: int, swap: int | None) -> None:
    """checkBeforeUpdate: refuse a limit at or below what the cgroup already uses (runc
    >= 1.2), rather than let the kernel's OOM killer act on it."""
    usage = files.read_int(w.d, "memory.current", 0)
    if not usage:
        return
    if swap is not None and swap > 0:
        swap_usage = files.read_int(w.d, "memory.swap.current", 0)
        if swap + limit <= usage + swap_usage:
            raise refuse("memory.swap", f"rejecting memory+swap limit {swap + limit} <= usage "
                         f"{usage + swap_usage} (checkBeforeUpdate)")
    if limit > 0 and limit <= usage:
        raise refuse("memory.limit", f"rejecting memory limit {limit} <= usage {usage} "
                     "(checkBeforeUpdate)")


def set_io(w: Writer, bio: dict) -> None:
    if bio.get("weight"):
        if files.exists(w.d, "io.bfq.weight"):
            w("io.bfq.weight", bio["weight"], "blockIO.weight")
        else:
            w("io.weight", R.blkio_to_io_weight(bio["weight"]), "blockIO.weight")
    wds = [x for x in bio.get("weightDevice") or () if x.get("weight")]
    if wds:
        per_dev = not files.read_or(w.d, "io.bfq.weight", "0").strip().isdigit()
        for i, wd in enumerate(wds):
            if not per_dev:
                raise refuse(f"blockIO.weightDevice[{i}].weight", "needs per-device BFQ "
                             f"weights (io.bfq.weight of {w.d}, Linux >= 5.4 with BFQ)")
            w("io.bfq.weight", f"{wd['major']}:{wd['minor']} {wd['weight']}",
              f"blockIO.weightDevice[{i}].weight")
    for key, name in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                      ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
        for i, t in enumerate(bio.get(key) or ()):
            rate = t["rate"] or "max"  # v1's 0 removes the rule
            w("io.max", f"{t['major']}:{t['minor']} {name}={rate}", f"blockIO.{key}[{i}]")


def set_cpu(w: Writer, cpu: dict) -> None:
    if cpu.get("idle") is not None:
        w("cpu.idle", cpu["idle"], "cpu.idle")
    if cpu.get("shares"):
        w("cpu.weight", R.shares_to_weight(cpu["shares"]), "cpu.shares")
    quota, period = cpu.get("quota"), cpu.get("period")
    burst = cpu.get("burst")
    later = False
    if burst is not None:
        try:
            w("cpu.max.burst", burst, "cpu.burst")
        except CgroupError as e:
            if e.errno != errno.EINVAL or not quota:
                raise
            later = True  # above the old quota: valid once the new one is in
    cpu_max = R.quota_period_v2(quota, period)
    if cpu_max is not None:
        w("cpu.max", cpu_max, "cpu.quota" if quota else "cpu.period")
    if later:
        w("cpu.max.burst", burst, "cpu.burst")


def set_cpuset(w: Writer, cpu: dict) -> None:
    for key in ("cpus", "mems"):
        if cpu.get(key):
            w(f"cpuset.{key}", cpu[key], f"cpu.{key}")


def set_hugetlb(w: Writer, limits, sizes: list[str] | None) -> None:
    R.set_hugetlb(w, w.d, limits, sizes, "hugetlb.{}.max", "hugetlb.{}.rsvd.max")


def set_rdma(w: Writer, rdma: dict) -> None:
    for dev, limits in rdma.items():
        w("rdma.max", R.rdma_line(dev, limits), f"rdma.{dev}")


def set_devices(d: str, items, userns: bool) -> None:
    rs = devices.rules(items)
    emu = devices.emulate(rs)
    from runtime.cgroups import bpf

    try:
        bpf.install(d, emu)
    except CgroupError:
        # runc's canSkipEBPFError: inside a user namespace, or when nothing is denied
        if userns or (emu.default_allow and not emu.exceptions):
            log.warn(f"{field('devices')}: no eBPF device program (not allowed here); "
                     "device access is not limited by the cgroup")
            return
        raise


def _ignored(res: dict) -> None:
    """What runc silently ignores on v2: we ignore it too, but say so."""
    mem, cpu, bio = section(res, "memory"), section(res, "cpu"), section(res, "blockIO")
    names = [field("memory", k) for k in ("swappiness", "disableOOMKiller")
             if mem.get(k) not in (None, False, 2**64 - 1)]
    names += [field("cpu", k) for k in ("realtimeRuntime", "realtimePeriod") if cpu.get(k)]
    if bio.get("leafWeight") or any(x.get("leafWeight") for x in bio.get("weightDevice") or ()):
        names.append(field("blockIO", "leafWeight"))
    if section(res, "network"):
        names.append(field("network"))
    if names:
        log.warn(f"{', '.join(names)}: not supported by cgroup v2, ignored (as runc does)")


def set_unified(d: str, unified: dict) -> None:
    """Raw cgroup v2 files, written last so they override the converted values. A key must
    name a file in the container's own cgroup directory: nothing that could escape it."""
    for key, value in unified.items():
        fname = field(f"unified.{key}")
        if not key or "/" in key or key in (".", "..") or "\0" in key:
            raise CgroupError(f"{field('unified')}: key {key!r} must be a file name in the "
                              "cgroup directory")
        ctrl, dot, _ = key.partition(".")
        try:
            fd = os.open(f"{d}/{key}", os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.EPERM, errno.EACCES):
                raise CgroupError(f"{fname}: {reason(e)}", e.errno) from None
            if not dot:
                raise CgroupError(f"{fname}: must be of the form CONTROLLER.PARAMETER") from None
            have = files.read_or(d, "cgroup.controllers", "").split()
            if ctrl != "cgroup" and ctrl not in have:
                raise CgroupError(f"{fname}: the {ctrl} controller is not available in {d} "
                                  f"(cgroup.controllers: {' '.join(have) or 'none'})") from None
            raise CgroupError(f"{fname}: {d}/{key}: {reason(e)}", e.errno) from None
        try:
            for line in value.split("\n") if value else [""]:  # one write per line (runc)
                if line or not value:
                    if files.JOURNAL is not None:
                        files.JOURNAL.append((f"{d}/{key}", line))
                    os.write(fd, line.encode())
        except OSError as e:
            raise CgroupError(f"{fname}: writing {value!r}: {reason(e)}", e.errno) from None
        finally:
            os.close(fd)
