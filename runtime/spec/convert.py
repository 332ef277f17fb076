"""config.json's `process` (and exec's --process FILE) and `linux` into records: runc's
checks (libcontainer/configs/validate), each error naming the field."""

from __future__ import annotations

import os

from runtime import schema
from runtime.errors import ConfigError
from runtime.spec import (
    CAP_NUMBER,
    RLIMITS,
    Capabilities,
    CPUAffinity,
    Device,
    IDMapping,
    IntelRdt,
    IOPriority,
    Linux,
    MemoryPolicy,
    Namespace,
    NetDevice,
    Personality,
    Process,
    Rlimit,
    Scheduler,
    User,
)

# ---------------------------------------------------------------- process


def _caps(c: dict | None) -> Capabilities | None:
    if c is None:
        return None
    sets = {}
    for name in ("bounding", "effective", "inheritable", "permitted", "ambient"):
        if name not in c:
            continue
        nums = []
        for cap in c[name]:
            if cap not in CAP_NUMBER:
                raise ConfigError(f"process.capabilities.{name}", f"unknown capability {cap!r}")
            nums.append(CAP_NUMBER[cap])
        sets[name] = tuple(nums)
    return Capabilities(**sets)


def _rlimits(items: list) -> tuple[Rlimit, ...]:
    out, seen = [], set()
    for i, r in enumerate(items):
        where = f"process.rlimits[{i}]"
        name = r["type"]
        res = RLIMITS.get(name.removeprefix("RLIMIT_"))
        if res is None:
            raise ConfigError(f"{where}.type", f"unknown rlimit {name!r}")
        if name in seen:
            raise ConfigError(f"{where}.type", f"{name} is given twice")
        if r["soft"] > r["hard"]:
            raise ConfigError(where, f"{name} soft limit {r['soft']} is above the hard limit")
        seen.add(name)
        out.append(Rlimit(name, res, r["soft"], r["hard"]))
    return tuple(out)


def to_process(p: dict) -> Process:
    args = tuple(p.get("args") or ())
    if not args:
        raise ConfigError("process.args", "must name the program to run")
    if not os.path.isabs(p["cwd"]):
        raise ConfigError("process.cwd", f"{p['cwd']!r} must be an absolute path")
    u = p.get("user") or {}
    cs = p.get("consoleSize") or {}
    size = (cs.get("height", 0), cs.get("width", 0))  # runc resizes only when both are set
    env = tuple(p.get("env") or ())
    for i, e in enumerate(env):
        name, eq, _ = e.partition("=")
        if not eq:  # runc's words
            raise ConfigError(f"process.env[{i}]", f"invalid environment variable: {e!r}")
        if not name:
            raise ConfigError(f"process.env[{i}]",
                              f"environment variable name can't be empty: {e!r}")
    return Process(
        args=args,
        cwd=p["cwd"],
        env=env,
        terminal=p.get("terminal", False),
        console_size=size if all(size) else None,
        user=User(
            u.get("uid", 0), u.get("gid", 0), u.get("umask"), tuple(u.get("additionalGids", ()))
        ),
        rlimits=_rlimits(p.get("rlimits") or []),
        capabilities=_caps(p.get("capabilities")),
        no_new_privileges=p.get("noNewPrivileges", False),
        oom_score_adj=p.get("oomScoreAdj"),
        apparmor_profile=p.get("apparmorProfile") or None,
        selinux_label=p.get("selinuxLabel") or None,
        scheduler=_scheduler(p["scheduler"]) if "scheduler" in p else None,
        io_priority=_io_priority(p["ioPriority"]) if "ioPriority" in p else None,
        exec_cpu_affinity=_affinity(p["execCPUAffinity"]) if "execCPUAffinity" in p else None,
    )


def cpu_list(text: str, field: str, limit: int = 65536) -> tuple[int, ...] | None:
    """"0-3,7" -> (0, 1, 2, 3, 7), as runc parses CPU and NUMA node lists: elements split on
    "," and trimmed, empty ones skipped; "" means unset (None)."""
    if text == "":
        return None
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, dash, hi = part.partition("-")
        try:
            a = int(lo.strip())
            b = int(hi.strip()) if dash else a
        except ValueError:
            raise ConfigError(field, f"invalid range {part!r}") from None
        if a > b:
            raise ConfigError(field, f"invalid range {part!r}")
        if b > limit:
            raise ConfigError(field, f"{b}: values larger than {limit} are not supported")
        out.update(range(a, b + 1))
    if not out:
        raise ConfigError(field, f"no members found in set {text!r}")
    return tuple(sorted(out))


