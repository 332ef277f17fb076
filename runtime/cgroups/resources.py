"""linux.resources: field names for errors, the v1 -> v2 conversions (runc's), the merge
that `update` does, and what v1 and v2 write alike (huge page limits, rdma).

The resources stay the spec's JSON (a dict) throughout: that is what config.json holds, what
`update -r` reads and what state.json saves.
"""

from __future__ import annotations

import errno
import math

from runtime.cgroups.files import CgroupError, write

F = "linux.resources"
MAX = "max"


def field(*names: str) -> str:
    return ".".join((F, *names))


def section(res: dict, name: str) -> dict:
    return res.get(name) or {}


def refuse(name: str, why: str) -> CgroupError:
    return CgroupError(f"{F}.{name}: {why}")


# ---------------------------------------------------------------- v1 -> v2 conversions


def shares_to_weight(shares: int) -> int:
    """cpu.shares [2, 262144] -> cpu.weight [1, 10000], the quadratic fit of runc >= 1.4
    and crun, which maps the default 1024 onto the default 100 (runc 1.1.5's linear
    formula gives 39)."""
    if shares == 0:
        return 0
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    lg = math.log2(shares)
    return math.ceil(10 ** ((lg * lg + 125 * lg) / 612.0 - 7.0 / 34.0))


def blkio_to_io_weight(weight: int) -> int:
    """blkio weight [10, 1000] -> io.weight [1, 10000] (runc's linear map)."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def swap_to_v2(swap: int, limit: int) -> int | None:
    """v1 memory.swap is memory+swap; v2 memory.swap.max is swap alone. None: write nothing.
    -1 stands for "max". runc's ConvertMemorySwapToCgroupV2Value."""
    if limit == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return None if swap == 0 else -1
    if limit == -1:
        return swap
    if limit == 0:
        raise refuse("memory.swap", "can not be set without memory.limit on cgroup v2 "
                     "(it is converted to memory.swap.max = swap - limit)")
    if limit < 0:
        raise refuse("memory.limit", f"invalid memory value {limit}")
    if swap < limit:
        raise refuse("memory.swap", f"{swap} is below memory.limit {limit}: "
                     "memory+swap must be >= memory")
    return swap - limit


def quota_period_v2(quota: int | None, period: int | None) -> str | None:
    """cpu.max "<quota|max> <period>", or None when neither is set."""
    if not quota and not period:
        return None
    q = MAX if quota is None or quota <= 0 else str(quota)
    return f"{q} {period or 100000}"


def v2_value(n: int) -> str:
    return MAX if n == -1 else str(n)


# ---------------------------------------------------------------- update


def _key(item: dict, keys: tuple[str, ...]) -> tuple:
    return tuple(item.get(k) for k in keys)


_LIST_KEYS = {
    "weightDevice": ("major", "minor"),
    "throttleReadBpsDevice": ("major", "minor"),
    "throttleWriteBpsDevice": ("major", "minor"),
    "throttleReadIOPSDevice": ("major", "minor"),
    "throttleWriteIOPSDevice": ("major", "minor"),
    "hugepageLimits": ("pageSize",),
    "priorities": ("name",),
}


def merge(old: dict, new: dict) -> dict:
    """`update`: the fields given replace the saved ones, the rest stay (runc >= 1.2; 1.1.5
    forgets the others in state.json). Device lists are upserted by major:minor, huge page
    limits by size, interface priorities by name."""
    out = dict(old)
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "unified":
            out[k] = merge(out[k], v)
        elif isinstance(v, dict) and k == "unified":
            out[k] = {**(out.get(k) or {}), **v}
        elif isinstance(v, list) and k in _LIST_KEYS and isinstance(out.get(k), list):
            keys = _LIST_KEYS[k]
            items = list(out[k])
            for item in v:
                pos = next((i for i, o in enumerate(items) if _key(o, keys) == _key(item, keys)),
                           None)
                if pos is None:
                    items.append(item)
                else:
                    items[pos] = item
            out[k] = items
        else:
            out[k] = v
    return out


# ---------------------------------------------------------------- huge pages


def hugepage_sizes() -> list[str]:
    """The host's huge page sizes as cgroup file names use them ("2MB", "1GB")."""
    import os

    out = []
    try:
        names = os.listdir("/sys/kernel/mm/hugepages")
    except OSError:
        return out
    for n in names:
        kb = n.removeprefix("hugepages-").removesuffix("kB")
        if not kb.isdigit():
            continue
        size = int(kb)
        if size >= 1 << 20:
            out.append(f"{size >> 20}GB")
        elif size >= 1 << 10:
            out.append(f"{size >> 10}MB")
        else:
            out.append(f"{size}KB")
    return sorted(out, key=_size_bytes)


def _size_bytes(name: str) -> int:
    return int(name[:-2]) << {"KB": 10, "MB": 20, "GB": 30}[name[-2:]]


def check_hugepages(res: dict, sizes: list[str]) -> None:
    for i, h in enumerate(res.get("hugepageLimits") or ()):
        if h["pageSize"] not in sizes:
            have = ", ".join(sizes) or "none"
            raise refuse(f"hugepageLimits[{i}].pageSize",
                         f"{h['pageSize']} is not a huge page size of this host ({have})")


def set_hugetlb(write_limit, d: str, limits, sizes: list[str] | None, limit: str,
                rsvd: str) -> None:
    """hugepageLimits: checked against the host's page sizes (`sizes`, None: read them),
    each limit written through `write_limit(name, value, field)`, and the same limit put on
    reservations where the kernel has them (Linux >= 5.7; the spec asks for both). `limit`
    and `rsvd` are the file names in `d`, "{}" standing for the page size."""
    if not limits:
        return
    check_hugepages({"hugepageLimits": limits}, sizes if sizes is not None else hugepage_sizes())
    has_rsvd = True
    for i, h in enumerate(limits):
        name = f"hugepageLimits[{i}]"
        write_limit(limit.format(h["pageSize"]), h["limit"], name)
        if has_rsvd:
            try:
                write(d, rsvd.format(h["pageSize"]), h["limit"], field(name))
            except CgroupError as e:
                if e.errno != errno.ENOENT:
                    raise
                has_rsvd = False


# ---------------------------------------------------------------- rdma


def rdma_line(dev: str, limits: dict) -> str:
    """One rdma.max line (v1 and v2 alike)."""
    parts = [dev]
    if limits.get("hcaHandles") is not None:
        parts.append(f"hca_handle={limits['hcaHandles']}")
    if limits.get("hcaObjects") is not None:
        parts.append(f"hca_object={limits['hcaObjects']}")
    if len(parts) == 1:
        raise refuse(f"rdma.{dev}", "needs hcaHandles or hcaObjects")
    return " ".join(parts)
