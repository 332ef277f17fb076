"""linux.seccomp: the config's filter, compiled with libseccomp (through pyseccomp).

prepare() runs in the parent: it imports pyseccomp, checks the whole config, builds the
filter, exports its BPF program and prefixes runc's ENOSYS stub (a syscall newer than the
profile gets ENOSYS, not the default action, so that programs fall back to older ones).
What reaches the init is plain bytes and flags: build() and load() there only call
seccomp(2) through ctypes (runtime.linux.syscalls), never libseccomp. With SCMP_ACT_NOTIFY
the filter is loaded with SECCOMP_FILTER_FLAG_NEW_LISTENER, and the parent hands the
listener fd to the agent at linux.seccomp.listenerPath (send_to_listener). Importing this
module itself is cheap and loads neither pyseccomp nor libseccomp.
"""

from __future__ import annotations

import errno as _errno
import os
import struct

from runtime.errors import ConfigError, OnggiError, reason, strerror
from runtime.linux import syscalls
from runtime.record import Record

# The kernel's SECCOMP_RET_* values (libseccomp's SCMP_ACT_*); ERRNO and TRACE carry data.
ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,  # runc: KILL is KILL_THREAD
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
    "SCMP_ACT_NOTIFY": 0x7FC00000,  # SECCOMP_RET_USER_NOTIF
}
_ALLOW_LIKE = (0x7FFF0000, 0x7FFC0000)  # + TRACE: no ENOSYS stub (runc's isAllowAction)
_WITH_DATA = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
_EPERM = 1  # runc's return code for ERRNO and TRACE without errnoRet

OPERATORS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# AUDIT_ARCH_* values (libseccomp's SCMP_ARCH_*) of what libseccomp 2.5 knows.
_LE, _64, _N32 = 0x40000000, 0x80000000, 0x20000000
ARCHES = {
    "SCMP_ARCH_X86": 3 | _LE,
    "SCMP_ARCH_X86_64": 62 | _64 | _LE,
    "SCMP_ARCH_X32": 62 | _LE,
    "SCMP_ARCH_ARM": 40 | _LE,
    "SCMP_ARCH_AARCH64": 183 | _64 | _LE,
    "SCMP_ARCH_MIPS": 8,
    "SCMP_ARCH_MIPS64": 8 | _64,
    "SCMP_ARCH_MIPS64N32": 8 | _64 | _N32,
    "SCMP_ARCH_MIPSEL": 8 | _LE,
    "SCMP_ARCH_MIPSEL64": 8 | _64 | _LE,
    "SCMP_ARCH_MIPSEL64N32": 8 | _64 | _LE | _N32,
    "SCMP_ARCH_PPC": 20,
    "SCMP_ARCH_PPC64": 21 | _64,
    "SCMP_ARCH_PPC64LE": 21 | _64 | _LE,
    "SCMP_ARCH_S390": 22,
    "SCMP_ARCH_S390X": 22 | _64,
    "SCMP_ARCH_PARISC": 15,
    "SCMP_ARCH_PARISC64": 15 | _64,
    "SCMP_ARCH_RISCV64": 243 | _64 | _LE,
}

# The seccomp(2) filter flags. TSYNC syncs the filter to all threads of the process: the
# init has one thread, so it holds without the flag (which NEW_LISTENER would refuse).
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 0,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32,
}
_FLAG_NEW_LISTENER = 8
_ATTR_CTL_OPTIMIZE = 8  # libseccomp's binary tree of syscalls (runc: above 32 rules)
_NR_SCMP_ERROR = -1
BPF_MAXINSNS = 4096
# Syscalls the init itself makes between loading the filter and handing the notify fd to
# the parent: notifying them would hang the create (runc refuses "write" for the same
# reason; our sync message is a sendmsg).
_NOT_NOTIFIABLE = ("write", "sendmsg")

_ps = None  # the pyseccomp module, once prepare() has imported it (in the parent)


class Rule(Record):
    action: int
    nr: int
    args: tuple = ()  # ((index, op, value, value_two), ...), all in one rule


class Plan(Record):
    default: int
    arches: tuple = ()
    rules: tuple = ()
    flags: int = 0  # for seccomp(2)
    program: bytes = b""  # the ENOSYS stub, then libseccomp's BPF (native endianness)
    listener: bool = False  # SCMP_ACT_NOTIFY is used: the load returns a notify fd