def _scheduler(s: dict) -> Scheduler:
    f = "process.scheduler"
    sch = Scheduler(s["policy"], s.get("nice", 0), s.get("priority", 0), tuple(s.get("flags", ())),
                    s.get("runtime", 0), s.get("deadline", 0), s.get("period", 0))
    pol = sch.policy
    if pol == "SCHED_ISO":
        raise ConfigError(f"{f}.policy", "SCHED_ISO is reserved: Linux does not implement it")
    if not -20 <= sch.nice <= 19:
        raise ConfigError(f"{f}.nice", f"{sch.nice} is outside -20..19")
    if pol in ("SCHED_FIFO", "SCHED_RR"):
        if not 1 <= sch.priority <= 99:
            raise ConfigError(f"{f}.priority", f"{pol} needs a priority in 1..99")
    elif sch.priority:
        raise ConfigError(f"{f}.priority", "can only be set for SCHED_FIFO or SCHED_RR")
    if pol == "SCHED_DEADLINE":
        period = sch.period or sch.deadline
        if not 1024 <= sch.runtime <= sch.deadline <= period:
            raise ConfigError(f, "SCHED_DEADLINE needs 1024 <= runtime <= deadline <= period "
                                 "(nanoseconds)")
    else:
        for name in ("runtime", "deadline", "period"):
            if getattr(sch, name):
                raise ConfigError(f"{f}.{name}", "can only be set for SCHED_DEADLINE")
    if len(set(sch.flags)) != len(sch.flags):
        raise ConfigError(f"{f}.flags", "a flag is given twice")
    return sch


def _io_priority(io: dict) -> IOPriority:
    prio = io.get("priority", 0)
    if not 0 <= prio <= 7:
        raise ConfigError("process.ioPriority.priority", f"{prio} is outside 0..7")
    return IOPriority(io["class"], prio)


def _affinity(a: dict) -> CPUAffinity:
    f = "process.execCPUAffinity"
    return CPUAffinity(cpu_list(a.get("initial", ""), f"{f}.initial"),
                       cpu_list(a.get("final", ""), f"{f}.final"))


def parse_process(raw: object, check: bool = True) -> Process:
    """A runtime-spec `process` object on its own (exec's --process FILE): the schema's
    rules for config.json's `process` (unless `check` is off: a config create checked),
    then the same conversion. ConfigError names the field ("process.args")."""
    try:
        if check:
            schema.check_process(raw)
    except schema.SchemaError as e:
        raise ConfigError(e.path or "process", e.reason) from None
    assert isinstance(raw, dict)
    return to_process(raw)


# ---------------------------------------------------------------- linux


def idmaps(items: list) -> tuple[IDMapping, ...]:
    return tuple(IDMapping(m["containerID"], m["hostID"], m["size"]) for m in items or ())


# set_mempolicy modes that take no nodes, and those that need at least one (runc)
_MPOL_NO_NODES = ("MPOL_DEFAULT", "MPOL_LOCAL")
_MPOL_NEED_NODES = ("MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_PREFERRED_MANY",
                    "MPOL_WEIGHTED_INTERLEAVE")


def memory_policy(m: dict) -> MemoryPolicy:
    f = "linux.memoryPolicy"
    if "mode" not in m:
        raise ConfigError(f"{f}.mode", "is required")
    nodes = cpu_list(m.get("nodes", ""), f"{f}.nodes", limit=4095) or ()
    mp = MemoryPolicy(m["mode"], nodes, tuple(m.get("flags", ())))
    if mp.mode in _MPOL_NO_NODES and nodes:
        raise ConfigError(f"{f}.nodes", f"{mp.mode} takes no nodes, got {len(nodes)}")
    if mp.mode in _MPOL_NEED_NODES and not nodes:
        raise ConfigError(f"{f}.nodes", f"{mp.mode} needs at least one node")
    if {"MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"} <= set(mp.flags):
        raise ConfigError(f"{f}.flags", "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES "
                                        "exclude each other")
    return mp


def personality(p: dict) -> Personality:
    if "domain" not in p:
        raise ConfigError("linux.personality.domain", "is required")
    return Personality(p["domain"])


def _ifname_ok(name: str) -> bool:
    """runc's check: what the kernel's dev_valid_name accepts (at most 15 bytes)."""
    return (0 < len(name.encode()) <= 15 and name not in (".", "..")
            and not any(c in "/:" or c.isspace() for c in name))


