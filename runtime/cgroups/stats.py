"""`events --stats`: the container's usage in runc's JSON shape (types/events.go), which
containerd's shim and podman parse. Go's omitempty is mirrored: zero numbers and empty
lists are left out where runc leaves them out.
"""

from __future__ import annotations

import os

from runtime.cgroups import files

U64_MAX = 2**64 - 1


def stats(paths: dict[str, str]) -> dict:
    """v1 controllers when the state has them (v1, hybrid), else the cgroup2 dir."""
    v1 = any(k for k in paths if k)
    out = {
        "cpu": _cpu_v1(paths) if v1 else _cpu_v2(paths.get("", "")),
        "cpuset": _cpuset(paths.get("cpuset") if v1 else paths.get("")),
        "memory": _memory_v1(paths.get("memory")) if v1 else _memory_v2(paths.get("", "")),
        "pids": _pids(paths.get("pids") if v1 else paths.get("")),
        "blkio": _blkio_v1(paths.get("blkio")) if v1 else _blkio_v2(paths.get("", "")),
        "hugetlb": _hugetlb(paths.get("hugetlb") if v1 else paths.get(""), v1),
        "intel_rdt": {},
        "network_interfaces": None,
    }
    return out


def _omit(d: dict, *keys: str) -> dict:
    """Go's omitempty for these keys."""
    return {k: v for k, v in d.items() if k not in keys or v}


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split()]


# ---------------------------------------------------------------- cpu


def _ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        return 100


def _cpu_v1(paths: dict) -> dict:
    acct = paths.get("cpuacct")
    usage = {"total": 0, "percpu": [], "percpu_kernel": [], "percpu_user": [],
             "kernel": 0, "user": 0}
    if acct:
        usage["total"] = files.read_int(acct, "cpuacct.usage")
        usage["percpu"] = _ints(files.read_or(acct, "cpuacct.usage_percpu"))
        for line in files.read_or(acct, "cpuacct.usage_all").splitlines()[1:]:
            cols = line.split()
            if len(cols) == 3:
                usage["percpu_user"].append(int(cols[1]))
                usage["percpu_kernel"].append(int(cols[2]))
        st = files.read_keyed(acct, "cpuacct.stat")
        ns = 10**9 // _ticks()
        usage["user"] = st.get("user", 0) * ns
        usage["kernel"] = st.get("system", 0) * ns
    thr = files.read_keyed(paths["cpu"], "cpu.stat") if paths.get("cpu") else {}
    return {
        "usage": _omit(usage, "total", "percpu", "percpu_kernel", "percpu_user"),
        "throttling": _omit({"periods": thr.get("nr_periods", 0),
                             "throttledPeriods": thr.get("nr_throttled", 0),
                             "throttledTime": thr.get("throttled_time", 0)},
                            "periods", "throttledPeriods", "throttledTime"),
    }


def _cpu_v2(d: str) -> dict:
    st = files.read_keyed(d, "cpu.stat")
    usage = {"total": st.get("usage_usec", 0) * 1000, "kernel": st.get("system_usec", 0) * 1000,
             "user": st.get("user_usec", 0) * 1000}
    return {
        "usage": _omit(usage, "total"),
        "throttling": _omit({"periods": st.get("nr_periods", 0),
                             "throttledPeriods": st.get("nr_throttled", 0),
                             "throttledTime": st.get("throttled_usec", 0) * 1000},
                            "periods", "throttledPeriods", "throttledTime"),
    }


# ---------------------------------------------------------------- cpuset