def _pyseccomp():
    global _ps
    if _ps is not None:
        return _ps
    import ctypes
    import sys

    # pyseccomp resolves both libraries with ctypes.util.find_library at import, which runs
    # ldconfig (~40 ms per create); their sonames are fixed, so name them directly. And
    # unless ctypes.util is loaded already, a stand-in spares its imports (subprocess,
    # tempfile: ~30 ms more): pyseccomp uses nothing else of it. Likewise `typing` (~7 ms
    # with re, enum and collections), which it needs only for annotations and cast().
    names = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}.get
    util = sys.modules.get("ctypes.util")
    if util is None:
        stub = type(sys)("ctypes.util")
        stub.find_library = names
        sys.modules["ctypes.util"] = ctypes.util = stub
    else:
        real, util.find_library = util.find_library, names
    typing_stub = "typing" not in sys.modules
    if typing_stub:
        sys.modules["typing"] = _typing_stand_in()
    try:
        try:
            import pyseccomp
        except ImportError:  # a pyseccomp that wants more of typing: the real one, then
            if not typing_stub:
                raise
            del sys.modules["typing"]
            sys.modules.pop("pyseccomp", None)
            typing_stub = False
            import pyseccomp
    except OSError:
        raise ConfigError("linux.seccomp", "libseccomp.so.2 is not installed") from None
    finally:
        if util is None:
            del sys.modules["ctypes.util"], ctypes.util
        else:
            util.find_library = real
        if typing_stub:
            del sys.modules["typing"]
    _ps = pyseccomp
    return _ps


class _Annotation:
    """What typing's generics are to pyseccomp: annotations, subscripted at its import."""

    def __getitem__(self, _item: object) -> _Annotation:
        return self


def _typing_stand_in():
    """The names pyseccomp imports from typing, with their runtime behaviour (cast returns
    its value, overload its function); an import of any other name fails (ImportError)."""
    import sys

    stub = type(sys)("typing")
    stub.Any = stub.Collection = stub.Iterable = stub.Union = _Annotation()
    stub.cast = lambda _type, value: value
    stub.overload = lambda fn: fn
    return stub


