"""cgroup v2 device access: a BPF_PROG_TYPE_CGROUP_DEVICE program assembled here from the
device rules (runc's devicefilter.go, itself after crun's ebpf.c), loaded and attached with
bpf(2) through ctypes.

The program sees struct bpf_cgroup_dev_ctx {u32 access_type; u32 major; u32 minor;}
(access_type = access << 16 | type) in R1 and returns 1 to allow, 0 to deny (EPERM).
On update the new program replaces the one attached before (BPF_F_REPLACE), or is attached
beside it and the old ones detached after: with BPF_F_ALLOW_MULTI every attached program
must allow, so the window is never more permissive, and at the end exactly one is left.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from runtime.cgroups.devices import WILD, Emulator, Rule
from runtime.cgroups.files import CgroupError
from runtime.errors import reason

SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine, 321)
BPF_PROG_LOAD, BPF_PROG_ATTACH, BPF_PROG_DETACH = 5, 8, 9
BPF_PROG_GET_FD_BY_ID, BPF_PROG_QUERY = 13, 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6  # attach type
BPF_F_ALLOW_MULTI, BPF_F_REPLACE = 2, 4
DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
_ATTR = 144  # bytes of union bpf_attr we use (zero-filled)

# opcodes (struct bpf_insn.code)
LDXW = 0x61  # dst = *(u32 *)(src + off)
AND32_IMM = 0x54
RSH32_IMM = 0x74
MOV32_REG = 0xBC
MOV32_IMM = 0xB4
JNE_IMM = 0x55  # if dst != imm goto pc + 1 + off
JNE_REG = 0x5D
EXIT = 0x95
LICENSE = b"Apache\0"


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _access_bits(access: str) -> int:
    return ((ACC_READ if "r" in access else 0) | (ACC_WRITE if "w" in access else 0)
            | (ACC_MKNOD if "m" in access else 0))


def _block(r: Rule) -> list[bytes]:
    """One rule: checks that jump past the block when they fail, then return allow/deny."""
    acc = _access_bits(r.access)
    has_acc = acc != ACC_READ | ACC_WRITE | ACC_MKNOD
    n = 1 + (3 if has_acc else 0) + (r.major != WILD) + (r.minor != WILD)
    out: list[bytes] = []

    def skip() -> int:  # from the check being appended, past the rest and the 2-insn return
        return n - len(out) - 1 + 2

    out.append(insn(JNE_IMM, 2, off=skip(), imm=DEV_CHAR if r.type == "c" else DEV_BLOCK))
    if has_acc:  # the request must be a subset of the rule's access
        out.append(insn(MOV32_REG, 1, 3))
        out.append(insn(AND32_IMM, 1, imm=acc))
        out.append(insn(JNE_REG, 1, 3, off=skip()))
    if r.major != WILD:
        out.append(insn(JNE_IMM, 4, off=skip(), imm=r.major))
    if r.minor != WILD:
        out.append(insn(JNE_IMM, 5, off=skip(), imm=r.minor))
    return out + [insn(MOV32_IMM, 0, imm=1 if r.allow else 0), insn(EXIT)]


def program(emu: Emulator) -> bytes:
    """The program for the rules' end state: exceptions first (sorted as runc does), then
    the default."""
    p = [
        insn(LDXW, 2, 1, 0), insn(AND32_IMM, 2, imm=0xFFFF),  # r2 = type
        insn(LDXW, 3, 1, 0), insn(RSH32_IMM, 3, imm=16),  # r3 = access
        insn(LDXW, 4, 1, 4),  # r4 = major
        insn(LDXW, 5, 1, 8),  # r5 = minor
    ]
    for r in emu.sorted_exceptions():
        p += _block(r)
    p += [insn(MOV32_IMM, 0, imm=1 if emu.default_allow else 0), insn(EXIT)]
    return b"".join(p)


# ---------------------------------------------------------------- bpf(2)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _bpf(cmd: int, attr: bytearray) -> int:
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    r = _libc.syscall(ctypes.c_long(SYS_BPF), ctypes.c_long(cmd), buf, ctypes.c_uint(len(attr)))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def load(prog: bytes) -> int:
    """BPF_PROG_LOAD; the verifier's log goes into the error when it refuses."""
    ins = ctypes.create_string_buffer(prog, len(prog))
    lic = ctypes.create_string_buffer(LICENSE)
    log = ctypes.create_string_buffer(16384)
    attr = bytearray(_ATTR)
    struct.pack_into("<IIQQIIQ", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(prog) // 8,
                     ctypes.addressof(ins), ctypes.addressof(lic), 1, len(log),
                     ctypes.addressof(log))
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        if e.errno == errno.EPERM:  # kernels before 5.11 charge programs to RLIMIT_MEMLOCK
            import resource

            resource.setrlimit(resource.RLIMIT_MEMLOCK,
                               (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            return _bpf(BPF_PROG_LOAD, attr)
        verifier = log.value.decode(errors="replace").strip().splitlines()
        raise OSError(e.errno, e.strerror + (f" ({verifier[-1]})" if verifier else "")) from None


def query(cgfd: int) -> list[int]:
    """Ids of the device programs attached to the cgroup itself."""
    cap = 64
    while True:
        ids = (ctypes.c_uint32 * cap)()
        attr = bytearray(_ATTR)
        struct.pack_into("<IIIIQI", attr, 0, cgfd, BPF_CGROUP_DEVICE, 0, 0,
                         ctypes.addressof(ids), cap)
        try:
            _bpf(BPF_PROG_QUERY, attr)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                cap *= 4
                continue
            raise
        return list(ids[: struct.unpack_from("<I", attr, 24)[0]])


def fd_by_id(prog_id: int) -> int:
    attr = bytearray(_ATTR)
    struct.pack_into("<I", attr, 0, prog_id)
    return _bpf(BPF_PROG_GET_FD_BY_ID, attr)


def attach(cgfd: int, progfd: int, replace_fd: int | None = None) -> None:
    attr = bytearray(_ATTR)
    flags = BPF_F_ALLOW_MULTI | (BPF_F_REPLACE if replace_fd is not None else 0)
    struct.pack_into("<IIIII", attr, 0, cgfd, progfd, BPF_CGROUP_DEVICE, flags, replace_fd or 0)
    _bpf(BPF_PROG_ATTACH, attr)


def detach(cgfd: int, progfd: int) -> None:
    attr = bytearray(_ATTR)
    struct.pack_into("<III", attr, 0, cgfd, progfd, BPF_CGROUP_DEVICE)
    _bpf(BPF_PROG_DETACH, attr)


def install(path: str, emu: Emulator) -> None:
    """Load the program for `emu` and make it the only device program on cgroup `path`."""
    where = "linux.resources.devices"
    cgfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    old: list[int] = []
    new = -1
    try:
        try:
            for pid in query(cgfd):
                try:
                    old.append(fd_by_id(pid))
                except OSError as e:
                    if e.errno not in (errno.EPERM, errno.EACCES, errno.ENOENT):
                        raise
            new = load(program(emu))
        except OSError as e:
            raise CgroupError(f"{where}: loading the eBPF device program: {reason(e)}",
                              e.errno) from None
        if len(old) == 1:
            try:
                attach(cgfd, new, replace_fd=old[0])  # atomic swap (Linux >= 5.6)
                return
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise CgroupError(f"{where}: replacing the eBPF device program: "
                                      f"{reason(e)}", e.errno) from None
        try:
            attach(cgfd, new)
            for fd in old:
                detach(cgfd, fd)
        except OSError as e:
            raise CgroupError(f"{where}: attaching the eBPF device program to {path}: "
                              f"{reason(e)}", e.errno) from None
    finally:
        for fd in (*old, new, cgfd):
            if fd >= 0:
                os.close(fd)


def attached(path: str) -> list[int]:
    """The ids of the device programs on cgroup `path` (for tests and checks)."""
    cgfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return query(cgfd)
    finally:
        os.close(cgfd)