def expand_list(text: str) -> list[int]:
    """"0-2,5" -> [0, 1, 2, 5]."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def _cpuset(d: str | None) -> dict:
    v1 = d is not None and files.exists(d, "cpuset.cpu_exclusive")
    out = {"cpus": [], "cpu_exclusive": 0, "mems": [], "mem_hardwall": 0, "mem_exclusive": 0,
           "memory_migrate": 0, "memory_spread_page": 0, "memory_spread_slab": 0,
           "memory_pressure": 0, "sched_load_balance": 0, "sched_relax_domain_level": 0}
    if d is None:
        return _omit(out, "cpus", "mems")
    suffix = "" if v1 else ".effective"
    out["cpus"] = expand_list(files.read_or(d, "cpuset.cpus" + suffix))
    out["mems"] = expand_list(files.read_or(d, "cpuset.mems" + suffix))
    if v1:
        for k in ("cpu_exclusive", "mem_hardwall", "mem_exclusive", "memory_migrate",
                  "memory_spread_page", "memory_spread_slab", "memory_pressure",
                  "sched_load_balance", "sched_relax_domain_level"):
            out[k] = files.read_int(d, "cpuset." + k)
    return _omit(out, "cpus", "mems")


# ---------------------------------------------------------------- memory


def _entry(limit: int, usage: int = 0, peak: int = 0, failcnt: int = 0) -> dict:
    return _omit({"limit": limit, "usage": usage, "max": peak, "failcnt": failcnt},
                 "usage", "max")


def _v1_entry(d: str, prefix: str) -> dict:
    if not files.exists(d, prefix + "usage_in_bytes"):
        return _entry(0)
    return _entry(files.read_int(d, prefix + "limit_in_bytes"),
                  files.read_int(d, prefix + "usage_in_bytes"),
                  files.read_int(d, prefix + "max_usage_in_bytes"),
                  files.read_int(d, prefix + "failcnt"))


def _memory_v1(d: str | None) -> dict:
    if d is None:
        return {"usage": _entry(0), "swap": _entry(0), "kernel": _entry(0),
                "kernelTCP": _entry(0)}
    raw = files.read_keyed(d, "memory.stat")
    out = {"cache": raw.get("cache", 0), "usage": _v1_entry(d, "memory."),
           "swap": _v1_entry(d, "memory.memsw."), "kernel": _v1_entry(d, "memory.kmem."),
           "kernelTCP": _v1_entry(d, "memory.kmem.tcp."), "raw": dict(sorted(raw.items()))}
    return _omit(out, "cache", "raw")


def _memory_v2(d: str) -> dict:
    raw = files.read_keyed(d, "memory.stat")
    usage = files.read_int(d, "memory.current")
    limit = files.read_int(d, "memory.max", U64_MAX)
    events = files.read_keyed(d, "memory.events")
    mem = _entry(limit, usage, files.read_int(d, "memory.peak"), events.get("max", 0))
    if files.exists(d, "memory.swap.current"):
        swap_max = files.read_int(d, "memory.swap.max", U64_MAX)
        both = U64_MAX if U64_MAX in (swap_max, limit) else swap_max + limit
        swap = _entry(both, usage + files.read_int(d, "memory.swap.current"))
    else:
        swap = _entry(0)
    out = {"cache": raw.get("file", 0), "usage": mem, "swap": swap, "kernel": _entry(0),
           "kernelTCP": _entry(0), "raw": dict(sorted(raw.items()))}
    return _omit(out, "cache", "raw")


# ---------------------------------------------------------------- pids, blkio, hugetlb


def _pids(d: str | None) -> dict:
    if d is None:
        return {}
    limit = files.read_int(d, "pids.max", 0)
    return _omit({"current": files.read_int(d, "pids.current"),
                  "limit": 0 if limit == U64_MAX else limit}, "current", "limit")


_BLKIO_V1 = (
    # (our key, files in runc's order of preference: bfq, then throttle)
    ("ioServiceBytesRecursive", ("blkio.bfq.io_service_bytes_recursive",
                                 "blkio.io_service_bytes_recursive",
                                 "blkio.throttle.io_service_bytes_recursive",
                                 "blkio.throttle.io_service_bytes")),
    ("ioServicedRecursive", ("blkio.bfq.io_serviced_recursive", "blkio.io_serviced_recursive",
                             "blkio.throttle.io_serviced_recursive",
                             "blkio.throttle.io_serviced")),
)


def _blkio_entries(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) == 3 and ":" in cols[0]:
            major, _, minor = cols[0].partition(":")
            out.append(_omit({"major": int(major), "minor": int(minor), "op": cols[1],
                              "value": int(cols[2])}, "major", "minor", "op", "value"))
    return out


def _blkio_v1(d: str | None) -> dict:
    out: dict = {}
    if d is None:
        return out
    for key, names in _BLKIO_V1:
        for name in names:
            if files.exists(d, name):
                entries = _blkio_entries(files.read_or(d, name))
                if entries:
                    out[key] = entries
                break
    return out


def _blkio_v2(d: str) -> dict:
    sb, sv = [], []
    for line in files.read_or(d, "io.stat").splitlines():
        dev, *kvs = line.split()
        major, _, minor = dev.partition(":")
        vals = dict(kv.split("=", 1) for kv in kvs if "=" in kv)
        for key, op, into in (("rbytes", "Read", sb), ("wbytes", "Write", sb),
                              ("rios", "Read", sv), ("wios", "Write", sv)):
            if key in vals:
                into.append(_omit({"major": int(major), "minor": int(minor), "op": op,
                                   "value": int(vals[key])}, "major", "minor", "op", "value"))
    return _omit({"ioServiceBytesRecursive": sb, "ioServicedRecursive": sv},
                 "ioServiceBytesRecursive", "ioServicedRecursive")


def _hugetlb(d: str | None, v1: bool) -> dict:
    from runtime.cgroups.resources import hugepage_sizes

    out = {}
    if d is None:
        return out
    for size in hugepage_sizes():
        if v1:
            if not files.exists(d, f"hugetlb.{size}.usage_in_bytes"):
                continue
            e = {"usage": files.read_int(d, f"hugetlb.{size}.usage_in_bytes"),
                 "max": files.read_int(d, f"hugetlb.{size}.max_usage_in_bytes"),
                 "failcnt": files.read_int(d, f"hugetlb.{size}.failcnt")}
        else:
            if not files.exists(d, f"hugetlb.{size}.current"):
                continue
            e = {"usage": files.read_int(d, f"hugetlb.{size}.current"),
                 "failcnt": files.read_keyed(d, f"hugetlb.{size}.events").get("max", 0)}
        out[size] = _omit(e, "usage", "max")
    return out
