"""runtime.md's lifecycle with real containers: creating -> created -> running -> stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from harness import ONGGI, kill_by_record, need_shared, onggi

from runtime import schema
from runtime.state import proc_start_time


def _marker_bundle(bundle, tmp_path):
    """A bind-mounted host dir at /marker, so the host sees what the container did."""
    marker = tmp_path / "marker"
    marker.mkdir()
    bundle.config["mounts"].append(
        {"destination": "/marker", "type": "bind", "source": str(marker), "options": ["rbind"]}
    )
    return marker


def test_create_start_state_kill_delete(bundle, tmp_path):
    marker = _marker_bundle(bundle, tmp_path)
    pid_file = tmp_path / "init.pid"
    cid = bundle.create(
        None, "--pid-file", str(pid_file),
        args=["sh", "-c", "echo ran > /marker/ran; trap 'exit 0' TERM; while :; do sleep 0.05; done"],
    )
    st = bundle.state(cid)
    assert st["status"] == "created"
    assert st["id"] == cid and st["bundle"] == str(bundle.path)
    assert st["rootfs"] == str(bundle.rootfs)
    assert pid_file.read_text() == str(st["pid"])  # host pid, no trailing newline
    assert os.path.exists(f"/proc/{st['pid']}")
    time.sleep(0.3)
    assert not (marker / "ran").exists(), "the user process ran before start"

    assert bundle.onggi("start", cid).returncode == 0
    deadline = time.monotonic() + 5
    ran = marker / "ran"  # `echo ran > ran` creates the file, then writes: wait for both
    while not (ran.exists() and ran.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ran.read_text() == "ran\n"
    assert bundle.state(cid)["status"] == "running"

    again = bundle.onggi("start", cid)
    assert again.returncode != 0 and "running" in again.stderr

    refused = bundle.onggi("delete", cid)
    assert refused.returncode != 0 and "not stopped" in refused.stderr
    assert bundle.state(cid)["status"] == "running"

    assert bundle.onggi("kill", cid, "TERM").returncode == 0
    st = bundle.wait_stopped(cid)
    assert st["pid"] == 0
    assert bundle.onggi("start", cid).returncode != 0
    assert bundle.onggi("delete", cid).returncode == 0
    assert not (bundle.root / cid).exists()
    gone = bundle.onggi("state", cid)
    assert gone.returncode != 0 and f"container {cid} does not exist" in gone.stderr


def test_state_matches_schema(bundle):
    need_shared()  # the bundled schemas are checked to equal ../shared in test_cli
    cid = bundle.create(args=["sleep", "100"])
    for _ in ("created", "running"):
        assert schema.check_with_jsonschema(bundle.state(cid), "state-schema.json") == []
        bundle.onggi("start", cid)
    out = json.loads(bundle.onggi("state", cid).stdout)
    assert set(out) >= {"ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"}


# TERM, HUP, 2 (INT) and USR1 reach an init that is PID 1 of its pid namespace only through a
# handler: the kernel drops a signal PID 1 has no handler for.
@pytest.mark.parametrize("sig", ["KILL", "SIGKILL", "9", "TERM", "SIGHUP", "2", "USR1"])
def test_kill_created_container(bundle, sig):
    cid = bundle.create(args=["sh", "-c", "echo user-process-ran; sleep 100"])
    pid = bundle.state(cid)["pid"]
    assert bundle.onggi("kill", cid, sig).returncode == 0
    bundle.wait_stopped(cid)
    assert not os.path.exists(f"/proc/{pid}/exe") or _is_zombie(pid)
    assert bundle.output(cid) == ""  # the init ended before the user process ran
    assert bundle.onggi("start", cid).returncode != 0


def test_kill_created_container_without_pid_namespace(bundle):
    _drop_pid_namespace(bundle)
    cid = bundle.create(args=["sleep", "100"])
    assert bundle.onggi("kill", cid, "TERM").returncode == 0
    bundle.wait_stopped(cid)


def test_kill_signal_zero_only_checks(bundle):
    cid = bundle.create(args=["sleep", "100"])
    assert bundle.onggi("kill", cid, "0").returncode == 0
    assert bundle.state(cid)["status"] == "created"
    bundle.onggi("start", cid, check=True)
    assert bundle.onggi("kill", cid, "0").returncode == 0
    assert bundle.state(cid)["status"] == "running"


def _drop_pid_namespace(bundle) -> None:
    bundle.config["linux"]["namespaces"] = [
        n for n in bundle.config["linux"]["namespaces"] if n["type"] != "pid"
    ]


def _is_zombie(pid: int) -> bool:
    return proc_start_time(pid) is None  # gone counts too


def test_kill_default_signal_is_term_and_signal_reaches_process(bundle):
    cid = bundle.create(args=["sh", "-c", "trap 'echo got-usr1' USR1; "
                                          "trap 'echo got-term; exit 5' TERM; "
                                          "echo ready; while :; do sleep 0.05; done"])
    bundle.onggi("start", cid, check=True)
    _wait_for(lambda: "ready" in bundle.output(cid))
    assert bundle.onggi("kill", cid, "USR1").returncode == 0
    _wait_for(lambda: "got-usr1" in bundle.output(cid))
    assert bundle.onggi("kill", cid).returncode == 0  # TERM by default
    bundle.wait_stopped(cid)
    assert "got-term" in bundle.output(cid)


def test_kill_rejects_bad_signal_and_stopped_container(bundle):
    cid = bundle.create(args=["true"])
    bad = bundle.onggi("kill", cid, "NOPE")
    assert bad.returncode != 0 and bad.stderr == 'onggi: unknown signal "NOPE"\n'  # runc's
    bundle.onggi("start", cid, check=True)
    bundle.wait_stopped(cid)
    res = bundle.onggi("kill", cid, "TERM")
    assert res.returncode != 0 and "not running" in res.stderr


@pytest.mark.parametrize("pid_ns", [True, False])
def test_kill_all_reaches_every_process(bundle, pid_ns):
    # Without a pid namespace, the init's end does not take the others with it.
    if not pid_ns:
        _drop_pid_namespace(bundle)
    cid = bundle.create(args=["sh", "-c", "sleep 100 & sleep 100 & wait"])
    bundle.onggi("start", cid, check=True)
    _wait_for(lambda: len(json.loads(bundle.onggi("ps", "--format", "json", cid).stdout)) >= 3)
    pids = json.loads(bundle.onggi("ps", "--format", "json", cid).stdout)
    assert bundle.onggi("kill", "--all", cid, "KILL").returncode == 0
    _wait_for(lambda: all(_is_zombie(p) for p in pids))


def test_delete_created_needs_force(bundle):
    cid = bundle.create(args=["sleep", "100"])
    pid = bundle.state(cid)["pid"]
    res = bundle.onggi("delete", cid)
    assert res.returncode != 0 and "not stopped: created" in res.stderr
    assert bundle.onggi("delete", "--force", cid).returncode == 0
    assert _is_zombie(pid)
    assert not (bundle.root / cid).exists()


def test_delete_force_unknown_id_is_ok(bundle):
    assert bundle.onggi("delete", "--force", "never-was").returncode == 0
    res = bundle.onggi("delete", "never-was")
    assert res.returncode != 0 and "container never-was does not exist" in res.stderr


@pytest.mark.parametrize("cid", ["a/b", "..", ".", "x y", "../etc"])
def test_invalid_ids_are_rejected(bundle, cid):
    res = bundle.onggi("create", "-b", str(bundle.path), cid)
    assert res.returncode != 0 and "invalid container id" in res.stderr
    assert os.listdir(bundle.root) == []


def test_concurrent_creates_one_wins(bundle, tmp_path):
    bundle.write(["sleep", "100"])
    cid = bundle.new_id()
    cmd = ONGGI + ["--root", str(bundle.root), "create", "-b", str(bundle.path), cid]
    errs = [tmp_path / f"err{i}" for i in range(4)]  # files: the winner's init keeps its stdio
    procs = [subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=open(e, "w")) for e in errs]
    results = [(p.wait(timeout=30), e.read_text()) for p, e in zip(procs, errs, strict=True)]
    assert sum(rc == 0 for rc, _ in results) == 1, results
    assert all("already exists" in err for rc, err in results if rc != 0)
    assert bundle.state(cid)["status"] == "created"


def test_pid_reuse_is_not_mistaken_for_the_container(bundle):
    cid = bundle.create(args=["sleep", "100"])
    # state.json's pid now belongs to another process (outside the container's cgroups),
    # with another start time, as after the init died and its pid was handed out again
    bystander = subprocess.Popen(["sleep", "100"])
    try:
        path = bundle.root / cid / "state.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "pid": bystander.pid}))
        assert bundle.state(cid)["status"] == "stopped"
        # kill must not signal a process that is not the container's, even with --all
        # (which, as in runc, signals what is left in the container's cgroup and succeeds)
        res = bundle.onggi("kill", cid, "KILL")
        assert res.returncode != 0 and "not running" in res.stderr
        assert bundle.onggi("kill", "--all", cid, "KILL").returncode == 0
        time.sleep(0.05)
        assert bystander.poll() is None and not _is_zombie(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait()


def test_list_formats(bundle):
    a = bundle.create(args=["sleep", "100"])
    table = bundle.onggi("list").stdout.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert table[1].split()[:3] == [a, str(bundle.state(a)["pid"]), "created"]
    assert bundle.onggi("list", "-q").stdout == a + "\n"
    [entry] = json.loads(bundle.onggi("list", "--format", "json").stdout)
    assert entry["id"] == a and entry["status"] == "created"


def test_init_is_child_of_callers_subreaper(bundle, tmp_path):
    """No onggi process stays between the caller (a subreaper, like conmon) and the init."""
    bundle.write(["sleep", "100"])
    cid = bundle.new_id()
    script = f"""
