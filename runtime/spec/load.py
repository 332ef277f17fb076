"""Reading config.json and turning it into a Config: JSON, runc's normalising, the schema
(runtime.schema), the conversions (spec.convert), then the semantic rules the schema cannot
say (runc's validator: the namespaces a field needs, sysctls)."""

from __future__ import annotations

import os

from runtime import fastjson, fields, schema
from runtime.errors import ConfigError, OnggiError, reason
from runtime.spec import HOOK_KINDS, Config, Hook, Linux, Mount
from runtime.spec.convert import idmaps, to_linux, to_process

# Sections of other platforms: runc (Go's decoder) ignores them, and so does create.
_OTHER_PLATFORMS = ("solaris", "windows", "zos", "freebsd")  # "vm" is refused (fields.py)


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
    linux = to_linux(raw.get("linux") or {})
    proc = to_process(raw["process"]) if "process" in raw else None
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


def _mount(m: dict, i: int) -> Mount:
    return Mount(
        destination=m["destination"],
        type=m.get("type"),
        source=m.get("source"),
        options=tuple(m.get("options", ())),
        uid_mappings=idmaps(m.get("uidMappings")),
        gid_mappings=idmaps(m.get("gidMappings")),
    )


def _hooks(raw: dict) -> dict[str, tuple[Hook, ...]]:
    for kind in raw:
        if kind not in HOOK_KINDS:  # the schema lets it through; we would never run it
            raise ConfigError(f"hooks.{kind}", "unknown hook kind")
    return {k: tuple(_hook(h) for h in v) for k, v in raw.items()}


def _hook(h: dict) -> Hook:
    env = h.get("env")
    return Hook(h["path"], tuple(h.get("args", ())), None if env is None else tuple(env),
                h.get("timeout"))


# ---------------------------------------------------------------- semantic checks

# The ipc namespace's sysctls (runc's validSysctlMap: exact names), plus fs.mqueue.*.
_SYSCTL_IPC = frozenset("kernel.msgmax kernel.msgmnb kernel.msgmni kernel.sem kernel.shmall "
                        "kernel.shmmax kernel.shmmni kernel.shm_rmid_forced".split())


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
