"""Issue 8, points 11 to 15, and seccomp notify (issue 11): hooks and the seccomp filter,
against runc."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import threading

import pytest
from harness import FdServer, onggi
from paritylib import RUNC


def _hook(script: str, **extra) -> dict:
    return {"path": "/bin/sh", "args": ["sh", "-c", script], **extra}


def _status(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


# ---- 11. a hook without env runs with the runtime's environment

_SHELL_OWN = {"PWD", "SHLVL", "_", "OLDPWD"}  # what sh sets up by itself


def _names(path) -> set[str]:
    return {line.split("=", 1)[0] for line in path.read_text().splitlines() if "=" in line}


def test_11_hook_env(bundle, runc, tmp_path):
    out = tmp_path / "hook-env"
    bundle.config["hooks"] = {
        "prestart": [_hook(f"env > {out}.none"), _hook(f"env > {out}.empty", env=[])],
        "createContainer": [_hook(f"env > {out}.cc")],
    }
    env = {**os.environ, "PARITY_MARKER": "from-the-runtime"}
    res = bundle.run(["true"], env=env)
    assert res.returncode == 0, res.stderr
    assert "PARITY_MARKER=from-the-runtime" in (tmp_path / "hook-env.none").read_text()
    assert _names(tmp_path / "hook-env.empty") <= _SHELL_OWN
    # createContainer runs in the container's init: the process's environment (runc 1.1)
    cc = (tmp_path / "hook-env.cc").read_text()
    assert "TERM=xterm" in cc and "PARITY_MARKER" not in cc
    if RUNC:
        for f in tmp_path.glob("hook-env.*"):
            f.unlink()
        ref = runc.run(bundle, ["true"], env=env)
        assert ref.returncode == 0, ref.stderr
        assert "PARITY_MARKER=from-the-runtime" in (tmp_path / "hook-env.none").read_text()
        assert _names(tmp_path / "hook-env.empty") <= _SHELL_OWN


# ---- 12. createContainer hooks run in the rootfs

def test_12_create_container_hook_cwd_is_the_rootfs(bundle, runc, tmp_path):
    out = tmp_path / "cc-cwd"
    (bundle.rootfs / "relative-marker").write_text("in the rootfs\n")
    bundle.config["hooks"] = {"createContainer": [
        _hook(f"pwd > {out}; cat relative-marker >> {out}")]}
    res = bundle.run(["true"])
    assert res.returncode == 0, res.stderr
    assert out.read_text() == f"{bundle.rootfs}\nin the rootfs\n"
    if RUNC:
        out.unlink()
        assert runc.run(bundle, ["true"]).returncode == 0
        assert out.read_text() == f"{bundle.rootfs}\nin the rootfs\n"


# ---- 13. startContainer hooks run under the container's seccomp filter

@pytest.mark.parametrize("nnp", [True, False])
def test_13_start_container_hook_under_seccomp(bundle, runc, nnp):
    bundle.config["root"]["readonly"] = False
    bundle.config["process"]["noNewPrivileges"] = nnp
    bundle.config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    bundle.config["hooks"] = {"startContainer": [
        _hook("mkdir /hook-dir 2> /hook.err; grep -E '^(Seccomp|NoNewPrivs):' "
              "/proc/self/status > /hook.out")]}
    res = bundle.run(["true"])
    assert res.returncode == 0, res.stderr
    assert "Permission denied" in (bundle.rootfs / "hook.err").read_text()
    st = _status((bundle.rootfs / "hook.out").read_text())
    assert st == {"Seccomp": "2", "NoNewPrivs": "1" if nnp else "0"}
    assert not (bundle.rootfs / "hook-dir").exists()
    if RUNC:
        (bundle.rootfs / "hook.err").unlink()
        assert runc.run(bundle, ["true"]).returncode == 0
        assert "Permission denied" in (bundle.rootfs / "hook.err").read_text()


# ---- 14. a syscall newer than the profile gets ENOSYS

@pytest.fixture(scope="module")
def sc_binary(tmp_path_factory):
    """A static program that calls syscall(N) for each argument and prints N and errno."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("sc")
    (d / "sc.c").write_text(
        "#include <stdio.h>\n#include <stdlib.h>\n#include <errno.h>\n#include <unistd.h>\n"
        "int main(int argc, char **argv) { for (int i = 1; i < argc; i++) { errno = 0;\n"
        "  long r = syscall(atol(argv[i]), 0, 0, 0, 0, 0, 0);\n"
        "  printf(\"%s %d\\n\", argv[i], r < 0 ? errno : 0); } return 0; }\n")
    res = subprocess.run(["gcc", "-static", "-O", "-o", str(d / "sc"), str(d / "sc.c")],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"no static C toolchain: {res.stderr.strip()[:200]}")
    return d / "sc"


