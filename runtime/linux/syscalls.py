"""Thin ctypes wrappers for the syscalls Python lacks.

Every wrapper raises OSError(errno, ..., path) on failure, like the os module. The numbers
of the new mount API and openat2/close_range (>= 424) are the same on every architecture;
the older ones are looked up per machine.
"""

from __future__ import annotations

import ctypes
import errno
import os

from runtime.errors import strerror

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

_ARCH = os.uname().machine
_OLD = {  # syscall numbers before the unified table
    "x86_64": {"pivot_root": 155, "setns": 308, "unshare": 272, "capget": 125, "capset": 126},
    "aarch64": {"pivot_root": 41, "setns": 268, "unshare": 97, "capget": 90, "capset": 91},
}.get(_ARCH, {})
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_CLOSE_RANGE = 436
SYS_OPENAT2 = 437
SYS_MOUNT_SETATTR = 442

# mount(2) flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_I_VERSION = 1 << 23
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_DETACH = 2
CLOSE_RANGE_CLOEXEC = 1 << 2

PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_CAPBSET_DROP = 24


def _check(ret: int, op: str, path: str | None = None) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{op}: {os.strerror(err)}", path)
    return ret


def _b(p: str | bytes | None) -> bytes | None:
    return p.encode() if isinstance(p, str) else p


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
           "mount", target)


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), "umount", target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_syscall(_OLD["pivot_root"], _b(new_root), _b(put_old)), "pivot_root", new_root)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def prctl(option: int, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0) -> int:
    return _check(_libc.prctl(option, ctypes.c_ulong(a2), ctypes.c_ulong(a3),
                              ctypes.c_ulong(a4), ctypes.c_ulong(a5)), "prctl")


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    _check(_syscall(SYS_CLOSE_RANGE, ctypes.c_uint(first), ctypes.c_uint(last),
                    ctypes.c_uint(flags)), "close_range")


_KEYCTL = {"x86_64": 250, "aarch64": 219}.get(_ARCH)
_KEYCTL_JOIN_SESSION_KEYRING = 1


