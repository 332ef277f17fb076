"""systemd unit properties for the systemd cgroup driver, built without D-Bus (so they can be
unit-tested): a property is (name, (D-Bus signature, value)), the form jeepney sends inside
StartTransientUnit's and SetUnitProperties' a(sv).

  unit_properties()       what the scope is started with (runc's Apply): Description, Slice,
                          Delegate, PIDs, the accounting switches, DefaultDependencies=no
  resource_properties()   linux.resources in systemd's terms (runc's genV2ResourcesProperties,
                          plus IOWeight and the IO*Max throttles, which runc leaves to cgroupfs)
  annotation_properties() the config's "org.systemd.property.<Name>" annotations (runc's
                          initSystemdProps), values in GVariant text form

Everything is also written to cgroupfs afterwards (the fs driver's Set), as runc does: these
make systemd's view agree with the files, so that a `systemctl daemon-reload` keeps them.
"""

from __future__ import annotations

import os
import re

from runtime import log
from runtime.cgroups import devices
from runtime.cgroups import resources as R
from runtime.cgroups.files import CgroupError

Prop = tuple[str, tuple[str, object]]
U64_MAX = 2**64 - 1  # systemd's "infinity"
DEFAULT_PERIOD = 100000
ANNOTATION = "org.systemd.property."


def prop(name: str, sig: str, value: object) -> Prop:
    return (name, (sig, value))


def unit_properties(unit: str, slice_: str, cid: str, pid: int) -> list[Prop]:
    """runc's Apply: a scope in `slice_`, delegated to us, holding stage 1 (`pid`)."""
    props = [prop("Description", "s", f"libcontainer container {cid}"),
             prop("Slice", "s", slice_), prop("Delegate", "b", True)]
    if pid > 0:
        props.append(prop("PIDs", "au", [pid]))
    props += [prop("MemoryAccounting", "b", True), prop("CPUAccounting", "b", True),
              prop("IOAccounting", "b", True), prop("TasksAccounting", "b", True),
              prop("DefaultDependencies", "b", False)]
    return props


# ---------------------------------------------------------------- resources


def resource_properties(res: dict, version: int, *, skip_devices: bool = False) -> list[Prop]:
    """linux.resources for a scope on cgroup v2. `version` is systemd's (some properties
    need a newer one: they are then left to cgroupfs, as runc does)."""
    mem, cpu = R.section(res, "memory"), R.section(res, "cpu")
    props = [] if skip_devices else device_properties(res.get("devices"), version)
    limit = mem.get("limit") or 0
    if limit:
        props.append(prop("MemoryMax", "t", _u64(limit)))
    if mem.get("reservation"):
        props.append(prop("MemoryLow", "t", _u64(mem["reservation"])))
    swap = R.swap_to_v2(mem.get("swap") or 0, limit)
    if swap:
        props.append(prop("MemorySwapMax", "t", _u64(swap)))
    idle = cpu.get("idle") == 1 and version >= 252
    if idle:
        props.append(prop("CPUWeight", "t", 0))  # systemd's way to say cpu.idle 1
    if cpu.get("shares"):
        if idle:
            log.warn("linux.resources.cpu.shares: systemd takes either a weight or cpu.idle; "
                     "the weight goes to cgroupfs only")
        else:
            props.append(prop("CPUWeight", "t", R.shares_to_weight(cpu["shares"])))
    props += cpu_quota(cpu.get("quota") or 0, cpu.get("period") or 0, version)[0]
    pids = res.get("pids")
    if pids is not None and pids.get("limit") is not None:
        lim = pids["limit"]
        # systemd refuses TasksMax=0: 1 is the nearest (cgroupfs gets 0 afterwards)
        props.append(prop("TasksMax", "t", U64_MAX if lim < 0 else max(lim, 1)))
    if version >= 244:
        for key, name in (("cpus", "AllowedCPUs"), ("mems", "AllowedMemoryNodes")):
            if cpu.get(key):
                props.append(prop(name, "ay", range_to_bits(cpu[key], f"cpu.{key}")))
    props += io_properties(R.section(res, "blockIO"))
    props += unified_properties(res.get("unified") or {}, version)
    return props


def _u64(n: int) -> int:
    return U64_MAX if n < 0 else n


