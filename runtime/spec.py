"""config.json -> a checked, frozen Config, once (runc's specconv).

The schema check (runtime.schema) has already vouched for every type, so this module only
converts and applies the semantic rules the schema cannot say. The init consumes the result
and never looks at the raw JSON again.
"""

from __future__ import annotations

import os

from runtime import fastjson, fields, schema
from runtime.errors import ConfigError, OnggiError, reason
from runtime.record import Record

CLONE_FLAGS = {
    "mount": 0x00020000,
    "uts": 0x04000000,
    "ipc": 0x08000000,
    "user": 0x10000000,
    "pid": 0x20000000,
    "network": 0x40000000,
    "cgroup": 0x02000000,
    "time": 0x00000080,
}
CAPABILITIES = (
    "CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL CAP_SETGID "
    "CAP_SETUID CAP_SETPCAP CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE CAP_NET_BROADCAST "
    "CAP_NET_ADMIN CAP_NET_RAW CAP_IPC_LOCK CAP_IPC_OWNER CAP_SYS_MODULE CAP_SYS_RAWIO "
    "CAP_SYS_CHROOT CAP_SYS_PTRACE CAP_SYS_PACCT CAP_SYS_ADMIN CAP_SYS_BOOT CAP_SYS_NICE "
    "CAP_SYS_RESOURCE CAP_SYS_TIME CAP_SYS_TTY_CONFIG CAP_MKNOD CAP_LEASE CAP_AUDIT_WRITE "
    "CAP_AUDIT_CONTROL CAP_SETFCAP CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG CAP_WAKE_ALARM "
    "CAP_BLOCK_SUSPEND CAP_AUDIT_READ CAP_PERFMON CAP_BPF CAP_CHECKPOINT_RESTORE"
).split()
CAP_NUMBER = {name: i for i, name in enumerate(CAPABILITIES)}

RLIMITS = {
    name: i
    for i, name in enumerate(
        "CPU FSIZE DATA STACK CORE RSS NPROC NOFILE MEMLOCK AS LOCKS SIGPENDING MSGQUEUE "
        "NICE RTPRIO RTTIME".split()
    )
}

# The ipc namespace's sysctls (runc's validSysctlMap: exact names), plus fs.mqueue.*.
_SYSCTL_IPC = frozenset("kernel.msgmax kernel.msgmnb kernel.msgmni kernel.sem kernel.shmall "
                        "kernel.shmmax kernel.shmmni kernel.shm_rmid_forced".split())
# Sections of other platforms: runc (Go's decoder) ignores them, and so does create.
_OTHER_PLATFORMS = ("solaris", "windows", "zos", "freebsd")  # "vm" is refused (fields.py)


class IDMapping(Record):
    container_id: int
    host_id: int
    size: int


class Mount(Record):
    destination: str
    type: str | None = None
    source: str | None = None
    options: tuple[str, ...] = ()
    uid_mappings: tuple[IDMapping, ...] = ()
    gid_mappings: tuple[IDMapping, ...] = ()


class Rlimit(Record):
    name: str
    resource: int
    soft: int
    hard: int


class Capabilities(Record):
    """Capability numbers per set; None for a set the config leaves out."""

    bounding: tuple[int, ...] | None = None
    effective: tuple[int, ...] | None = None
    inheritable: tuple[int, ...] | None = None
    permitted: tuple[int, ...] | None = None
    ambient: tuple[int, ...] | None = None


class User(Record):
    uid: int = 0
    gid: int = 0
    umask: int | None = None
    additional_gids: tuple[int, ...] = ()


class Scheduler(Record):
    """process.scheduler (sched_setattr(2)); names already checked against the spec's enums."""

    policy: str
    nice: int = 0
    priority: int = 0
    flags: tuple[str, ...] = ()
    runtime: int = 0  # ns, SCHED_DEADLINE only
    deadline: int = 0
    period: int = 0


class IOPriority(Record):
    io_class: str  # IOPRIO_CLASS_RT / _BE / _IDLE
    priority: int = 0


class CPUAffinity(Record):
    """process.execCPUAffinity as CPU numbers; None where the config gives no list."""

    initial: tuple[int, ...] | None = None
    final: tuple[int, ...] | None = None


class Process(Record):
    args: tuple[str, ...]
    cwd: str
    env: tuple[str, ...] = ()
    terminal: bool = False
    console_size: tuple[int, int] | None = None  # (height, width)
    user: User = User()
    rlimits: tuple[Rlimit, ...] = ()
    capabilities: Capabilities | None = None
    no_new_privileges: bool = False
    oom_score_adj: int | None = None
    apparmor_profile: str | None = None
    selinux_label: str | None = None
    scheduler: Scheduler | None = None
    io_priority: IOPriority | None = None
    exec_cpu_affinity: CPUAffinity | None = None