def join_session_keyring(name: str) -> bool:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING, name): a keyring of our own rather than the
    caller's. False where keyrings are unavailable (ENOSYS, EACCES), which runc also
    tolerates."""
    if _KEYCTL is None:
        return False
    return _syscall(_KEYCTL, _KEYCTL_JOIN_SESSION_KEYRING, name.encode()) >= 0


def setdomainname(name: str) -> None:
    b = name.encode()
    _check(_libc.setdomainname(b, len(b)), "setdomainname")


def sethostname(name: str) -> None:
    b = name.encode()
    _check(_libc.sethostname(b, len(b)), "sethostname")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    while True:
        ret = _syscall(SYS_OPENAT2, dirfd, _b(path), ctypes.byref(how),
                       ctypes.c_size_t(ctypes.sizeof(how)))
        # EAGAIN: RESOLVE_IN_ROOT saw a concurrent rename and asks for a retry.
        if ret >= 0 or ctypes.get_errno() not in (errno.EAGAIN, errno.EINTR):
            return _check(ret, "openat2", path)


OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40

MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_IDMAP = 0x100000
MOUNT_ATTR_NOSYMFOLLOW = 0x200000


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def open_tree(dirfd: int, path: str, flags: int) -> int:
    return _check(_syscall(SYS_OPEN_TREE, dirfd, _b(path), ctypes.c_uint(flags)),
                  "open_tree", path)


def move_mount(from_dirfd: int, from_path: str, to_dirfd: int, to_path: str,
               flags: int) -> None:
    _check(_syscall(SYS_MOVE_MOUNT, from_dirfd, _b(from_path), to_dirfd, _b(to_path),
                    ctypes.c_uint(flags)), "move_mount", to_path)


def mount_setattr(dirfd: int, path: str, flags: int, attr: MountAttr) -> None:
    _check(_syscall(SYS_MOUNT_SETATTR, dirfd, _b(path), ctypes.c_uint(flags),
                    ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))),
           "mount_setattr", path)


# ---- appended by the rootfs work: the fs-context mount API (fsopen/fsconfig/fsmount)
SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432
FSOPEN_CLOEXEC = 0x1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 0x1
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000


def fsopen(fstype: str, flags: int = FSOPEN_CLOEXEC) -> int:
    return _check(_syscall(SYS_FSOPEN, _b(fstype), ctypes.c_uint(flags)), "fsopen", fstype)


def fsconfig(fd: int, cmd: int, key: str | None = None, value: str | None = None,
             aux: int = 0) -> None:
    _check(_syscall(SYS_FSCONFIG, fd, ctypes.c_uint(cmd), _b(key), _b(value), aux),
           "fsconfig", key)


def fsmount(fd: int, flags: int = FSMOUNT_CLOEXEC, attr_flags: int = 0) -> int:
    return _check(_syscall(SYS_FSMOUNT, fd, ctypes.c_uint(flags), ctypes.c_uint(attr_flags)),
                  "fsmount")


def fsopen_mount(fstype: str, data: str | None = None, attr_flags: int = 0) -> int:
    """A new, detached mount of `fstype` configured from "k=v,flag" `data`; its fd."""
    fs = fsopen(fstype)
    try:
        for opt in split_data(data or ""):
            if not opt:
                continue
            key, eq, value = opt.partition("=")
            if eq:
                # mount(2) data quotes values with commas (context="a,b"); fsconfig takes them raw
                if len(value) > 1 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                fsconfig(fs, FSCONFIG_SET_STRING, key, value)
            else:
                fsconfig(fs, FSCONFIG_SET_FLAG, key)
        fsconfig(fs, FSCONFIG_CMD_CREATE)
        return fsmount(fs, FSMOUNT_CLOEXEC, attr_flags)
    finally:
        os.close(fs)


def execve(path: str, args: list[str], env: list[str]) -> None:
    """execve with env as the spec gives it: a list of "K=V" strings, order and all
    (os.execve wants a mapping, which would drop duplicates and reorder)."""
    argv = (ctypes.c_char_p * (len(args) + 1))(*[a.encode() for a in args], None)
    envp = (ctypes.c_char_p * (len(env) + 1))(*[e.encode() for e in env], None)
    _libc.execve(path.encode(), argv, envp)
    err = ctypes.get_errno()
    raise OSError(err, f"exec {path}: {strerror(err)}")  # Go's (runc's) words


def split_data(data: str) -> list[str]:
    """Split mount data on commas, except inside double quotes (context="s0:c1,c2")."""
    out, cur, quoted = [], "", False
    for ch in data:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [o for o in out if o]


class _KSigaction(ctypes.Structure):
    # The kernel's struct sigaction on x86_64 and arm64: handler, flags, restorer, mask.
    _fields_ = [("handler", ctypes.c_ulong), ("flags", ctypes.c_ulong),
                ("restorer", ctypes.c_ulong), ("mask", ctypes.c_ulong)]


_RT_SIGACTION = {"x86_64": 13, "aarch64": 134}.get(_ARCH)


def default_signal(sig: int) -> None:
    """SIG_DFL through rt_sigaction itself: glibc (and so Python) refuses signals 32 and 33,
    which it keeps for threads, but an ignored one would still survive execve."""
    act = _KSigaction(0, 0, 0, 0)
    _check(_syscall(_RT_SIGACTION, sig, ctypes.byref(act), None, 8), "rt_sigaction")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}.get(_ARCH)
SECCOMP_SET_MODE_FILTER = 1


def seccomp_set_filter(program: bytes, flags: int = 0) -> int:
    """seccomp(SECCOMP_SET_MODE_FILTER, flags, program): a classic BPF program (8-byte
    struct sock_filter each). Returns the syscall's result: the notify fd with
    SECCOMP_FILTER_FLAG_NEW_LISTENER, else 0."""
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    return _check(_syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, ctypes.c_uint(flags),
                           ctypes.byref(prog)), "seccomp")
