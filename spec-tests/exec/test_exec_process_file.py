"""`exec --process FILE`: the runtime-spec `process` objects podman (conmon) and containerd
send, and what a file leaves out (taken from the container, as runc does for most)."""

from __future__ import annotations

import json
import os

import pytest
from exec_harness import ex, exec_from_subreaper, start

from runtime.spec import CAP_NUMBER


def _mask(*names: str) -> int:
    return sum(1 << CAP_NUMBER[n] for n in names)


def _status(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


@pytest.fixture
def container(bundle) -> str:
    p = bundle.config["process"]
    p["noNewPrivileges"] = True
    p["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 777, "hard": 888}]
    p["user"]["umask"] = 0o077
    return start(bundle)


def _write(tmp_path, doc: dict) -> str:
    path = tmp_path / f"process-{len(list(tmp_path.glob('process-*')))}.json"
    path.write_text(json.dumps(doc))
    return str(path)


PROBE = ("grep -E '^(Cap(Bnd|Eff|Prm)|NoNewPrivs)' /proc/self/status; ulimit -n; umask; "
         "id -u; id -g; id -G; pwd; env")


def test_podmans_shape(bundle, container, tmp_path):
    """conmon's exec-process file: user, args, env, cwd, capabilities, rlimits, terminal."""
    caps = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    doc = {"terminal": False, "user": {"uid": 1000, "gid": 1000, "additionalGids": [10]},
           "args": ["sh", "-c", PROBE],
           "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm", "container=podman",
                   "HOSTNAME=ctr", "HOME=/home/u"],
           "cwd": "/tmp",
           "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
           "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 2048}]}
    res = ex(bundle, "--process", _write(tmp_path, doc), "--detach=false", container)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    st = _status("\n".join(lines[:4]))
    assert int(st["CapBnd"], 16) == _mask(*caps)
    assert int(st["CapEff"], 16) == int(st["CapPrm"], 16) == 0  # uid 1000 keeps none
    assert st["NoNewPrivs"] == "1"  # not in the file: the container's (runc: 0)
    assert lines[4:10] == ["2048", "0077", "1000", "1000", "1000 10", "/tmp"]
    env = lines[10:]
    assert "container=podman" in env and "HOME=/home/u" in env and "HOSTNAME=ctr" in env


def test_containerds_shape(bundle, container, tmp_path):
    """ctr task exec: the container's process with the args replaced, noNewPrivileges and
    additionalGids spelled out."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"]
    doc = {"user": {"uid": 0, "gid": 0, "additionalGids": [0, 10]}, "args": ["sh", "-c", PROBE],
           "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
           "cwd": "/", "capabilities": {"bounding": caps, "effective": caps,
                                        "permitted": caps},
           "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
           "noNewPrivileges": False}
    res = ex(bundle, "--process", _write(tmp_path, doc), container)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    st = _status("\n".join(lines[:4]))
    assert int(st["CapEff"], 16) == _mask(*caps) and st["NoNewPrivs"] == "0"
    assert lines[4:10] == ["1024", "0077", "0", "0", "0 10", "/"]
    assert "HOME=/root" in lines[10:]  # none in the file: the container's passwd


def test_what_the_file_leaves_out_comes_from_the_container(bundle, container, tmp_path):
    doc = {"args": ["sh", "-c", PROBE], "cwd": "/", "env": ["PATH=/bin:/usr/bin"]}
    res = ex(bundle, "-p", _write(tmp_path, doc), container)
    lines = res.stdout.splitlines()
    st = _status("\n".join(lines[:4]))
    want = _mask(*bundle.config["process"]["capabilities"]["bounding"])
    assert int(st["CapEff"], 16) == want and st["NoNewPrivs"] == "1"
    assert lines[4:6] == ["777", "0077"]  # rlimits and umask: the container's
    assert lines[6:9] == ["0", "0", "0"]  # user: the file's (absent: root), not the config's


def test_empty_capabilities_mean_none(bundle, container, tmp_path):
    doc = {"args": ["grep", "^CapBnd", "/proc/self/status"], "cwd": "/",
           "env": ["PATH=/bin:/usr/bin"], "capabilities": {}}
    res = ex(bundle, "-p", _write(tmp_path, doc), container)
    assert res.stdout == "CapBnd:\t0000000000000000\n", res.stderr


def test_flags_and_args_apply_on_top_of_the_file(bundle, container, tmp_path):
    """runc ignores them with -p; onggi applies them (never silently dropped)."""
    doc = {"args": ["false"], "cwd": "/", "env": ["PATH=/bin:/usr/bin", "A=file"]}
    res = ex(bundle, "-p", _write(tmp_path, doc), "-e", "A=flag", "-u", "1000", "--cwd", "/tmp",
             container, "sh", "-c", 'echo "$A $(id -u) $(pwd)"')
    assert res.stdout == "flag 1000 /tmp\n", res.stderr


def test_detached_from_the_file_as_engines_call_it(bundle, container, tmp_path):
    doc = {"args": ["sleep", "100"], "cwd": "/", "env": ["PATH=/bin"]}
    res = exec_from_subreaper(bundle, "--process", _write(tmp_path, doc), "--detach", container,
                              pid_file=tmp_path / "exec_pid")
    assert res["rc"] == 0, res["err"]
    assert res["ppid"] == res["me"]


@pytest.mark.parametrize(("doc", "words"), [
    ({"cwd": "/"}, "process.args: must name the program to run"),
    ({"args": ["true"]}, "process.cwd: is required"),
    ({"args": ["true"], "cwd": "rel"}, "process.cwd: 'rel' must be an absolute path"),
    ({"args": "true", "cwd": "/"}, "process.args: must be of type array"),
    ({"args": ["true"], "cwd": "/", "user": {"uid": -1}}, "process.user.uid"),
    ({"args": ["true"], "cwd": "/", "rlimits": [{"type": "RLIMIT_BOGUS", "soft": 1,
                                                  "hard": 1}]},
     "process.rlimits[0].type: unknown rlimit"),
    ({"args": ["true"], "cwd": "/", "capabilities": {"bounding": ["CAP_NOPE"]}},
     "process.capabilities.bounding: unknown capability 'CAP_NOPE'"),
    ({"args": ["true"], "cwd": "/", "env": ["NOEQUALS"]},
     "process.env[0]: invalid environment variable"),
    ([1, 2], "process: must be of type object"),
])
def test_bad_process_files(bundle, container, tmp_path, doc, words):
    path = _write(tmp_path, doc)
    res = ex(bundle, "-p", path, container)
    assert res.returncode == 255 and f"--process {path}: " in res.stderr, res.stderr
    assert words in res.stderr and res.stderr.count("\n") == 1


def test_unreadable_process_files(bundle, container, tmp_path):
    res = ex(bundle, "-p", str(tmp_path / "nope.json"), container)
    assert res.returncode == 255 and "no such file or directory" in res.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    res = ex(bundle, "-p", str(bad), container)
    assert res.returncode == 255 and "invalid JSON" in res.stderr
    assert not os.listdir(bundle.root / container) == []