class Namespace(Record):
    type: str
    path: str | None = None


class Device(Record):
    path: str
    type: str
    major: int = 0
    minor: int = 0
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None


class Hook(Record):
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] | None = None  # None: no `env` (runc: the runtime's environment)
    timeout: int | None = None


class Personality(Record):
    domain: str  # LINUX or LINUX32


class MemoryPolicy(Record):
    mode: str
    nodes: tuple[int, ...] = ()
    flags: tuple[str, ...] = ()


class NetDevice(Record):
    host: str  # the link's name on the host (the key in linux.netDevices)
    name: str  # its name in the container


class IntelRdt(Record):
    clos_id: str | None = None
    l3_cache_schema: str | None = None
    mem_bw_schema: str | None = None
    schemata: tuple[str, ...] = ()
    enable_monitoring: bool = False


class Linux(Record):
    namespaces: tuple[Namespace, ...] = ()
    uid_mappings: tuple[IDMapping, ...] = ()
    gid_mappings: tuple[IDMapping, ...] = ()
    devices: tuple[Device, ...] = ()
    sysctl: tuple[tuple[str, str], ...] = ()
    masked_paths: tuple[str, ...] = ()
    readonly_paths: tuple[str, ...] = ()
    rootfs_propagation: str | None = None
    mount_label: str | None = None
    cgroups_path: str | None = None
    time_offsets: tuple[tuple[str, int, int], ...] = ()  # (clock, secs, nanosecs)
    resources: dict = {}
    seccomp: dict | None = None
    personality: Personality | None = None
    memory_policy: MemoryPolicy | None = None
    net_devices: tuple[NetDevice, ...] = ()
    intel_rdt: IntelRdt | None = None

    def ns(self, kind: str) -> Namespace | None:
        return next((n for n in self.namespaces if n.type == kind), None)


class Config(Record):
    oci_version: str
    bundle: str
    root_path: str  # absolute
    root_readonly: bool = False
    process: Process | None = None
    mounts: tuple[Mount, ...] = ()
    hostname: str | None = None
    domainname: str | None = None
    hooks: dict[str, tuple[Hook, ...]] = {}
    annotations: dict[str, str] = {}
    linux: Linux = Linux()


def has_exec_attrs(proc: Process | None, lx: Linux) -> bool:
    """Does the config set a field runtime.linux.execattrs handles? (Cheap: a create without
    any imports and probes nothing for them.)"""
    if lx.personality is not None or lx.memory_policy is not None:
        return True
    return proc is not None and any((
        proc.scheduler, proc.io_priority, proc.exec_cpu_affinity, proc.apparmor_profile,
        proc.selinux_label))


# ---------------------------------------------------------------- loading


def load_bundle(bundle: str) -> tuple[Config, bytes]:
    """Read BUNDLE/config.json, check it and convert it; returns (config, the document as
    create accepted it), the latter for the state dir's snapshot: normalised (nulls dropped,
    an empty seccomp object gone), so exec reads the same process and filter create ran."""
    bundle = os.path.abspath(bundle)
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise OnggiError(f"{path}: no such file or directory (is --bundle right?)") from None
    except OSError as e:
        raise OnggiError(f"{path}: {reason(e)}") from None
    raw = parse_json(data, path)
    cfg = parse(raw, bundle)  # normalises `raw` in place
    return cfg, fastjson.dumps(raw).encode()


def parse_json(data: bytes, path: str) -> object:
    try:
        doc = fastjson.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise OnggiError(f"{path}: invalid JSON: {e}") from None
    except RecursionError:
        raise OnggiError(f"{path}: invalid JSON: nested too deeply") from None
    if isinstance(data, bytes) and fastjson.may_hold_surrogates(data):  # rare: look closer
        bad = fastjson.lone_surrogate(doc)
        if bad:
            raise ConfigError(bad, "not valid unicode (a lone surrogate)")
    return doc


def check_schema(raw: object) -> None:
    """The schema, where it is not stricter than runc (schema.RELAXED)."""
    try:
        schema.check_config(raw, relaxed=True)
    except schema.SchemaError as e:
        raise ConfigError(e.path or "(root)", e.reason) from None


def _drop_nulls(doc: object) -> object:
    """Go's decoder reads a member whose value is null as absent: so does create. (A null
    inside an array stays, and the schema refuses it, as runc's decoder does for most.)"""
    if isinstance(doc, dict):
        for key in [k for k, v in doc.items() if v is None]:
            del doc[key]
        for v in doc.values():
            _drop_nulls(v)
    elif isinstance(doc, list):
        for v in doc:
            _drop_nulls(v)
    return doc


