"""config.json -> a checked, frozen Config, once (runc's specconv).

The schema check (runtime.schema) has already vouched for every type, so this module only
converts and applies the semantic rules the schema cannot say. The init consumes the result
and never looks at the raw JSON again.
"""

from __future__ import annotations

import os

from runtime import fastjson, schema
from runtime.errors import ConfigError, OnggiError
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

# sysctl prefixes and the namespace that makes them safe to set (runc's validator).
_SYSCTL_NS = (
    ("net.", "network"),
    ("kernel.msgmax", "ipc"),
    ("kernel.msgmnb", "ipc"),
    ("kernel.msgmni", "ipc"),
    ("kernel.sem", "ipc"),
    ("kernel.shmall", "ipc"),
    ("kernel.shmmax", "ipc"),
    ("kernel.shmmni", "ipc"),
    ("kernel.shm_rmid_forced", "ipc"),
    ("fs.mqueue.", "ipc"),
    ("kernel.hostname", "uts"),
    ("kernel.domainname", "uts"),
)


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
    env: tuple[str, ...] = ()
    timeout: int | None = None


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


# ---------------------------------------------------------------- loading


def load_bundle(bundle: str) -> tuple[Config, bytes]:
    """Read BUNDLE/config.json, check it and convert it; returns (config, the file's bytes),
    the latter for the state dir's snapshot."""
    bundle = os.path.abspath(bundle)
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise OnggiError(f"{path}: no such file or directory (is --bundle right?)") from None
    except OSError as e:
        raise OnggiError(f"{path}: {e.strerror.lower()}") from None
    return parse(parse_json(data, path), bundle), data


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
    try:
        schema.check_config(raw)
    except schema.SchemaError as e:
        raise ConfigError(e.path or "(root)", e.reason) from None


def parse(raw: object, bundle: str) -> Config:
    check_schema(raw)
    assert isinstance(raw, dict)
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
    return Hook(h["path"], tuple(h.get("args", ())), tuple(h.get("env", ())), h.get("timeout"))


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
    cs = p.get("consoleSize")
    return Process(
        args=args,
        cwd=p["cwd"],
        env=tuple(p.get("env") or ()),
        terminal=p.get("terminal", False),
        console_size=(cs["height"], cs["width"]) if cs else None,
        user=User(
            u.get("uid", 0), u.get("gid", 0), u.get("umask"), tuple(u.get("additionalGids", ()))
        ),
        rlimits=_rlimits(p.get("rlimits") or []),
        capabilities=_caps(p.get("capabilities")),
        no_new_privileges=p.get("noNewPrivileges", False),
        oom_score_adj=p.get("oomScoreAdj"),
        apparmor_profile=p.get("apparmorProfile"),
        selinux_label=p.get("selinuxLabel"),
    )


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
            d.get("fileMode"),
            d.get("uid"),
            d.get("gid"),
        )
        for d in lx.get("devices") or ()
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
        resources=lx.get("resources") or {},
        seccomp=lx.get("seccomp"),
    )


def _semantic_checks(cfg: Config) -> None:
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
    for key, _ in lx.sysctl:
        for prefix, ns in _SYSCTL_NS:
            if key.startswith(prefix) and lx.ns(ns) is None:
                raise ConfigError(
                    f"linux.sysctl.{key}", f"needs a {ns} namespace in linux.namespaces"
                )
    for i, m in enumerate(cfg.mounts):
        if (m.uid_mappings or m.gid_mappings) and not ({"idmap", "ridmap"} & set(m.options)):
            raise ConfigError(f"mounts[{i}].uidMappings", "needs the idmap or ridmap option")
