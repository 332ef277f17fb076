"""linux.intelRdt through the resctrl filesystem (config-linux.md "IntelRdt").

`prepare` (parent, before the fork) refuses what this host cannot do: no resctrl mounted at
/sys/fs/resctrl (the spec: the runtime MUST error), a cache schema without CAT, a memory
bandwidth schema without MBA, monitoring without L3_MON, a closID that must exist but does
not, or one that exists with other schemata. `apply` (parent, once the init's pid is known)
makes the CLOS group if it is missing, writes the schemata and puts the init in it, plus a
monitoring group when asked; `join` puts a process of exec's in the same groups. `remove` (delete, failed create) removes the monitoring group,
and the CLOS group only when it is the container's own (no closID), as the spec says.
"""

from __future__ import annotations

import os

from runtime.errors import ConfigError, OnggiError, strerror
from runtime.spec import IntelRdt

ROOT = "/sys/fs/resctrl"
RDTGROUP_SUPER_MAGIC = 0x7655821


def is_resctrl(root: str = ROOT) -> bool:
    from runtime.linux import procfs

    try:
        fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return procfs.fs_type(fd) == RDTGROUP_SUPER_MAGIC
    finally:
        os.close(fd)


def has_monitoring(root: str = ROOT) -> bool:
    return os.path.isdir(f"{root}/info/L3_MON")


class Plan:
    def __init__(self, path: str, lines: list[str], monitoring: bool, cid: str,
                 root: str, own: bool) -> None:
        self.path = path  # the CLOS group's directory
        self.lines = lines  # schemata lines, in the spec's order
        self.monitoring = monitoring
        self.cid = cid
        self.root = root
        self.own = own  # no closID: the group is the container's, named after its id


def lines_of(rdt: IntelRdt) -> list[str]:
    """L3 first, then MB, then schemata (the spec's order: a later line wins)."""
    out = [x for x in (rdt.l3_cache_schema, rdt.mem_bw_schema) if x]
    out += [x for x in rdt.schemata if x]
    return [line for text in out for line in text.splitlines() if line.strip()]


def prepare(rdt: IntelRdt, cid: str, root: str = ROOT) -> Plan:
    f = "linux.intelRdt"
    if not is_resctrl(root):
        raise ConfigError(f, f"resctrl is not mounted at {root}: Intel RDT is not available "
                             "on this host")
    if rdt.l3_cache_schema and not os.path.isdir(f"{root}/info/L3"):
        raise ConfigError(f"{f}.l3CacheSchema", "Intel RDT/CAT (info/L3) is not available")
    if rdt.mem_bw_schema and not os.path.isdir(f"{root}/info/MB"):
        raise ConfigError(f"{f}.memBwSchema", "Intel RDT/MBA (info/MB) is not available")
    if rdt.enable_monitoring and not has_monitoring(root):
        raise ConfigError(f"{f}.enableMonitoring", "resctrl monitoring (info/L3_MON) is not "
                                                   "available")
    lines = lines_of(rdt)
    clos = rdt.clos_id
    path = root if clos == "/" else os.path.join(root, clos or cid)
    if clos is not None and clos != "/":
        if os.path.isdir(path):
            _check_same(path, lines)
        elif not lines:
            raise ConfigError(f"{f}.closID", f"CLOS {clos!r} does not exist ({path}): with no "
                                             "schema it must be made beforehand")
    return Plan(path, lines, rdt.enable_monitoring, cid, root, clos is None)


def _parse(lines: list[str]) -> dict[str, dict[str, int | str]]:
    """"L3:0=ff;1=f0" -> {"L3": {"0": 255, "1": 240}}: numbers compared, not spellings."""
    out: dict[str, dict[str, int | str]] = {}
    for line in lines:
        res, _, doms = line.strip().partition(":")
        base = 10 if res.strip().startswith("MB") else 16
        for dom in doms.split(";"):
            key, _, val = dom.partition("=")
            try:
                value: int | str = int(val.strip(), base)
            except ValueError:
                value = val.strip()
            out.setdefault(res.strip(), {})[key.strip()] = value
    return out


def _check_same(path: str, lines: list[str]) -> None:
    """A CLOS that exists must already have the schemata the config asks for (spec)."""
    if not lines:
        return
    with open(os.path.join(path, "schemata")) as f:
        have = _parse(f.read().splitlines())
    for res, doms in _parse(lines).items():
        for dom, value in doms.items():
            if have.get(res, {}).get(dom) != value:
                raise ConfigError("linux.intelRdt.closID",
                                  f"CLOS {os.path.basename(path)!r} exists with other "
                                  f"schemata ({res}:{dom} is {have.get(res, {}).get(dom)!r}, "
                                  f"the config asks for {value!r})")


def apply(plan: Plan, pid: int, record: dict) -> None:
    """Fill `record` as we go: state.json keeps it, and a failure part-way removes what it
    lists."""
    record["path"] = plan.path
    try:
        if not os.path.isdir(plan.path):
            os.mkdir(plan.path)
            # the spec: removed at delete only when it is the container's own (no closID)
            record["created"] = plan.own
        if plan.lines:
            _write(plan.path, "schemata", "\n".join(plan.lines) + "\n")
        if plan.monitoring:
            mon = os.path.join(plan.path, "mon_groups", plan.cid)
            os.mkdir(mon)
            record["mon"] = mon
    except OSError as e:
        raise OnggiError(f"linux.intelRdt: {e.filename or plan.path}: "
                         f"{strerror(e.errno)}{_last_status(plan.root)}") from None
    join(record, pid, plan.root)


def join(record: dict, pid: int, root: str = ROOT) -> None:
    """Put `pid` in the container's CLOS group and its monitoring group (`record` is
    state.json's intel_rdt): the init at create, each process exec starts (runc's
    setnsProcess)."""
    for key in ("path", "mon"):
        if record.get(key):
            try:
                _write(record[key], "tasks", str(pid))
            except OSError as e:
                raise OnggiError(f"linux.intelRdt: {e.filename}: {strerror(e.errno)}"
                                 f"{_last_status(root)}") from None


def _write(path: str, name: str, data: str) -> None:
    fd = os.open(os.path.join(path, name), os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data.encode())
    except OSError as e:
        e.filename = os.path.join(path, name)
        raise
    finally:
        os.close(fd)


def _last_status(root: str) -> str:
    """resctrl explains a refused write in info/last_cmd_status."""
    try:
        with open(os.path.join(root, "info", "last_cmd_status")) as f:
            text = f.read().strip()
    except OSError:
        return ""
    return f" ({text})" if text and text != "ok" else ""


def remove(record: dict) -> None:
    """Remove the monitoring group, and the CLOS group if onggi made it."""
    for key in ("mon", "path"):
        path = record.get(key)
        if not path or (key == "path" and not record.get("created")):
            continue
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise OnggiError(f"linux.intelRdt: removing {path}: "
                             f"{strerror(e.errno)}") from None