def normalize(raw: object) -> object:
    """What runc's decoding does before any check: null members are absent, other
    platforms' sections are not looked at, and a seccomp object with neither a
    defaultAction nor syscalls is no filter (runc's SetupSeccomp). Refused fields are
    errors and ignored ones (other platforms' sections among them) warnings first
    (runtime.fields)."""
    if not isinstance(raw, dict):
        return raw
    _drop_nulls(raw)
    fields.check(raw)
    for name in _OTHER_PLATFORMS:
        raw.pop(name, None)
    sc = (raw.get("linux") or {}).get("seccomp") if isinstance(raw.get("linux"), dict) else None
    if isinstance(sc, dict) and "defaultAction" not in sc and not sc.get("syscalls"):
        del raw["linux"]["seccomp"]
    return raw


def parse(raw: object, bundle: str) -> Config:
    raw = normalize(raw)
    check_schema(raw)
    assert isinstance(raw, dict)
    _string_maps(raw)
    ver = raw["ociVersion"]
    if not ver.startswith("1."):
        raise ConfigError("ociVersion", f"{ver!r} is not a 1.x runtime-spec version")
    root = raw.get("root")
    if root is None:
        raise ConfigError("root", "is required on Linux")
    root_path = os.path.normpath(os.path.join(bundle, root["path"]))
    if not os.path.isdir(root_path):
        raise ConfigError("root.path", f"{root_path} is not a directory")
    linux = _linux(raw.get("linux") or {})
    proc = _process(raw["process"]) if "process" in raw else None
    cfg = Config(
        oci_version=ver,
        bundle=bundle,
        root_path=root_path,
        root_readonly=root.get("readonly", False),
        process=proc,
        mounts=tuple(_mount(m, i) for i, m in enumerate(raw.get("mounts", ()))),
        hostname=raw.get("hostname"),
        domainname=raw.get("domainname"),
        hooks=_hooks(raw.get("hooks") or {}),
        annotations=dict(raw.get("annotations") or {}),
        linux=linux,
    )
    _semantic_checks(cfg)
    return cfg


def _string_maps(raw: dict) -> None:
    """annotations and linux.sysctl map strings to strings; the schema checks only values
    whose key is not empty (runc's decoder checks all)."""
    for field, doc in (("annotations", raw.get("annotations")),
                       ("linux.sysctl", (raw.get("linux") or {}).get("sysctl"))):
        for key, value in (doc or {}).items():
            if not isinstance(value, str):
                raise ConfigError(f"{field}.{key}", "must be of type string")


def _idmaps(items: list) -> tuple[IDMapping, ...]:
    return tuple(IDMapping(m["containerID"], m["hostID"], m["size"]) for m in items or ())


def _mount(m: dict, i: int) -> Mount:
    return Mount(
        destination=m["destination"],
        type=m.get("type"),
        source=m.get("source"),
        options=tuple(m.get("options", ())),
        uid_mappings=_idmaps(m.get("uidMappings")),
        gid_mappings=_idmaps(m.get("gidMappings")),
    )


HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")


def _hooks(raw: dict) -> dict[str, tuple[Hook, ...]]:
    for kind in raw:
        if kind not in HOOK_KINDS:  # the schema lets it through; we would never run it
            raise ConfigError(f"hooks.{kind}", "unknown hook kind")
    return {k: tuple(_hook(h) for h in v) for k, v in raw.items()}


def _hook(h: dict) -> Hook:
    env = h.get("env")
    return Hook(h["path"], tuple(h.get("args", ())), None if env is None else tuple(env),
                h.get("timeout"))


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


def _process(p: dict) -> Process:
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


# ------------------------------------------------ spec 1.2/1.3 process and linux fields
# runc's checks (libcontainer/configs/validate), each error naming the field.


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


# set_mempolicy modes that take no nodes, and those that need at least one (runc)
_MPOL_NO_NODES = ("MPOL_DEFAULT", "MPOL_LOCAL")
_MPOL_NEED_NODES = ("MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_PREFERRED_MANY",
                    "MPOL_WEIGHTED_INTERLEAVE")


def _memory_policy(m: dict) -> MemoryPolicy:
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


def _personality(p: dict) -> Personality:
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
    return _process(raw)


def _linux(lx: dict) -> Linux:
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
        uid_mappings=_idmaps(lx.get("uidMappings")),
        gid_mappings=_idmaps(lx.get("gidMappings")),
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
        personality=_personality(lx["personality"]) if "personality" in lx else None,
        memory_policy=_memory_policy(lx["memoryPolicy"]) if "memoryPolicy" in lx else None,
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


