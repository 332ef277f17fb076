"""linux.seccomp: the filter is loaded, enforced, and bad filters are refused up front."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from harness import REPO, create_imports
from leakcheck import Probe

ALLOW = "SCMP_ACT_ALLOW"


def _status(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _filter(bundle, *syscalls: dict, default: str = ALLOW, **more) -> None:
    bundle.config["linux"]["seccomp"] = {"defaultAction": default, "syscalls": list(syscalls),
                                         **more}


def _all_syscalls_but(*blocked: str) -> list[str]:
    """Every syscall name libseccomp knows on this machine, less blocked."""
    import pyseccomp

    names = set()
    for nr in range(0, 1024):
        try:
            names.add(pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, nr).decode())
        except ValueError:
            continue
    return sorted(names - set(blocked))


@pytest.mark.parametrize(("errno_ret", "text"), [(None, "Operation not permitted"),
                                                 (38, "Function not implemented")])
def test_errno_rule(bundle, errno_ret, text):
    bundle.config["root"]["readonly"] = False
    rule = {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}
    if errno_ret is not None:
        rule["errnoRet"] = errno_ret
    _filter(bundle, rule)
    res = bundle.sh("mkdir /tmp/x; echo rc=$?; touch /tmp/y && echo touched")
    assert f"can't create directory '/tmp/x': {text}" in res.stderr
    assert res.stdout == "rc=1\ntouched\n" and res.returncode == 0


def test_default_errno_with_an_allow_list(bundle):
    _filter(bundle, {"names": _all_syscalls_but("getcwd"), "action": ALLOW},
            default="SCMP_ACT_ERRNO", defaultErrnoRet=13)
    res = bundle.sh("echo before; busybox pwd; echo after rc=$?")
    assert res.stdout.startswith("before\n") and res.stdout.endswith("after rc=1\n")
    assert "Permission denied" in res.stderr
    assert res.returncode == 0


def test_unknown_syscall_names_are_ignored(bundle):
    _filter(bundle, {"names": ["no_such_syscall", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"})
    res = bundle.sh("mkdir /tmp/x 2>&1; echo rc=$?")
    assert "Operation not permitted" in res.stdout and res.stdout.endswith("rc=1\n")


def test_args_condition(bundle):
    # kill(pid, 0) is refused; kill(pid, SIGCONT) is not: only the signal argument decides.
    _filter(bundle, {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                     "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]})
    res = bundle.sh("kill -0 $$ && echo zero; kill -CONT $$ && echo cont; true")
    assert res.stdout == "cont\n"
    assert "Operation not permitted" in res.stderr


def test_several_conditions_on_one_argument_are_alternatives(bundle):
    _filter(bundle, {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                     "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"},
                              {"index": 1, "value": 18, "op": "SCMP_CMP_EQ"}]})
    res = bundle.sh("kill -0 $$ && echo zero; kill -CONT $$ && echo cont; "
                    "kill -WINCH $$ && echo winch; true")
    assert res.stdout == "winch\n"


def test_masked_eq(bundle):
    # refuse any kill whose signal has bit 1 set (SIGINT=2, SIGQUIT=3, SIGUSR2=12 ...)
    _filter(bundle, {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                     "args": [{"index": 1, "value": 2, "valueTwo": 2,
                               "op": "SCMP_CMP_MASKED_EQ"}]})
    res = bundle.sh("trap '' INT WINCH; kill -INT $$ && echo int; kill -WINCH $$ && echo winch; "
                    "true")
    assert res.stdout == "winch\n"  # SIGWINCH is 28: bit 1 clear


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS"])
def test_kill_action(bundle, action):
    _filter(bundle, {"names": ["mkdir", "mkdirat"], "action": action})
    res = bundle.sh("mkdir /tmp/x; echo rc=$?")
    assert res.stdout == "rc=159\n", res  # 128 + SIGSYS, as sh saw its child die
    assert bundle.run(["mkdir", "/tmp/x"]).returncode == 128 + 31


def test_status_shows_the_filter(bundle):
    bundle.config["process"]["noNewPrivileges"] = True
    _filter(bundle, {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}, flags=[
        "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"])
    st = _status(bundle.run(["cat", "/proc/self/status"]).stdout)
    assert st["Seccomp"] == "2" and st["NoNewPrivs"] == "1"


@pytest.mark.parametrize("user", [0, 1000])
def test_without_no_new_privileges(bundle, user):
    # Then the filter needs CAP_SYS_ADMIN to load: the init loads it before dropping caps.
    bundle.config["process"]["noNewPrivileges"] = False
    bundle.config["process"]["user"] = {"uid": user, "gid": user}
    bundle.config["process"]["capabilities"] = {k: [] for k in ("bounding", "effective",
                                                                "permitted")}
    _filter(bundle, {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"})
    res = bundle.sh("grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status; mkdir /tmp/x")
    st = _status(res.stdout)
    assert (st["Seccomp"], st["NoNewPrivs"], st["CapEff"]) == ("2", "0", "0000000000000000")
    assert "Operation not permitted" in res.stderr


def test_architectures_are_accepted(bundle):
    _filter(bundle, {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
            architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
                           "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
    res = bundle.sh("mkdir /tmp/x")
    assert res.returncode == 1 and "Operation not permitted" in res.stderr


def test_rule_with_the_default_action_is_skipped(bundle):
    _filter(bundle, {"names": ["getpid"], "action": ALLOW})
    assert bundle.run(["true"]).returncode == 0


def _snapshot(bundle) -> tuple:
    """Mounts of this test only: other tests on the machine mount things meanwhile."""
    return sorted(Probe(paths=[bundle.path, bundle.root]).mounts()), sorted(os.listdir(bundle.root))


@pytest.mark.parametrize(("seccomp", "field"), [
    ({"defaultAction": "SCMP_ACT_FOO"}, "linux.seccomp.defaultAction"),
    ({"defaultAction": ALLOW, "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_BAR"}]},
     "linux.seccomp.syscalls[0].action"),
    ({"defaultAction": ALLOW, "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_XX"}]}]},
     "linux.seccomp.syscalls[1].args[0].op"),
    ({"defaultAction": ALLOW, "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]},
     "linux.seccomp.listenerPath"),
    ({"defaultAction": ALLOW, "listenerPath": "/run/x.sock", "syscalls": [
        {"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]}, "linux.seccomp.syscalls[0].names"),
    ({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/x.sock"},
     "linux.seccomp.defaultAction"),
    ({"defaultAction": ALLOW, "listenerMetadata": "m"}, "linux.seccomp.listenerMetadata"),
    ({"defaultAction": ALLOW, "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL",
                                            "errnoRet": 5}]}, "linux.seccomp.syscalls[0].errnoRet"),
    ({"defaultAction": ALLOW, "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]},
     "linux.seccomp.flags"),
    ({"defaultAction": ALLOW, "architectures": ["SCMP_ARCH_NOPE"]},
     "linux.seccomp.architectures[0]"),
    ({"defaultAction": ALLOW, "flags": ["SECCOMP_FILTER_FLAG_NOPE"]}, "linux.seccomp.flags[0]"),
])
def test_bad_filters_are_refused(bundle, seccomp, field):
    bundle.config["linux"]["seccomp"] = seccomp
    bundle.write()
    before = _snapshot(bundle)
    cid = bundle.new_id()  # unique: the cgroups are named after it
    res = bundle.onggi("create", "-b", str(bundle.path), cid)
    lines = res.stderr.splitlines()
    assert res.returncode != 0 and len(lines) == 1 and lines[0].startswith("onggi: "), res.stderr
    assert field in lines[0], lines[0]
    assert _snapshot(bundle) == before and not (bundle.root / cid).exists()


def test_create_without_seccomp_does_not_import_pyseccomp(bundle):
    bundle.config["linux"].pop("seccomp", None)
    imported = create_imports(bundle)
    assert "runtime.launch" in imported  # the measurement works
    # jeepney (D-Bus) only with --systemd-cgroup
    assert not imported & {"pyseccomp", "jsonschema", "pyroute2", "ctypes.util", "jeepney",
                           "runtime.cgroups.systemd"}, imported
    _filter(bundle, {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"})
    imported = create_imports(bundle)
    assert "pyseccomp" in imported
    # libseccomp is loaded by its soname: no find_library (ctypes.util, which runs ldconfig),
    # and pyseccomp's `from typing import ...` meets a stand-in (typing pulls in re and enum)
    assert not imported & {"ctypes.util", "subprocess", "jsonschema", "pyroute2", "typing",
                           "re", "enum"}, imported


def _in_fresh_python(code: str, path: list[str] = ()) -> list[str]:
    """`code` after _pyseccomp() in an interpreter without `site` (as the launcher runs)."""
    import sysconfig

    site = sysconfig.get_paths()["purelib"]
    pre = (f"import sys; sys.path[:0] = {[str(REPO), *path]!r}; sys.path.append({site!r})\n"
           "from runtime.linux import seccomp\nps = seccomp._pyseccomp()\n")
    res = subprocess.run([sys.executable, "-S", "-c", pre + code], capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def test_pyseccomp_works_and_no_stand_in_is_left():
    out = _in_fresh_python("import typing\nprint(ps.system_arch() > 0, ps.resolve_syscall("
                           "ps.system_arch(), 'mkdir') > 0, hasattr(typing, 'Optional'), "
                           "'ctypes.util' in sys.modules)")
    assert out == ["True", "True", "True", "False"]


def test_a_pyseccomp_wanting_more_of_typing_gets_the_real_one(tmp_path):
    (tmp_path / "pyseccomp.py").write_text(
        "from typing import Optional\nfrom ctypes.util import find_library\n"
        "LIB: Optional[str] = find_library('seccomp')\n")
    out = _in_fresh_python("import typing\nprint(ps.LIB, hasattr(typing, 'TypeVar'))",
                           [str(tmp_path)])
    assert out == ["libseccomp.so.2", "True"]
