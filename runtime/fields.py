"""Every field of runtime-spec v1.3.0's config.md and config-linux.md, in exactly one group:

- APPLIED: onggi applies it exactly. Some depend on the host (an LSM, resctrl, NUMA
  nodes, a cgroup controller): where the host cannot do it, `create` refuses the config
  with a one-line error naming the field, never runs it without.
- REFUSED: onggi never applies it; a config that sets it is refused with `why`.
- IGNORED: runc ignores it too; onggi warns in --log ("<field>: ignored: <why>") and runs
  the container. The README lists these with the reason.

Paths: "." between keys, "[]" for the items of an array, "<key>" for the keys of a map, and
"X.**" for X and everything under it (only for other platforms' sections). A test walks the
bundled schema (runtime/schemas) and checks that every field is here exactly once, so a
field the spec adds cannot slip through; `onggi features` is built from these groups.
`create` only looks at the two small tables of refused and ignored fields (`check`); the
whole table is built on demand (`table()`, for `features` and the tests).
"""

from __future__ import annotations

from runtime import log
from runtime.errors import ConfigError
from runtime.record import Record

APPLIED = "applied"
REFUSED = "refused"
IGNORED = "ignored"


class Field(Record):
    group: str
    why: str = ""  # refused/ignored: the reason; applied: when the host may refuse it


# What `check` looks at on every create: the fields that are not simply applied.
REFUSED_FIELDS = {
    "vm.**": "onggi runs containers, not virtual machines (this section is for "
             "hypervisor-based runtimes)",
}
IGNORED_FIELDS = {
    "process.commandLine": "Windows only",
    "process.user.username": "Windows only",
    "linux.personality.flags": "the spec defines no personality flags yet (runc ignores "
                               "them with a warning too)",
    **dict.fromkeys(("windows.**", "solaris.**", "zos.**", "freebsd.**"),
                    "another platform's section (runc ignores it too)"),
}
_CHECKED = tuple((p, REFUSED, why) for p, why in REFUSED_FIELDS.items()) + \
    tuple((p, IGNORED, why) for p, why in IGNORED_FIELDS.items())
_IDMAP = ("containerID", "hostID", "size")


