"""config.json -> a checked, frozen Config, once (runc's specconv).

The schema check (runtime.schema) has already vouched for every type, so this package only
converts and applies the semantic rules the schema cannot say. The init consumes the result
and never looks at the raw JSON again. Here: the records a config becomes and the spec's
names and numbers; in `load`: reading, normalising, checking (the schema, then the semantic
rules, sysctls among them); in `convert`: `process` and `linux` into records, with runc's
checks (libcontainer/configs/validate), each error naming the field. Three modules, not
more: `create` imports all of them, and each costs it a file to load.
"""

from __future__ import annotations

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

HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")


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


# What other modules use from the parts, importable from runtime.spec itself (after the
# records above: the parts import those from here).
from runtime.spec.convert import cpu_list, memory_policy, parse_process, personality  # noqa: E402

_LOAD = frozenset({"check_schema", "load_bundle", "normalize", "parse", "parse_json",
                   "sysctl_path"})


def __getattr__(name: str):
    """runtime.spec.load's names, loaded on first use: exec converts a process and needs
    no schema or field table (~0.5 ms it would pay on every exec)."""
    if name in _LOAD:
        from runtime.spec import load

        return getattr(load, name)
    raise AttributeError(f"module 'runtime.spec' has no attribute {name!r}")

__all__ = [
    "CAPABILITIES", "CAP_NUMBER", "CLONE_FLAGS", "HOOK_KINDS", "RLIMITS", "CPUAffinity",
    "Capabilities", "Config", "Device", "Hook", "IDMapping", "IOPriority", "IntelRdt", "Linux",
    "MemoryPolicy", "Mount", "Namespace", "NetDevice", "Personality", "Process", "Rlimit",
    "Scheduler", "User", "check_schema", "cpu_list", "has_exec_attrs", "load_bundle",
    "memory_policy", "normalize", "parse", "parse_json", "parse_process", "personality",
    "sysctl_path",
]