def cpu_quota(quota: int, period: int, version: int) -> tuple[list[Prop], int]:
    """CPUQuotaPeriodUSec and CPUQuotaPerSecUSec (runc's addCPUQuota). systemd keeps the
    quota per second in multiples of 10 ms: it is rounded up, and the quota for cgroupfs
    with it (returned), so that both say the same."""
    props = []
    if period and version >= 242:
        props.append(prop("CPUQuotaPeriodUSec", "t", period))
    if not quota and not period:
        return props, quota
    per_sec = U64_MAX
    if quota > 0:
        period = period or DEFAULT_PERIOD
        per_sec = quota * 1000000 // period
        if per_sec % 10000:
            per_sec = (per_sec // 10000 + 1) * 10000
            quota = per_sec * period // 1000000
    props.append(prop("CPUQuotaPerSecUSec", "t", per_sec))
    return props, quota


def range_to_bits(text: str, where: str) -> bytes:
    """A cpuset list ("0-3,7") as systemd's bitmask bytes: byte 0 holds CPUs 0-7, bit 0 first
    (runc >= 1.1.6; 1.1.5 sent them big-endian). Parsed as the config's lists are."""
    from runtime.errors import ConfigError
    from runtime.spec.convert import cpu_list

    try:
        cpus = cpu_list(text, where)
    except ConfigError as e:
        raise R.refuse(where, f"{e.reason} in {text!r}") from None
    if not cpus:
        raise R.refuse(where, f"{text!r} is empty")
    bits = 0
    for c in cpus:
        bits |= 1 << c
    return bits.to_bytes((bits.bit_length() + 7) // 8, "little")


def io_properties(bio: dict) -> list[Prop]:
    """IOWeight and the throttles, by device node (systemd resolves "/dev/block/M:N"; where
    the node is missing the limit goes to cgroupfs only)."""
    props = []
    if bio.get("weight"):
        props.append(prop("IOWeight", "t", R.blkio_to_io_weight(bio["weight"])))
    for key, name in (("throttleReadBpsDevice", "IOReadBandwidthMax"),
                      ("throttleWriteBpsDevice", "IOWriteBandwidthMax"),
                      ("throttleReadIOPSDevice", "IOReadIOPSMax"),
                      ("throttleWriteIOPSDevice", "IOWriteIOPSMax")):
        entries = []
        for t in bio.get(key) or ():
            node = f"/dev/block/{t['major']}:{t['minor']}"
            if os.path.exists(node):
                entries.append((node, t["rate"] or U64_MAX))
            else:
                log.debug(f"systemd: no {node}: blockIO.{key} goes to cgroupfs only")
        if entries:
            props.append(prop(name, "a(st)", entries))
    return props


_UNIFIED_MEMORY = {"memory.high": "MemoryHigh", "memory.low": "MemoryLow",
                   "memory.min": "MemoryMin", "memory.max": "MemoryMax",
                   "memory.swap.max": "MemorySwapMax"}


def unified_properties(unified: dict, version: int) -> list[Prop]:
    """runc's unifiedResToSystemdProps: the keys systemd has a property for; the rest (and
    these too) are written to cgroupfs."""
    props = []
    for key, raw in unified.items():
        where = f"unified.{key}"
        v = str(raw).strip()
        if key == "cpu.idle":
            if v == "1" and version >= 252:
                props.append(prop("CPUWeight", "t", 0))
        elif key == "cpu.max":
            parts = v.split()
            if not 1 <= len(parts) <= 2:
                raise R.refuse(where, f"{v!r} is not 'QUOTA [PERIOD]'")
            quota = 0 if parts[0] == "max" else _num(parts[0], where)
            period = _num(parts[1], where) if len(parts) == 2 else DEFAULT_PERIOD
            props += cpu_quota(quota, period, version)[0]
        elif key == "cpu.weight":
            if unified.get("cpu.idle", "").strip() == "1" and version >= 252:
                log.warn("linux.resources.unified: systemd takes either cpu.weight or cpu.idle; "
                         "cpu.weight goes to cgroupfs only")
                continue
            props.append(prop("CPUWeight", "t", _num(v, where)))
        elif key in ("cpuset.cpus", "cpuset.mems") and version >= 244:
            name = "AllowedCPUs" if key == "cpuset.cpus" else "AllowedMemoryNodes"
            props.append(prop(name, "ay", range_to_bits(v, where)))
        elif key in _UNIFIED_MEMORY:
            props.append(prop(_UNIFIED_MEMORY[key], "t", U64_MAX if v == "max" else
                              _num(v, where)))
        elif key == "pids.max":
            n = U64_MAX if v == "max" else _num(v, where)
            props.append(prop("TasksMax", "t", max(n, 1)))
    return props


def _num(text: str, where: str) -> int:
    if not text.isdigit():
        raise R.refuse(where, f"{text!r} is not a number")
    return int(text)


# ---------------------------------------------------------------- devices


def device_properties(items, version: int) -> list[Prop]:
    """DevicePolicy and DeviceAllow from the device rules (runc's systemdProperties). Our own
    eBPF program is attached afterwards all the same (it replaces systemd's)."""
    emu = devices.emulate(devices.rules(items))
    strict = [prop("DevicePolicy", "s", "strict"), prop("DeviceAllow", "a(ss)", [])]
    if emu.default_allow:
        if not emu.exceptions:
            return [prop("DevicePolicy", "s", "auto"), prop("DeviceAllow", "a(ss)", [])]
        log.warn("systemd has no deny-list device rules: its scope denies every device; the "
                 "container's own eBPF program applies the rules")
        return strict
    allow = []
    for r in emu.sorted_exceptions():
        if r.major == devices.WILD:
            if r.minor != devices.WILD:
                log.warn(f"systemd has no '*:N' device rules: {r.text()} is left to the eBPF "
                         "program")
                continue
            path = f"{_group_prefix(r.type)}*"
        elif r.minor == devices.WILD:
            path = f"{_group_prefix(r.type)}{r.major}" if version >= 240 else \
                _device_group(r.type, r.major)
            if not path:
                log.warn(f"no device group for {r.text()} in /proc/devices: left to the eBPF "
                         "program")
                continue
        else:
            path = f"/dev/{'block' if r.type == 'b' else 'char'}/{r.major}:{r.minor}"
        allow.append((path, r.access))
    return [strict[0], prop("DeviceAllow", "a(ss)", allow)]


def _group_prefix(t: str) -> str:
    return "block-" if t == "b" else "char-"


def _device_group(t: str, major: int, text: str | None = None) -> str:
    """The /proc/devices name of a major, as "char-NAME" (systemd < 240 needs names)."""
    if text is None:
        try:
            with open("/proc/devices") as f:
                text = f.read()
        except OSError:
            return ""
    kind = ""
    for line in text.splitlines():
        line = line.strip()
        if line in ("Character devices:", "Block devices:"):
            kind = "c" if line.startswith("Character") else "b"
            continue
        num, _, name = line.partition(" ")
        if kind == t and num == str(major):
            return _group_prefix(t) + name
    return ""


# ---------------------------------------------------------------- annotations


def annotation_properties(annotations: dict) -> list[Prop]:
    """"org.systemd.property.<Name>": "<GVariant text>" -> a property (runc's
    initSystemdProps): the name letters only, at least three; "...Sec" with a lowercase
    letter before it becomes "...USec", the number times 10^6."""
    props = []
    for key, text in annotations.items():
        if not key.startswith(ANNOTATION):
            continue
        name = key[len(ANNOTATION):]
        where = f"annotations[{key!r}]"
        if len(name) < 3 or not re.fullmatch(r"[A-Za-z]+", name):
            raise CgroupError(f"{where}: a systemd property name is three or more letters")
        sig, value = parse_gvariant(text, where)
        if name.endswith("Sec") and len(name) > 3 and name[-4].islower():
            if sig not in "ynqiuxtd" or isinstance(value, bool):
                raise CgroupError(f"{where}: {name} takes a number of seconds")
            name, sig, value = name[:-3] + "USec", "t", int(value * 1000000)
        props.append(prop(name, sig, value))
    return props


_TYPED = {"byte": "y", "int16": "n", "uint16": "q", "int32": "i", "uint32": "u",
          "int64": "x", "uint64": "t", "double": "d", "boolean": "b", "string": "s"}
_RANGES = {"y": (0, 255), "n": (-2**15, 2**15 - 1), "q": (0, 2**16 - 1),
           "i": (-2**31, 2**31 - 1), "u": (0, 2**32 - 1), "x": (-2**63, 2**63 - 1),
           "t": (0, 2**64 - 1)}


def parse_gvariant(text: str, where: str) -> tuple[str, object]:
    """The GVariant text forms systemd properties take in practice: true/false, numbers
    (int32 unless typed: "uint64 5", "@t 5"), 'strings' or "strings", and arrays of
    strings ['a', 'b']. Anything else is refused, naming the annotation."""
    t = text.strip()
    sig = ""
    m = re.fullmatch(r"(?:@([a-z]+)|([a-z0-9]+))\s+(.*)", t, re.S)
    if m and (m.group(1) or m.group(2) in _TYPED):
        sig = m.group(1) or _TYPED[m.group(2)]
        t = m.group(3).strip()
    try:
        if t in ("true", "false"):
            if sig not in ("", "b"):
                raise ValueError
            return "b", t == "true"
        if t[:1] in ("'", '"'):
            if sig not in ("", "s"):
                raise ValueError
            return "s", _string(t)
        if t.startswith("["):
            if sig not in ("", "as"):
                raise ValueError
            inner = t[1:-1].strip() if t.endswith("]") else None
            if inner is None:
                raise ValueError
            items = re.findall(r"""\s*('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\s*(?:,|$)""", inner)
            if ",".join(items).replace(" ", "") != inner.replace(" ", "") and inner:
                raise ValueError
            return "as", [_string(s.strip()) for s in items]
        if sig == "d" or (not sig and re.fullmatch(r"-?\d+\.\d*(e-?\d+)?", t)):
            return "d", float(t)
        n = int(t, 0)
        sig = sig or "i"
        lo, hi = _RANGES.get(sig, (1, 0))
        if not lo <= n <= hi:
            raise ValueError
        return sig, n
    except ValueError:
        raise CgroupError(f"{where}: cannot parse {text!r} as a GVariant value (onggi takes "
                          "booleans, numbers, strings and arrays of strings)") from None


def _string(t: str) -> str:
    if len(t) < 2 or t[-1] != t[0]:
        raise ValueError
    body = t[1:-1]
    return re.sub(r"\\(.)", r"\1", body)