def _action(name: str, errno_ret: object, field: str, errno_field: str) -> int:
    if name not in ACTIONS:
        raise ConfigError(field, f"unknown action {name!r}")
    if name in _WITH_DATA:
        return ACTIONS[name] | ((_EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if errno_ret is not None:  # config-linux.md: the runtime MUST print an error and fail
        raise ConfigError(errno_field, f"{name} does not take an errno")
    return ACTIONS[name]


def prepare(sc: dict | None) -> Plan | None:
    """Check linux.seccomp, compile it; None when there is no filter."""
    if sc is None:
        return None
    ps = _pyseccomp()
    default = _action(sc.get("defaultAction"), sc.get("defaultErrnoRet"),
                      "linux.seccomp.defaultAction", "linux.seccomp.defaultErrnoRet")
    if default == ACTIONS["SCMP_ACT_NOTIFY"]:
        raise ConfigError("linux.seccomp.defaultAction",
                          "SCMP_ACT_NOTIFY cannot be used as the default action")
    arches = []
    for i, name in enumerate(sc.get("architectures") or ()):
        if name not in ARCHES:
            raise ConfigError(f"linux.seccomp.architectures[{i}]", f"unknown architecture {name!r}")
        if ARCHES[name] not in arches:
            arches.append(ARCHES[name])
    flags = 0
    for i, name in enumerate(sc.get("flags") or ()):
        if name not in FLAGS:
            raise ConfigError(f"linux.seccomp.flags[{i}]", f"unknown flag {name!r}")
        flags |= FLAGS[name]
    rules = []
    names_used: list[str] = []
    listener = False
    for i, call in enumerate(sc.get("syscalls") or ()):
        field = f"linux.seccomp.syscalls[{i}]"
        action = _action(call.get("action"), call.get("errnoRet"), field + ".action",
                         field + ".errnoRet")
        names = call.get("names") or ()
        if action == ACTIONS["SCMP_ACT_NOTIFY"]:
            listener = True
            for name in names:
                if name in _NOT_NOTIFIABLE:
                    raise ConfigError(field + ".names", f"SCMP_ACT_NOTIFY cannot be used for "
                                      f"{name!r}: the runtime needs it to hand over the notify fd")
        conds = []
        for j, arg in enumerate(call.get("args") or ()):
            op = arg.get("op")
            if op not in OPERATORS:
                raise ConfigError(f"{field}.args[{j}].op", f"unknown operator {op!r}")
            if not 0 <= arg.get("index", -1) <= 5:
                raise ConfigError(f"{field}.args[{j}].index", "must be 0 to 5")
            conds.append((arg["index"], OPERATORS[op], arg.get("value", 0),
                          arg.get("valueTwo", 0)))
        names_used += names
        if action == default:
            continue  # libseccomp refuses a rule that repeats the default action (runc skips)
        # libseccomp takes one comparison per argument in a rule: several on the same
        # argument are alternatives, one rule each (as runc does).
        indexes = [c[0] for c in conds]
        groups = [(c,) for c in conds] if len(set(indexes)) < len(indexes) else [tuple(conds)]
        for name in names:
            nr = ps._libseccomp.seccomp_syscall_resolve_name(name.encode())
            if nr == _NR_SCMP_ERROR:
                continue  # unknown to libseccomp: ignored, like runc
            rules.extend(Rule(action=action, nr=nr, args=g) for g in groups)
    _check_listener(sc, listener)
    if flags & FLAGS["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"] and not listener:
        raise ConfigError("linux.seccomp.flags", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV "
                          "applies to SCMP_ACT_NOTIFY, which no rule uses")
    if listener:
        flags |= _FLAG_NEW_LISTENER
    plan = Plan(default=default, arches=tuple(arches), rules=tuple(rules), flags=flags,
                listener=listener)
    program = _compile(plan, sc)
    stub = b"" if default in _ALLOW_LIKE or default & 0xFFFF0000 == ACTIONS["SCMP_ACT_TRACE"] \
        else enosys_stub(_last_syscalls(ps, plan, names_used))
    program = stub + program
    if len(program) // 8 > BPF_MAXINSNS:
        raise ConfigError("linux.seccomp", f"the filter needs {len(program) // 8} BPF "
                          f"instructions, more than the kernel's {BPF_MAXINSNS}")
    return Plan(**{**plan.__dict__, "program": program})


def _check_listener(sc: dict, listener: bool) -> None:
    if sc.get("listenerMetadata") and not sc.get("listenerPath"):
        raise ConfigError("linux.seccomp.listenerMetadata", "needs listenerPath")
    if listener and not sc.get("listenerPath"):
        raise ConfigError("linux.seccomp.listenerPath",
                          "is required when a rule uses SCMP_ACT_NOTIFY")
    # without SCMP_ACT_NOTIFY, listenerPath is ignored (config-linux.md)


def _compile(plan: Plan, sc: dict) -> bytes:
    """libseccomp's BPF for plan; what libseccomp refuses is a config error now."""
    ps = _ps
    try:
        filt = ps.SyscallFilter(plan.default)
        native = ps.system_arch()
        for arch in plan.arches:
            if arch != native and not filt.exist_arch(arch):
                filt.add_arch(arch)
        if len(sc.get("syscalls") or ()) > 32:
            try:
                filt.set_attr(_ATTR_CTL_OPTIMIZE, 2)
            except OSError:
                pass  # an older libseccomp: a linear filter
        for r in plan.rules:
            filt.add_rule(r.action, r.nr, *(ps.Arg(*a) for a in r.args))
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            with open(fd, "wb", closefd=False) as f:
                filt.export_bpf(f)
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(fd)
    except OSError as e:
        raise ConfigError("linux.seccomp", f"libseccomp refused the filter: "
                          f"{reason(e)}") from None
    return b"".join(chunks)


# ---------------------------------------------------------------- the ENOSYS stub

_X32_BIT = 0x40000000
_AUDIT_X86_64 = ARCHES["SCMP_ARCH_X86_64"]
_S390 = (ARCHES["SCMP_ARCH_S390"], ARCHES["SCMP_ARCH_S390X"])
_LD_W_ABS, _JEQ_K, _JGT_K, _JSET_K, _JA, _RET_K = 0x20, 0x15, 0x25, 0x45, 0x05, 0x06
_RET_ENOSYS = ACTIONS["SCMP_ACT_ERRNO"] | _errno.ENOSYS


def _last_syscalls(ps, plan: Plan, names: list[str]) -> dict[int, dict[int, int]]:
    """{AUDIT_ARCH: {libseccomp arch: largest syscall number the profile names}} for the
    native arch and every listed one, as runc's findLastSyscalls (x32 shares x86_64's
    AUDIT_ARCH; its numbers carry the x32 bit)."""
    out: dict[int, dict[int, int]] = {}
    for arch in dict.fromkeys([ps.system_arch(), *plan.arches]):
        audit = _AUDIT_X86_64 if arch == ARCHES["SCMP_ARCH_X32"] else arch
        largest = max((n for n in (ps.resolve_syscall(arch, name) for name in set(names))
                       if n > 0), default=0)
        if largest:
            out.setdefault(audit, {})[arch] = largest
    return out


def enosys_stub(last: dict[int, dict[int, int]]) -> bytes:
    """BPF to put before libseccomp's program: for each arch, a syscall number above the
    largest the profile knows returns ENOSYS; everything else falls into the filter.
    (runc's patchbpf: "holes" below the largest number keep the default action.)"""
    if not last:
        return b""
    # Symbolic program: (code, jt, jf, k) where jt/jf/k may be labels; resolved below.
    prog: list[list] = [[_LD_W_ABS, 0, 0, 4]]  # A = seccomp_data.arch
    for audit in last:
        prog.append([_JEQ_K, ("arch", audit), 0, audit])
    prog.append([_JA, 0, 0, "filter"])
    labels: dict[object, int] = {}
    for audit, per in last.items():
        labels[("arch", audit)] = len(prog)
        prog.append([_LD_W_ABS, 0, 0, 0])  # A = seccomp_data.nr
        if audit in _S390:  # setup(2), nr 0, multiplexes newer syscalls there
            prog.append([_JEQ_K, "enosys", 0, 0])
        native, x32 = per.get(audit), per.get(ARCHES["SCMP_ARCH_X32"])
        if audit == _AUDIT_X86_64:
            # the x32 bit tells the ABIs apart; an ABI without a maximum goes to the filter
            prog.append([_JSET_K, "x32" if x32 else "filter", 0, _X32_BIT])
            if native:
                prog.append([_JGT_K, "enosys", "filter", native])
            else:
                prog.append([_JA, 0, 0, "filter"])
            if x32:
                labels["x32"] = len(prog)
                prog.append([_JGT_K, "enosys", "filter", x32])
        else:
            prog.append([_JGT_K, "enosys", "filter", native])
    labels["enosys"] = len(prog)
    prog.append([_RET_K, 0, 0, _RET_ENOSYS])
    labels["filter"] = len(prog)
    out = []
    for i, (code, jt, jf, k) in enumerate(prog):
        if code == _JA:
            k = labels[k] - i - 1 if isinstance(k, str) else k
        else:
            jt = labels[jt] - i - 1 if not isinstance(jt, int) else jt
            jf = labels[jf] - i - 1 if not isinstance(jf, int) else jf
        out.append(struct.pack("=HBBI", code, jt, jf, k))
    return b"".join(out)


# ---------------------------------------------------------------- in the init


def load(plan: Plan) -> int | None:
    """Load the filter on this thread; the notify fd when the filter has a listener."""
    try:
        fd = syscalls.seccomp_set_filter(plan.program, plan.flags)
    except OSError as e:
        raise OSError(e.errno, f"loading seccomp filter: {strerror(e.errno)}") \
            from None
    return fd if plan.listener else None


# ---------------------------------------------------------------- in the parent


def send_to_listener(sc: dict, state: dict, pid: int, fd: int) -> None:
    """The container process state (config-linux.md), with the notify fd as SCM_RIGHTS,
    once over a new connection to listenerPath; any failure is an error."""
    from runtime import OCI_VERSION, fastjson, messages

    path = sc.get("listenerPath") or ""
    msg = {"ociVersion": OCI_VERSION, "fds": ["seccompFd"], "pid": pid}
    if sc.get("listenerMetadata"):
        msg["metadata"] = sc["listenerMetadata"]
    msg["state"] = state
    try:
        messages.send_fd_to(path, fastjson.dumps(msg).encode(), fd)
    except OSError as e:
        raise OnggiError(f"linux.seccomp.listenerPath: {path}: cannot send the seccomp fd: "
                         f"{reason(e)}") from None
