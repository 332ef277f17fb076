"""`update`: new linux.resources for a created, running or paused container.

`--resources FILE` / `-r -` (stdin) carry a LinuxResources JSON, as podman and containerd
send it; otherwise runc's flags. Only the fields given change (runc >= 1.2 semantics): they
are merged into the resources in force, the whole is written through the same code as
create (so the write orders for memory/swap, period/quota and rt hold), and saved in the
state. Device rules are not updated (runc neither). On a failed write the old resources are
written back.
"""

from __future__ import annotations

import sys

from runtime import fastjson, faults, log, state
from runtime.cgroups import resources as R
from runtime.errors import OnggiError, reason

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}

_CFS = "CPU CFS {} to be used for hardcapping (in usecs). 0 to use system default"
_RT_LIMIT = "CPU {} hardcap limit (in usecs). Allowed cpu time in a given period"

# flag -> (section, key, parser, help); runc's list (1.1.5, plus main's burst and idle)
FLAGS = {
    "blkio-weight": ("blockIO", "weight", "uint",
                     "Specifies per cgroup weight, range is from 10 to 1000"),
    "cpu-period": ("cpu", "period", "uint", _CFS.format("period")),
    "cpu-quota": ("cpu", "quota", "int", _RT_LIMIT.format("CFS")),
    "cpu-burst": ("cpu", "burst", "uint", "CPU CFS hardcap burst limit (in usecs). Allowed "
                  "accumulated cpu time additionally for burst a given period"),
    "cpu-share": ("cpu", "shares", "uint", "CPU shares (relative weight vs. other containers)"),
    "cpu-rt-period": ("cpu", "realtimePeriod", "uint", _CFS.format("realtime period")
                      .replace("CFS ", "")),
    "cpu-rt-runtime": ("cpu", "realtimeRuntime", "int", _RT_LIMIT.format("realtime")),
    "cpu-idle": ("cpu", "idle", "int",
                 "set cgroup SCHED_IDLE or not, 0: default behavior, 1: SCHED_IDLE"),
    "cpuset-cpus": ("cpu", "cpus", "str", "CPU(s) to use"),
    "cpuset-mems": ("cpu", "mems", "str", "Memory node(s) to use"),
    "memory": ("memory", "limit", "bytes", "Memory limit (in bytes)"),
    "memory-reservation": ("memory", "reservation", "bytes",
                           "Memory reservation or soft_limit (in bytes)"),
    "memory-swap": ("memory", "swap", "bytes", "Total memory usage (memory + swap); set '-1' "
                    "to enable unlimited swap"),
    "pids-limit": ("pids", "limit", "int", "Maximum number of pids allowed in the container"),
    "kernel-memory": ("memory", "kernel", "bytes", None),  # hidden in runc: obsolete
    "kernel-memory-tcp": ("memory", "kernelTCP", "bytes", None),
}
RDT_FLAGS = ("l3-cache-schema", "mem-bw-schema")


def parse_bytes(text: str) -> int:
    """docker's RAMInBytes: "100M", "1g", "512k", "1.5GiB", "-1"."""
    t = text.strip()
    if t == "-1":
        return -1
    num = t.rstrip("bBiI").rstrip()
    unit = ""
    if num and num[-1].lower() in "kmgtp":
        unit, num = num[-1].lower(), num[:-1].rstrip()
    suffix = t[len(t.rstrip("bBiI")):]
    if suffix.lower() not in ("", "b", "ib") or (suffix.lower() == "ib" and not unit):
        raise ValueError(f"invalid size: {text!r}")
    try:
        value = float(num) if "." in num else int(num)
    except ValueError:
        raise ValueError(f"invalid size: {text!r}") from None
    if value < 0:
        raise ValueError(f"invalid size: {text!r}")
    return int(value * _UNITS[unit])


def _convert(kind: str, text: str) -> object:
    if kind == "bytes":
        return parse_bytes(text)
    if kind == "str":
        return text
    n = int(text, 10)
    if kind == "uint" and n < 0:
        raise ValueError(f"{text!r} must not be negative")
    return n