def _known_syscalls(upto: int) -> list[str]:
    import pyseccomp

    names = []
    for nr in range(upto + 1):
        try:
            names.append(pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, nr).decode())
        except ValueError:
            continue
    return names


@pytest.mark.parametrize("extra", [[], ["faccessat2"]], ids=["up-to-334", "plus-faccessat2"])
def test_14_unknown_syscalls_get_enosys(bundle, runc, sc_binary, extra):
    if os.uname().machine != "x86_64":
        pytest.skip("syscall numbers are x86_64's")
    shutil.copy(sc_binary, bundle.rootfs / "bin" / "sc")
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": _known_syscalls(334) + extra, "action": "SCMP_ACT_ALLOW"}]}
    argv = ["/bin/sc", "1000", "999", "440", "435", "424", "39"]
    res = bundle.run(argv)
    assert res.returncode == 0, res.stderr
    got = dict(line.split() for line in res.stdout.splitlines())
    # above the largest syscall the profile knows: ENOSYS (38); below it, the default
    # action (EPERM); getpid (39) is allowed
    if extra:  # faccessat2 is 439: 435 and 424 are holes under it now
        assert got == {"1000": "38", "999": "38", "440": "38", "435": "1", "424": "1", "39": "0"}
    else:
        assert got == {"1000": "38", "999": "38", "440": "38", "435": "38", "424": "38",
                       "39": "0"}
    if RUNC:
        ref = runc.run(bundle, argv)
        assert ref.returncode == 0 and ref.stdout == res.stdout, ref.stderr


def test_14_allow_default_gets_no_stub(bundle, sc_binary):
    shutil.copy(sc_binary, bundle.rootfs / "bin" / "sc")
    bundle.config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    res = bundle.run(["/bin/sc", "1000"])
    assert res.stdout == "1000 38\n"  # the kernel's own ENOSYS, not the filter's
    assert res.returncode == 0


# ---- 15. a failing poststart hook only warns (the spec; runc fails: README)

def test_15_failing_poststart_warns_and_the_container_runs(bundle, tmp_path):
    """On purpose unlike runc 1.1.5, which runs poststart at the end of create and fails it
    (runc main fails start and kills the container): runtime.md says a poststart error is
    logged and the lifecycle continues, and the conformance suite checks that."""
    log = tmp_path / "log.json"
    bundle.config["hooks"] = {"poststart": [_hook("echo hookout; exit 3")]}
    cid = bundle.create(args=["sleep", "100"])
    res = onggi("--log", str(log), "--log-format", "json", "start", cid, root=bundle.root)
    assert res.returncode == 0, res.stderr
    assert bundle.state(cid)["status"] == "running"
    [warning] = [json.loads(line) for line in log.read_text().splitlines()
                 if '"warning"' in line]
    assert warning["msg"] == "hooks.poststart[0]: /bin/sh exited with status 3: hookout"


# ---- issue 11: SCMP_ACT_NOTIFY with listenerPath

class _Notif(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64), ("pid", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("nr", ctypes.c_int), ("arch", ctypes.c_uint32), ("ip", ctypes.c_uint64),
                ("args", ctypes.c_uint64 * 6)]


class _Resp(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64), ("val", ctypes.c_int64), ("error", ctypes.c_int32),
                ("flags", ctypes.c_uint32)]


_SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100
_SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101
_SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1