def _applied() -> list[tuple[str, str]]:
    """(path, note) of every applied field; built only for `features` and the tests."""
    from runtime.spec import HOOK_KINDS  # spec imports this module: only here, on demand

    out: list[tuple[str, str]] = []

    def add(why: str, *paths: str) -> None:
        out.extend((p, why) for p in paths)

    add("", "ociVersion", "hostname", "domainname", "annotations.<key>",
        "root.path", "root.readonly",
        *(f"hooks.{k}[].{f}" for k in HOOK_KINDS for f in ("path", "args", "env", "timeout")),
        *(f"mounts[].{f}" for f in ("source", "destination", "options", "type")),
        *(f"mounts[].{m}[].{f}" for m in ("uidMappings", "gidMappings") for f in _IDMAP),
        "process.args", "process.consoleSize.height", "process.consoleSize.width",
        "process.cwd", "process.env", "process.terminal", "process.user.uid",
        "process.user.gid", "process.user.umask", "process.user.additionalGids",
        *(f"process.capabilities.{s}" for s in
          ("bounding", "permitted", "effective", "inheritable", "ambient")),
        "process.oomScoreAdj", "process.noNewPrivileges",
        *(f"process.rlimits[].{f}" for f in ("type", "soft", "hard")),
        "process.ioPriority.class", "process.ioPriority.priority",
        *(f"process.scheduler.{f}" for f in
          ("policy", "nice", "priority", "flags", "runtime", "deadline", "period")),
        *(f"linux.devices[].{f}" for f in ("type", "path", "fileMode", "major", "minor", "uid",
                                           "gid")),
        *(f"linux.{m}[].{f}" for m in ("uidMappings", "gidMappings") for f in _IDMAP),
        "linux.namespaces[].type", "linux.namespaces[].path", "linux.rootfsPropagation",
        "linux.sysctl.<key>", "linux.maskedPaths", "linux.readonlyPaths",
        *(f"linux.timeOffsets.{c}.{f}" for c in ("boottime", "monotonic")
          for f in ("secs", "nanosecs")),
        "linux.personality.domain")
    add("the user process's affinity; initial: the runtime's while it works inside "
        "the container", "process.execCPUAffinity.initial", "process.execCPUAffinity.final")
    add("refused when AppArmor is not enabled on the host", "process.apparmorProfile")
    add("refused when SELinux is not enabled on the host", "process.selinuxLabel")
    add("ignored with a warning when SELinux is not enabled on the host (the spec's "
        "conformance suite expects that; runc fails the mounts instead)", "linux.mountLabel")
    add("refused when a node is not online", "linux.memoryPolicy.mode",
        "linux.memoryPolicy.nodes", "linux.memoryPolicy.flags")
    add("refused when the link does not exist or there is no network namespace",
        "linux.netDevices.<key>.name")
    add("refused when resctrl is not mounted at /sys/fs/resctrl",
        *(f"linux.intelRdt.{f}" for f in
          ("closID", "schemata", "l3CacheSchema", "memBwSchema", "enableMonitoring")))
    # cgroups (runtime/cgroups) and seccomp (runtime/linux/seccomp.py)
    add("cgroups", "linux.cgroupsPath", "linux.resources.unified.<key>",
        *(f"linux.resources.devices[].{f}" for f in ("allow", "type", "major", "minor", "access")),
        "linux.resources.pids.limit", "linux.resources.blockIO.weight",
        "linux.resources.blockIO.leafWeight",
        *(f"linux.resources.blockIO.{t}[].{f}" for t in
          ("throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice",
           "throttleWriteIOPSDevice") for f in ("major", "minor", "rate")),
        *(f"linux.resources.blockIO.weightDevice[].{f}" for f in
          ("major", "minor", "weight", "leafWeight")),
        *(f"linux.resources.cpu.{f}" for f in
          ("cpus", "mems", "period", "quota", "burst", "realtimePeriod", "realtimeRuntime",
           "shares", "idle")),
        "linux.resources.hugepageLimits[].pageSize", "linux.resources.hugepageLimits[].limit",
        *(f"linux.resources.memory.{f}" for f in
          ("kernel", "kernelTCP", "limit", "reservation", "swap", "swappiness",
           "disableOOMKiller", "useHierarchy", "checkBeforeUpdate")),
        "linux.resources.network.classID", "linux.resources.network.priorities[].name",
        "linux.resources.network.priorities[].priority",
        "linux.resources.rdma.<key>.hcaHandles", "linux.resources.rdma.<key>.hcaObjects")
    add("seccomp",
        *(f"linux.seccomp.{f}" for f in ("defaultAction", "defaultErrnoRet", "flags",
                                         "listenerPath", "listenerMetadata", "architectures")),
        *(f"linux.seccomp.syscalls[].{f}" for f in ("names", "action", "errnoRet")),
        *(f"linux.seccomp.syscalls[].args[].{f}" for f in ("index", "value", "valueTwo", "op")))
    return out


_table: dict[str, Field] = {}


def table() -> dict[str, Field]:
    """Every field: {path: Field}. Raises if a path is in two groups."""
    if not _table:
        rows = [(p, APPLIED, why) for p, why in _applied()] + list(_CHECKED)
        for p, group, why in rows:
            if p in _table:
                raise AssertionError(f"{p} is in two groups")
            _table[p] = Field(group, why)
    return _table


def name(path: str) -> str:
    """How an error names the field: "vm", not "vm.**"."""
    return path.removesuffix(".**")


def _present(node: object, parts: list[str]) -> bool:
    """Is the field at `parts` set (to something other than empty) in the raw config?"""
    if not parts or parts == ["**"]:
        return node not in (None, "", [], {})
    key, rest = parts[0], parts[1:]
    if key == "<key>":
        return isinstance(node, dict) and any(_present(v, rest) for v in node.values())
    if key.endswith("[]"):
        items = node.get(key[:-2]) if isinstance(node, dict) else None
        return isinstance(items, list) and any(_present(i, rest) for i in items)
    return isinstance(node, dict) and key in node and _present(node[key], rest)


def check(raw: dict) -> None:
    """Parent side, at create: refuse a config that sets a REFUSED field, and warn in --log
    for each IGNORED one it sets. A handful of dict lookups: the hot path can afford it."""
    for path, group, why in _CHECKED:
        if _present(raw, path.split(".")):
            if group == REFUSED:
                raise ConfigError(name(path), why)
            log.warn(f"{name(path)}: ignored: {why}")


def group(path: str) -> str:
    return table()[path].group