def sysctl_path(key: str) -> str:
    """The file under /proc/sys for a sysctl key: dots separate (a slash inside a part
    stands for a dot, as sysctl(8) writes "eth0.100"), unless the key is written with
    slashes already."""
    if _slash_form(key):
        return key
    return key.replace("/", "\0").replace(".", "/").replace("\0", ".")


def _slash_form(key: str) -> bool:
    """runc's convertSysctlVariableToDotsSeparator: the first separator decides."""
    for c in key:
        if c in "./":
            return c == "/"
    return False


def _sysctl_name(key: str) -> str:
    """The dotted name runc's validator looks at."""
    if not _slash_form(key):
        return key
    return key.translate(str.maketrans({"/": ".", ".": "/"}))


def _same_ns(path: str, kind: str) -> bool:
    """Whether the namespace file `path` is the runtime's own `kind` namespace."""
    mine = os.stat(f"/proc/self/ns/{kind}")
    st = os.stat(path)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _check_sysctls(lx: Linux) -> None:
    """runc's validator: each sysctl must belong to a namespace the container has apart
    from the host's (error texts are runc's). onggi is stricter for ipc: joining the host's
    ipc namespace by path counts as the host's (runc would write the host's values)."""
    for key, _ in lx.sysctl:
        name, field = _sysctl_name(key), f"linux.sysctl.{key}"
        if name in _SYSCTL_IPC or name.startswith("fs.mqueue."):
            ns = lx.ns("ipc")
            if ns is None or ns.path is not None and _joins_host(ns.path, "ipc", field):
                raise ConfigError(field, f'sysctl "{name}" is not allowed in the hosts ipc '
                                  "namespace")
            continue
        if name.startswith("net."):
            ns = lx.ns("network")
            if ns is None or ns.path is not None and _joins_host(ns.path, "net", field):
                raise ConfigError(field, f'sysctl "{name}" not allowed in host network namespace')
            continue
        if lx.ns("uts") is not None:
            if name == "kernel.domainname":
                continue
            if name == "kernel.hostname":
                raise ConfigError(field, f'sysctl "{name}" is not allowed as it conflicts with '
                                  'the OCI "hostname" field')
        raise ConfigError(field, f'sysctl "{name}" is not in a separate kernel namespace')


def _joins_host(path: str, kind: str, field: str) -> bool:
    try:
        return _same_ns(path, kind)
    except OSError as e:
        raise ConfigError(field, f"invalid {kind}ns path: stat {path}: "
                          f"{reason(e)}") from None


def _semantic_checks(cfg: Config) -> None:
    if cfg.process is None:  # optional to the schema, but `start` needs it (runc refuses too)
        raise ConfigError("process", "is required: the container has nothing to run")
    lx = cfg.linux
    userns = lx.ns("user")
    if (lx.uid_mappings or lx.gid_mappings) and userns is None:
        raise ConfigError("linux.uidMappings", "needs a user namespace in linux.namespaces")
    if userns is not None and userns.path is None and not (lx.uid_mappings and lx.gid_mappings):
        raise ConfigError(
            "linux.uidMappings", "a new user namespace needs uidMappings and gidMappings"
        )
    if cfg.hostname and lx.ns("uts") is None:
        raise ConfigError("hostname", "setting it needs a uts namespace in linux.namespaces")
    if cfg.domainname and lx.ns("uts") is None:
        raise ConfigError("domainname", "setting it needs a uts namespace in linux.namespaces")
    if lx.time_offsets and (lx.ns("time") is None or lx.ns("time").path is not None):
        raise ConfigError("linux.timeOffsets", "needs a new time namespace in linux.namespaces")
    if lx.rootfs_propagation and lx.rootfs_propagation not in (
        "shared",
        "slave",
        "private",
        "unbindable",
        "rshared",
        "rslave",
        "rprivate",
        "runbindable",
    ):
        raise ConfigError(
            "linux.rootfsPropagation", f"unknown propagation {lx.rootfs_propagation!r}"
        )
    _check_sysctls(lx)
    if lx.net_devices and lx.ns("network") is None:
        raise ConfigError("linux.netDevices", "needs a network namespace in linux.namespaces "
                                              "(the devices would stay on the host)")
    if lx.rootfs_propagation and lx.ns("mount") is None:
        raise ConfigError("linux.rootfsPropagation", "needs a mount namespace in "
                          "linux.namespaces (without one it would change the host's mounts)")
    for i, m in enumerate(cfg.mounts):
        if (m.uid_mappings or m.gid_mappings) and not ({"idmap", "ridmap"} & set(m.options)):
            raise ConfigError(f"mounts[{i}].uidMappings", "needs the idmap or ridmap option")
