"""linux.seccomp: the config's filter, built with libseccomp (through pyseccomp).

prepare() runs in the parent: it imports pyseccomp, checks the whole config (a throwaway
filter is built so libseccomp's own refusals surface here, naming the field) and returns a
Plan of plain numbers. build() and load() run in the init between fork and exec, where
nothing may be imported: they only use what prepare() already loaded. Importing this
module itself is cheap and loads neither pyseccomp nor libseccomp.
"""

from __future__ import annotations

from runtime.errors import ConfigError
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
}
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

# Filter flags -> libseccomp attributes (CTL_TSYNC, CTL_LOG, CTL_SSB). A flag libseccomp has
# no attribute for is ignored, as runc does.
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 4,
    "SECCOMP_FILTER_FLAG_LOG": 6,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 7,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": None,
}
_ATTR_CTL_NNP = 3  # libseccomp sets no_new_privs on load unless told not to
_ATTR_API_SYSRAWRC = 9  # the kernel's errno from seccomp_load, not just ECANCELED
_NR_SCMP_ERROR = -1

_ps = None  # the pyseccomp module, once prepare() has imported it (in the parent)


class Rule(Record):
    action: int
    nr: int
    args: tuple = ()  # ((index, op, value, value_two), ...), all in one rule


class Plan(Record):
    default: int
    arches: tuple = ()
    attrs: tuple = ()  # ((attr, value), ...)
    rules: tuple = ()


def _pyseccomp():
    global _ps
    if _ps is not None:
        return _ps
    import ctypes
    import sys

    # pyseccomp resolves both libraries with ctypes.util.find_library at import, which runs
    # ldconfig (~40 ms per create); their sonames are fixed, so name them directly. And
    # unless ctypes.util is loaded already, a stand-in spares its imports (subprocess,
    # tempfile: ~30 ms more): pyseccomp uses nothing else of it.
    names = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}.get
    util = sys.modules.get("ctypes.util")
    if util is None:
        stub = type(sys)("ctypes.util")
        stub.find_library = names
        sys.modules["ctypes.util"] = ctypes.util = stub
    else:
        real, util.find_library = util.find_library, names
    try:
        import pyseccomp
    except OSError:
        raise ConfigError("linux.seccomp", "libseccomp.so.2 is not installed") from None
    finally:
        if util is None:
            del sys.modules["ctypes.util"], ctypes.util
        else:
            util.find_library = real
    _ps = pyseccomp
    return _ps


def _action(name: str, errno_ret: object, field: str) -> int:
    if name == "SCMP_ACT_NOTIFY":
        raise ConfigError(field, "SCMP_ACT_NOTIFY is not supported yet")
    if name not in ACTIONS:
        raise ConfigError(field, f"unknown action {name!r}")
    if name in _WITH_DATA:
        return ACTIONS[name] | ((_EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    return ACTIONS[name]


def prepare(sc: dict | None) -> Plan | None:
    """Check linux.seccomp and turn it into numbers; None when there is no filter."""
    if sc is None:
        return None
    ps = _pyseccomp()
    if sc.get("listenerPath") or sc.get("listenerMetadata"):
        raise ConfigError("linux.seccomp.listenerPath", "seccomp notify is not supported yet")
    default = _action(sc.get("defaultAction"), sc.get("defaultErrnoRet"),
                      "linux.seccomp.defaultAction")
    arches = []
    for i, name in enumerate(sc.get("architectures") or ()):
        if name not in ARCHES:
            raise ConfigError(f"linux.seccomp.architectures[{i}]", f"unknown architecture {name!r}")
        if ARCHES[name] not in arches:
            arches.append(ARCHES[name])
    attrs = [(_ATTR_CTL_NNP, 0)]  # no_new_privs is process.noNewPrivileges' business
    for i, name in enumerate(sc.get("flags") or ()):
        if name not in FLAGS:
            raise ConfigError(f"linux.seccomp.flags[{i}]", f"unknown flag {name!r}")
        if FLAGS[name] is not None:
            attrs.append((FLAGS[name], 1))
    rules = []
    for i, call in enumerate(sc.get("syscalls") or ()):
        field = f"linux.seccomp.syscalls[{i}]"
        action = _action(call.get("action"), call.get("errnoRet"), field + ".action")
        conds = []
        for j, arg in enumerate(call.get("args") or ()):
            op = arg.get("op")
            if op not in OPERATORS:
                raise ConfigError(f"{field}.args[{j}].op", f"unknown operator {op!r}")
            if not 0 <= arg.get("index", -1) <= 5:
                raise ConfigError(f"{field}.args[{j}].index", "must be 0 to 5")
            conds.append((arg["index"], OPERATORS[op], arg.get("value", 0),
                          arg.get("valueTwo", 0)))
        if action == default:
            continue  # libseccomp refuses a rule that repeats the default action (runc skips)
        # libseccomp takes one comparison per argument in a rule: several on the same
        # argument are alternatives, one rule each (as runc does).
        indexes = [c[0] for c in conds]
        groups = [(c,) for c in conds] if len(set(indexes)) < len(indexes) else [tuple(conds)]
        for name in call.get("names") or ():
            nr = ps._libseccomp.seccomp_syscall_resolve_name(name.encode())
            if nr == _NR_SCMP_ERROR:
                continue  # unknown to libseccomp: ignored, like runc
            rules.extend(Rule(action=action, nr=nr, args=g) for g in groups)
    plan = Plan(default=default, arches=tuple(arches), attrs=tuple(attrs), rules=tuple(rules))
    _check(plan, sc)
    return plan


def _check(plan: Plan, sc: dict) -> None:
    """Build the filter once here, so what libseccomp refuses is a config error now
    (and pyseccomp's lazy setup, such as weakref's atexit hook, happens before fork)."""
    try:
        build(plan)
    except OSError as e:
        raise ConfigError("linux.seccomp", f"libseccomp refused the filter: "
                          f"{(e.strerror or str(e)).lower()}") from None


def build(plan: Plan):
    """The libseccomp filter of plan (in the init: no imports here)."""
    ps = _ps
    filt = ps.SyscallFilter(plan.default)
    native = ps.system_arch()
    for arch in plan.arches:
        if arch != native and not filt.exist_arch(arch):
            filt.add_arch(arch)
    try:
        filt.set_attr(_ATTR_API_SYSRAWRC, 1)
    except OSError:
        pass  # an older libseccomp: load errors read ECANCELED
    for attr, value in plan.attrs:
        filt.set_attr(attr, value)
    for r in plan.rules:
        filt.add_rule(r.action, r.nr, *(ps.Arg(*a) for a in r.args))
    return filt


def load(filt) -> None:
    try:
        filt.load()
    except OSError as e:
        raise OSError(e.errno, f"loading seccomp filter: {e.strerror.lower()}") from None