def _net_devices(devs: dict) -> tuple[NetDevice, ...]:
    out, names = [], set()
    for host, d in devs.items():
        f = f"linux.netDevices.{host}"
        name = (d or {}).get("name") or host
        if not _ifname_ok(host):
            raise ConfigError(f, f"invalid network device name {host!r}")
        if not _ifname_ok(name):
            raise ConfigError(f"{f}.name", f"invalid network device name {name!r}")
        if name in names:
            raise ConfigError(f"{f}.name", f"{name!r} is given to two devices")
        names.add(name)
        out.append(NetDevice(host, name))
    return tuple(out)


def _intel_rdt(r: dict) -> IntelRdt:
    clos = r.get("closID") or None
    if clos is not None and (clos in (".", "..") or (len(clos) > 1 and "/" in clos)):
        raise ConfigError("linux.intelRdt.closID", f"invalid CLOS id {clos!r}")
    return IntelRdt(clos, r.get("l3CacheSchema") or None, r.get("memBwSchema") or None,
                    tuple(r.get("schemata") or ()), r.get("enableMonitoring", False))


def to_linux(lx: dict) -> Linux:
    seen = set()
    namespaces = []
    for i, n in enumerate(lx.get("namespaces") or ()):
        if n["type"] in seen:
            raise ConfigError(
                f"linux.namespaces[{i}].type", f"namespace {n['type']!r} is given twice"
            )
        seen.add(n["type"])
        path = n.get("path") or None
        if path is not None and not os.path.isabs(path):
            raise ConfigError(f"linux.namespaces[{i}].path", f"{path!r} must be an absolute path")
        namespaces.append(Namespace(n["type"], path))
    devices = tuple(
        Device(
            d["path"],
            d["type"],
            d.get("major", 0),
            d.get("minor", 0),
            _file_mode(d.get("fileMode"), i),
            d.get("uid"),
            d.get("gid"),
        )
        for i, d in enumerate(lx.get("devices") or ())
    )
    for i, d in enumerate(devices):
        if d.type in "cbu" and ("major" not in lx["devices"][i] or "minor" not in lx["devices"][i]):
            raise ConfigError(f"linux.devices[{i}]", f"type {d.type!r} needs major and minor")
        if not os.path.isabs(d.path):
            raise ConfigError(f"linux.devices[{i}].path", f"{d.path!r} must be an absolute path")
    offsets = tuple(
        (clock, o.get("secs", 0), o.get("nanosecs", 0))
        for clock, o in (lx.get("timeOffsets") or {}).items()
    )
    return Linux(
        namespaces=tuple(namespaces),
        uid_mappings=idmaps(lx.get("uidMappings")),
        gid_mappings=idmaps(lx.get("gidMappings")),
        devices=devices,
        sysctl=tuple((lx.get("sysctl") or {}).items()),
        masked_paths=tuple(lx.get("maskedPaths") or ()),
        readonly_paths=tuple(lx.get("readonlyPaths") or ()),
        rootfs_propagation=lx.get("rootfsPropagation") or None,
        mount_label=lx.get("mountLabel") or None,
        cgroups_path=lx.get("cgroupsPath") or None,
        time_offsets=offsets,
        resources=_resources(lx.get("resources") or {}),
        seccomp=lx.get("seccomp"),
        personality=personality(lx["personality"]) if "personality" in lx else None,
        memory_policy=memory_policy(lx["memoryPolicy"]) if "memoryPolicy" in lx else None,
        net_devices=_net_devices(lx.get("netDevices") or {}),
        intel_rdt=_intel_rdt(lx["intelRdt"]) if "intelRdt" in lx else None,
    )


def _file_mode(mode: int | None, i: int) -> int | None:
    """runc takes a device's fileMode with the file type bits (S_IFMT) dropped, so a
    st_mode such as 0o20666 works; what is left must be permission bits (with setuid,
    setgid and sticky)."""
    if mode is None:
        return None
    mode &= ~0o170000
    if mode > 0o7777:
        raise ConfigError(f"linux.devices[{i}].fileMode", f"{oct(mode)} is not a file mode")
    return mode


def _resources(res: dict) -> dict:
    """The defaults runc gives where the schema has required members (schema.RELAXED)."""
    if "pids" in res and "limit" not in res["pids"]:
        res = {k: v for k, v in res.items() if k != "pids"}  # limit 0: not set
    if any("allow" not in d for d in res.get("devices") or ()):
        res = {**res, "devices": [{"allow": False, **d} for d in res["devices"]]}
    return res
