"""What exec refuses, in runc's words, with runc's exit status 255 (podman turns "not found"
into 127 and "permission denied" into 126)."""

from __future__ import annotations

import os

import pytest
from exec_harness import ex, start

from runtime.errors import OnggiError


@pytest.fixture
def running(bundle) -> str:
    return start(bundle)


def _fails(res, words: str) -> None:
    assert res.returncode == 255, (res.returncode, res.stderr)
    assert words in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_unknown_id(bundle):
    _fails(ex(bundle, "nope", "true"), "exec failed: container nope does not exist")


def test_created_container(bundle):
    """runc allows it (the process would run before the container's own); refused here."""
    cid = bundle.create(args=["sleep", "100"])
    _fails(ex(bundle, cid, "true"), "cannot exec in a created container")
    assert bundle.state(cid)["status"] == "created"


def test_stopped_container(bundle):
    cid = start(bundle, ["true"])
    bundle.wait_stopped(cid)
    _fails(ex(bundle, cid, "true"), "exec failed: cannot exec in a stopped container")


def test_paused_container(bundle, running):
    res = bundle.onggi("pause", running)
    assert res.returncode == 0, res.stderr
    try:
        _fails(ex(bundle, running, "true"),
               "cannot exec in a paused container (use --ignore-paused to override)")
    finally:
        bundle.onggi("resume", running, check=True)
    assert ex(bundle, running, "true").returncode == 0


@pytest.mark.parametrize(("cmd", "words"), [
    (["nonexistent-cmd"], 'exec: "nonexistent-cmd": executable file not found in $PATH'),
    (["/nonexistent"], 'exec: "/nonexistent": stat /nonexistent: no such file or directory'),
    (["/etc/passwd"], 'exec: "/etc/passwd": permission denied'),
    (["/etc"], 'exec: "/etc": permission denied'),
])
def test_executable_errors_in_runcs_words(bundle, running, cmd, words):
    _fails(ex(bundle, running, *cmd), f"unable to start container process: {words}")


def test_execve_errors_are_reported(bundle, running):
    """Unlike runc (which only knows LookPath succeeded), an execve failure is exec's own:
    the sync socket stays open across execve and reports its errno."""
    (bundle.rootfs / "bad").write_bytes(b"\x7fELF not really")
    os.chmod(bundle.rootfs / "bad", 0o755)
    _fails(ex(bundle, "-d", running, "/bad"), "exec format error")


def test_no_command(bundle, running):
    _fails(ex(bundle, running), "exec args cannot be empty")


@pytest.mark.parametrize(("flags", "words"), [
    (["-d", "-t"], "cannot allocate tty if onggi will detach without setting console socket"),
    (["--console-socket", "/x"], "cannot use console socket if onggi will not detach or "
                                 "allocate tty"),
    (["-d", "--console-socket", "/x"], "cannot use console socket"),
    (["-d", "-t", "--console-socket", "/nonexistent"],
     "--console-socket /nonexistent: no such file or directory"),
    (["-u", "x"], "--user x: bad uid"),
    (["-u", "1:x"], "--user 1:x: bad gid"),
    (["-g", "-1"], "--additional-gids -1: bad gid"),
    (["-e", "NOEQUALS"], "--env 'NOEQUALS': invalid environment variable 'NOEQUALS': "
                         "missing '='"),
    (["-e", "=x"], "name cannot be empty"),
    (["--apparmor", "prof"], "--apparmor: AppArmor is not enabled on this host"),
    (["--process-label", "l"], "--process-label: selinux label is specified in config, but "
                                "selinux is disabled or not supported"),
    (["--preserve-fds", "x"], "--preserve-fds x: must be a number"),
])
def test_bad_flags(bundle, running, flags, words):
    if flags[0] == "--apparmor" and os.path.exists("/sys/module/apparmor"):
        pytest.skip("this host has AppArmor")
    if flags[0] == "--process-label" and os.path.exists("/sys/fs/selinux/enforce"):
        pytest.skip("this host has SELinux")
    res = ex(bundle, *flags, running, "true")
    assert res.returncode in (2, 255) and words in res.stderr, res.stderr


def test_lsm_fields_from_the_config_are_refused(bundle):
    """Until LSM support, a profile the container asks for is never silently dropped."""
    if os.path.exists("/sys/module/apparmor"):
        pytest.skip("this host has AppArmor")
    cid = start(bundle)
    cfg = bundle.root / cid / "config.json"
    import json

    doc = json.loads(cfg.read_text())
    doc["process"]["apparmorProfile"] = "docker-default"
    cfg.write_text(json.dumps(doc))
    _fails(ex(bundle, cid, "true"), "process.apparmorProfile: AppArmor is not enabled")


def test_usage_errors(bundle, running):
    res = ex(bundle, "--bogus", running, "true")
    assert res.returncode == 2 and "flag provided but not defined: --bogus" in res.stderr
    res = ex(bundle)
    assert res.returncode == 2 and "requires a minimum of 1 argument" in res.stderr
    res = ex(bundle, "-e")
    assert res.returncode == 2 and "flag needs an argument: -e" in res.stderr
    res = ex(bundle, "--help")
    assert res.returncode == 0 and res.stdout.startswith("usage: onggi exec")


def test_json_log_gets_the_error(bundle, running, tmp_path):
    """Engines read the last error line of --log."""
    import json

    log = tmp_path / "log.json"
    res = bundle.onggi("--log", str(log), "--log-format", "json", "exec", running, "nope")
    assert res.returncode == 255
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["level"] == "error" and "executable file not found in $PATH" in last["msg"]


def test_exec_args_parse_like_runc():
    from runtime import exec as ex_mod

    a = ex_mod.parse(["--tty", "-d=false", "-e", "A=1", "--env=B=2", "-cwd", "/x", "--user=1:2",
                      "-g", "3", "--cap", "CAP_KILL", "--no-new-privs=false", "--cgroup",
                      "cpu,memory:sub", "--preserve-fds=2", "-p", "f", "--", "id", "cmd", "-t"])
    assert (a.tty, a.detach, a.env, a.cwd, a.user, a.additional_gids, a.cap) == (
        True, False, ("A=1", "B=2"), "/x", "1:2", ("3",), ("CAP_KILL",))
    assert (a.no_new_privs, a.cgroup, a.preserve_fds, a.process, a.id, a.args) == (
        False, ("cpu,memory:sub",), "2", "f", "id", ("cmd", "-t"))
    assert ex_mod.parse(["-h"]) is None
    assert ex_mod.parse(["id"]).no_new_privs is None
    for bad in (["-t=maybe", "id"], ["--nope", "id"], ["-u"], []):
        with pytest.raises(OnggiError):
            ex_mod.parse(bad)
