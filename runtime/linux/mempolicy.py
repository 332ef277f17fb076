"""linux.memoryPolicy: set_mempolicy(2) for the container's processes (inherited by
everything the init forks and kept across execve).

`prepare` runs in the parent (names to numbers, the node mask, and the host's online
nodes, so an impossible node set is a config error before anything starts); `apply` runs
in the child between fork and exec.
"""

from __future__ import annotations

import ctypes
import errno
import os

from runtime.errors import ConfigError, strerror
from runtime.linux import syscalls
from runtime.spec import MemoryPolicy, cpu_list

_NR_SET_MEMPOLICY = {"x86_64": 238, "aarch64": 237}.get(os.uname().machine)
MODES = {"MPOL_DEFAULT": 0, "MPOL_PREFERRED": 1, "MPOL_BIND": 2, "MPOL_INTERLEAVE": 3,
         "MPOL_LOCAL": 4, "MPOL_PREFERRED_MANY": 5, "MPOL_WEIGHTED_INTERLEAVE": 6}
FLAGS = {"MPOL_F_NUMA_BALANCING": 1 << 13, "MPOL_F_RELATIVE_NODES": 1 << 14,
         "MPOL_F_STATIC_NODES": 1 << 15}
_WORD = ctypes.sizeof(ctypes.c_ulong) * 8
ONLINE = "/sys/devices/system/node/online"


class Policy:
    """What set_mempolicy gets: mode|flags and the node mask (built before fork)."""

    def __init__(self, mp: MemoryPolicy) -> None:
        self.name = mp.mode
        self.nodes = mp.nodes
        self.mode = MODES[mp.mode]
        for f in mp.flags:
            self.mode |= FLAGS[f]
        nbits = (max(mp.nodes) + 1) if mp.nodes else 0
        words = max(1, (nbits + _WORD - 1) // _WORD)
        self.mask = (ctypes.c_ulong * words)()
        for n in mp.nodes:
            self.mask[n // _WORD] |= 1 << (n % _WORD)
        # the kernel reads maxnode-1 bits (get_nodes' --maxnode): one more than we use
        self.maxnode = words * _WORD + 1 if mp.nodes else 0

    def apply(self) -> None:
        mask = self.mask if self.nodes else None
        if syscalls._syscall(_NR_SET_MEMPOLICY, self.mode, mask, ctypes.c_ulong(self.maxnode)) \
                == 0:
            return
        err = ctypes.get_errno()
        why = strerror(err)
        if err == errno.EINVAL:
            why += " (the kernel refuses this mode, flag or node set)"
        raise OSError(err, f"linux.memoryPolicy: set_mempolicy({self.name}, nodes "
                           f"{_fmt(self.nodes) or 'none'}): {why}")


def _fmt(nodes) -> str:
    return ",".join(str(n) for n in nodes)


def online_nodes(path: str = ONLINE) -> set[int] | None:
    """The host's online NUMA nodes; None on a kernel without NUMA."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return set(cpu_list(text, path) or ())


def prepare(mp: MemoryPolicy) -> Policy:
    online = online_nodes()
    if online is None:
        if mp.mode not in ("MPOL_DEFAULT", "MPOL_LOCAL"):
            raise ConfigError("linux.memoryPolicy", "this kernel has no NUMA support "
                                                    f"({ONLINE} is missing)")
    elif "MPOL_F_RELATIVE_NODES" not in mp.flags:
        missing = [n for n in mp.nodes if n not in online]
        if missing:
            raise ConfigError("linux.memoryPolicy.nodes",
                              f"node {_fmt(missing)} is not online on this host "
                              f"(online: {_fmt(sorted(online))})")
    return Policy(mp)