def parser():
    from argparse import SUPPRESS  # the object itself: argparse compares by identity

    from runtime.cli import _verb_parser

    p = _verb_parser("update")
    p.add_argument("-r", "--resources", help="path to the file containing the resources to "
                   "update or '-' to read from the standard input")
    for name, (_, _, _, help_) in FLAGS.items():
        names = [f"--{name}"] + (["--cpu-shares"] if name == "cpu-share" else [])
        p.add_argument(*names, dest=name.replace("-", "_"), help=help_ or SUPPRESS)
    for name in RDT_FLAGS:
        p.add_argument(f"--{name}", dest=name.replace("-", "_"), help="Intel RDT (not supported)")
    p.add_argument("id")
    return p


def requested(a) -> dict:
    """The resources the command line asks for."""
    if any(getattr(a, n.replace("-", "_")) is not None for n in RDT_FLAGS):
        raise OnggiError("update: Intel RDT (--l3-cache-schema, --mem-bw-schema) is not "
                         "supported by onggi")
    if a.resources is not None:
        return _read_resources(a.resources)
    out: dict = {}
    for name, (sec, key, kind, _) in FLAGS.items():
        text = getattr(a, name.replace("-", "_"))
        if text is None:
            continue
        try:
            value = _convert(kind, text)
        except ValueError as e:
            raise OnggiError(f"update: invalid value for {name}: {e}") from None
        out.setdefault(sec, {})[key] = value
    return out


def _read_resources(src: str) -> dict:
    from runtime import schema

    where = "stdin" if src == "-" else src
    try:
        if src == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(src, "rb") as f:
                data = f.read()
        doc = fastjson.loads(data)
    except OSError as e:
        raise OnggiError(f"update: --resources {src}: {reason(e)}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise OnggiError(f"update: --resources {where}: invalid JSON: {e}") from None
    node, base = schema._resolve("config-linux.json#/linux/properties/resources",
                                 "config-linux.json")
    try:
        schema._check(doc, node, base, "resources")
    except schema.SchemaError as e:
        raise OnggiError(f"update: --resources {where}: {e}") from None
    return doc


def adjust(new: dict) -> dict:
    """runc's update rules: an unlimited memory without a swap value unlimits swap too;
    cpu.idle without shares drops the shares (the kernel refuses them with SCHED_IDLE)."""
    mem, cpu = new.get("memory") or {}, new.get("cpu") or {}
    if mem.get("limit") == -1 and "swap" not in mem:
        new["memory"] = {**mem, "swap": -1}
    if "idle" in cpu and "shares" not in cpu:
        new["cpu"] = {**cpu, "shares": 0}
    for k in ("kernel", "kernelTCP"):
        if mem.get(k):
            log.warn(f"update: {R.field('memory', k)}: kernel memory limits are ignored")
    return new


def cmd_update(argv: list[str], g) -> int:
    from runtime import cgroups
    from runtime.cgroups.verbs import simple
    from runtime.cli import Args

    fast = simple(argv, values={"-r": "resources", "--resources": "resources"})
    if fast is not None and fast.get("resources") is not None:  # what engines send
        a = Args(id=fast["id"], resources=fast["resources"],
                 **{n.replace("-", "_"): None for n in (*FLAGS, *RDT_FLAGS)})
    else:
        a = parser().parse_args(argv)
    new = adjust(requested(a))
    path, _ = state.load(g.root, a.id)
    faults.point("update:loaded")
    with state.Lock(path):
        # again under the lock: an update that ran meanwhile changed what is in force
        path, st = state.load(g.root, a.id)
        status = state.status(path, st)
        if status == "stopped":
            raise OnggiError(f"container {a.id} is not running (it is stopped)")
        if not st.cgroup_paths:
            raise OnggiError(f"cannot update container {a.id}: it has no cgroups")
        mgr = cgroups.from_state(st)
        old = st.cgroup_data.get("resources") or {}
        if "devices" in new:
            if new["devices"] != old.get("devices"):
                log.warn("update: linux.resources.devices cannot be changed after create; "
                         "the container keeps its device rules (as with runc)")
            new.pop("devices")
        merged = R.merge(old, new)
        mgr.check(merged)
        try:
            mgr.set(merged, skip_devices=True)
        except OnggiError:
            try:
                mgr.set(old, skip_devices=True)
            except OnggiError as e:
                log.warn(f"update: setting the old resources back failed too: {e}; the "
                         "cgroup may now hold a mix of old and new values")
            raise
        state.save(path, st.replace(cgroup_data={**st.cgroup_data, "resources": merged}))
    return 0