import ctypes, json, os, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
subprocess.run({ONGGI!r} + ["--root", {str(bundle.root)!r}, "create", "-b", {str(bundle.path)!r},
               {cid!r}], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
pid = int(open({str(bundle.root / cid / 'state.json')!r}).read().split('"pid": ')[1].split(",")[0])
ppid = int([l for l in open(f"/proc/{{pid}}/status") if l.startswith("PPid:")][0].split()[1])
print(json.dumps({{"me": os.getpid(), "ppid": ppid}}))
os.kill(pid, 9); os.waitpid(pid, 0)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["ppid"] == res["me"]


def test_container_stdio_is_onggis_stdio(bundle):
    cid = bundle.create(args=["sh", "-c", "echo to-stdout; echo to-stderr >&2"])
    bundle.onggi("start", cid, check=True)
    bundle.wait_stopped(cid)
    assert bundle.output(cid) == "to-stdout\n"
    assert "to-stderr" in (bundle.path.parent / f"{cid}.err").read_text()


def _wait_for(pred, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


# ---------------------------------------------------------------- run


def test_run_exit_code(bundle):
    assert bundle.sh("exit 3").returncode == 3
    assert bundle.sh("echo hi").stdout == "hi\n"
    assert os.listdir(bundle.root) == []  # deleted afterwards


def test_run_exit_by_signal_is_128_plus_n(bundle):
    _drop_pid_namespace(bundle)
    assert bundle.sh("kill -KILL $$").returncode == 128 + 9


@pytest.mark.parametrize("sig", ["TERM", "INT", "HUP", "USR2"])
def test_run_forwards_signals_and_deletes(bundle, sig):
    bundle.write(["sh", "-c", f"trap 'exit 7' {sig}; echo ready; while :; do sleep 0.05; done"])
    cid = bundle.new_id()
    p = subprocess.Popen(ONGGI + ["--root", str(bundle.root), "run", "-b", str(bundle.path), cid],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "ready\n"
    p.send_signal(getattr(signal, "SIG" + sig))
    assert p.wait(timeout=10) == 7
    assert onggi("state", cid, root=bundle.root).returncode != 0


def test_run_detach(bundle):
    bundle.write(["sleep", "100"])
    cid = bundle.new_id()
    res = bundle.onggi("run", "-d", "-b", str(bundle.path), cid, stdin=subprocess.DEVNULL,
                       capture_output=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert res.returncode == 0
    assert bundle.state(cid)["status"] == "running"


def test_start_waits_for_nothing_when_init_died(bundle):
    cid = bundle.create(args=["sleep", "100"])
    os.kill(bundle.state(cid)["pid"], signal.SIGKILL)
    time.sleep(0.1)
    res = bundle.onggi("start", cid)
    assert res.returncode != 0 and "stopped" in res.stderr




def test_delete_force_cleans_up_after_a_killed_create(bundle):
    """A create killed before it wrote state.json leaves a dir; delete --force removes it."""
    half = bundle.new_id()  # unique: the cgroups of the create below are named after it
    (bundle.root / half).mkdir()
    (bundle.root / half / "exec.fifo").write_text("")
    assert bundle.onggi("state", half).returncode != 0
    assert bundle.onggi("delete", "--force", half).returncode == 0
    assert not (bundle.root / half).exists()
    bundle.create(half, args=["true"])  # the id is usable again


def test_the_teardowns_last_resort_kills_by_the_record(bundle):
    """harness.kill_by_record, for a teardown whose delete --force failed: the init that
    the records name dies and the container's cgroups go (the id's, so no one else's)."""
    cid = bundle.create(args=["sleep", "100"])
    pid = bundle.state(cid)["pid"]
    dirs = json.loads((bundle.root / cid / "state.json").read_text())["cgroup_paths"].values()
    assert dirs and all(os.path.isdir(d) for d in dirs)
    kill_by_record(bundle.root / cid)
    assert proc_start_time(pid) is None
    assert not any(os.path.isdir(d) for d in dirs)