class Agent:
    """A seccomp agent: takes one container process state plus the notify fd from each
    connection, then answers every notification: EACCES, or let it continue."""

    def __init__(self, path: str, answer: str) -> None:
        self.answer = answer
        self.states: list[dict] = []
        self.seen: list[int] = []
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.server = FdServer(path, self._got)

    def _got(self, msg: bytes, fds: list[int]) -> None:
        self.states.append({"msg": json.loads(msg), "nfds": len(fds)})
        threading.Thread(target=self._answer, args=(fds[0],), daemon=True).start()

    def _answer(self, fd: int) -> None:
        ioctl = self.libc.ioctl
        while True:
            req = _Notif()
            if ioctl(fd, ctypes.c_ulong(_SECCOMP_IOCTL_NOTIF_RECV), ctypes.byref(req)) < 0:
                os.close(fd)
                return
            self.seen.append(req.nr)
            resp = _Resp(id=req.id)
            if self.answer == "deny":
                resp.error = -13
            else:
                resp.flags = _SECCOMP_USER_NOTIF_FLAG_CONTINUE
            ioctl(fd, ctypes.c_ulong(_SECCOMP_IOCTL_NOTIF_SEND), ctypes.byref(resp))

    def close(self) -> None:
        self.server.close()


@pytest.mark.parametrize("answer", ["deny", "allow"])
def test_seccomp_notify_the_agent_decides(bundle, tmp_path, answer):
    path = str(tmp_path / "agent.sock")
    agent = Agent(path, answer)
    try:
        bundle.config["root"]["readonly"] = False
        bundle.config["annotations"] = {"k": "v"}
        bundle.config["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": path,
            "listenerMetadata": "meta-1",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}
        res = bundle.sh("mkdir /made && echo made; test -d /made && echo exists; true")
        assert res.returncode == 0, res.stderr
        if answer == "deny":
            assert res.stdout == "" and "Permission denied" in res.stderr
        else:
            assert res.stdout == "made\nexists\n", res.stderr
        [got] = agent.states
        msg = got["msg"]
        assert got["nfds"] == 1 and msg["fds"] == ["seccompFd"]
        assert msg["ociVersion"] == "1.3.0" and msg["metadata"] == "meta-1"
        st = msg["state"]
        assert st["status"] == "creating" and st["pid"] == msg["pid"] > 0
        assert st["id"] == bundle.ids[-1] and st["bundle"] == str(bundle.path)
        assert st["annotations"] == {"k": "v"}
        assert agent.seen  # the notified mkdir went through the agent
    finally:
        agent.close()


def test_seccomp_notify_without_an_agent_fails_create(bundle, tmp_path):
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": str(tmp_path / "nobody.sock"),
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}
    res = bundle.run(["true"])
    assert res.returncode == 1 and len(res.stderr.splitlines()) == 1
    assert res.stderr.startswith(f"onggi: linux.seccomp.listenerPath: {tmp_path}/nobody.sock: "
                                 "cannot send the seccomp fd: ")
    assert os.listdir(bundle.root) == []


@pytest.mark.parametrize("answer", ["deny", "allow"])
def test_seccomp_notify_reaches_the_agent_from_exec_too(bundle, tmp_path, answer):
    """An exec'd process gets the container's filter anew (runc): its notify fd goes to the
    agent as the init's did, with the state of the running container."""
    path = str(tmp_path / "agent.sock")
    agent = Agent(path, answer)
    try:
        bundle.config["root"]["readonly"] = False
        bundle.config["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": path,
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}
        cid = bundle.create(args=["sleep", "60"])
        bundle.onggi("start", cid, check=True)
        res = bundle.onggi("exec", cid, "sh", "-c", "mkdir /byexec && echo made; true")
        assert res.returncode == 0, res.stderr
        assert res.stdout == ("" if answer == "deny" else "made\n"), res.stderr
        assert [s["msg"]["state"]["status"] for s in agent.states] == ["creating", "running"]
        exec_state = agent.states[1]["msg"]
        assert exec_state["pid"] != agent.states[0]["msg"]["pid"]
        assert agent.states[1]["nfds"] == 1
    finally:
        agent.close()
