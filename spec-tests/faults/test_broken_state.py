"""A state.json cut short by a crash (or otherwise broken): each verb says so in one line,
and `delete --force` still kills what the container left and frees the id. runc 1.1.5
leaves the init alive and the id blocked in the same test (the issue's case 2)."""

from __future__ import annotations

import json
import os

import pytest
from leakcheck import state_dirs

from runtime.state import proc_start_time

CUT = '{"id": "%s", "pid": '  # the truncated file: "unexpected end of JSON input"


def _start_time(pid: int) -> int:
    start = proc_start_time(pid)
    assert start is not None, f"{pid} is gone"
    return start


def _alive(pid: int, start: int) -> bool:
    return proc_start_time(pid) == start


def _one_line(res, *words: str) -> str:
    lines = res.stdout.splitlines()
    assert res.returncode != 0 and len(lines) == 1 and lines[0].startswith("onggi: "), res.stdout
    assert "Traceback" not in res.stdout
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _delete_force_frees_all(rig, cid: str, pid: int, start: int, probe, before) -> None:
    """delete --force kills the init, leaves nothing behind and frees the id."""
    res = rig.onggi("delete", "--force", cid)
    assert res.returncode == 0, res.stdout
    assert not _alive(pid, start), "delete --force left the init alive"
    assert not probe.leaks(before) and not state_dirs(rig.root, [cid])
    assert rig.create(cid).returncode == 0, "the id is not free again"
    assert rig.onggi("delete", "--force", cid).returncode == 0


BREAKS = {
    "truncated": lambda cid: (CUT % cid).encode(),
    "empty": lambda cid: b"",
    "garbage": lambda cid: bytes(range(256)),
    "nul bytes": lambda cid: b"\0" * 64,
    "wrong types": lambda cid: json.dumps({"id": cid, "pid": "12", "start_time": [],
                                           "bundle": 1, "rootfs": None, "created": {}}).encode(),
    "another id": lambda cid: json.dumps({"id": "someone-else", "pid": 1, "start_time": 1,
                                          "bundle": "/", "rootfs": "/", "created": ""}).encode(),
    "not an object": lambda cid: b"[1, 2, 3]",
}


CASES = [(how, False) for how in BREAKS] + [("truncated", True)]


@pytest.mark.parametrize(("how", "started"), CASES,
                         ids=[f"{h}-{'running' if s else 'created'}" for h, s in CASES])
def test_verbs_on_a_broken_state_then_delete_force(rig, how, started):
    cid, tag = rig.new(["sleep", "30"])
    probe = rig.probe(cid, tag)
    before = probe.snapshot()
    assert rig.create(cid).returncode == 0
    if started:
        assert rig.onggi("start", cid).returncode == 0
    pid = json.loads(rig.onggi("state", cid).stdout)["pid"]
    start = _start_time(pid)
    (rig.root / cid / "state.json").write_bytes(BREAKS[how](cid))

    _one_line(rig.onggi("state", cid), cid, "corrupt state", "delete --force")
    for verb in (["start", cid], ["kill", cid, "KILL"], ["delete", cid]):
        _one_line(rig.onggi(*verb), "corrupt state")
    assert _alive(pid, start)  # none of those touched it
    res = rig.onggi("list")
    assert res.returncode == 0 and cid in res.stdout  # on stderr (merged here), not listed:
    assert f"onggi: container {cid}: " in res.stdout and "corrupt state" in res.stdout
    res = rig.onggi("list", "--format", "json")
    assert cid not in json.dumps(json.loads(res.stdout.splitlines()[-1]))

    _delete_force_frees_all(rig, cid, pid, start, probe, before)


def test_state_json_gone_the_record_still_finds_the_init(rig):
    """A create killed between its record and state.json leaves exactly this."""
    cid, tag = rig.new(["sleep", "30"])
    assert rig.create(cid).returncode == 0
    pid = json.loads(rig.onggi("state", cid).stdout)["pid"]
    start = _start_time(pid)
    (rig.root / cid / "state.json").unlink()
    assert "does not exist" in rig.onggi("state", cid).stdout
    res = rig.onggi("list")
    assert f"container {cid}: its create did not finish" in res.stdout
    assert rig.onggi("delete", "--force", cid).returncode == 0
    assert not _alive(pid, start) and not state_dirs(rig.root, [cid])


def test_no_record_either_the_init_is_found_by_its_open_state_dir(rig):
    """state.json and init.json both lost: a created init still holds the state dir open."""
    cid, tag = rig.new(["sleep", "30"])
    assert rig.create(cid).returncode == 0
    pid = json.loads(rig.onggi("state", cid).stdout)["pid"]
    start = _start_time(pid)
    (rig.root / cid / "state.json").write_bytes((CUT % cid).encode())
    (rig.root / cid / "init.json").write_bytes(b"{")
    assert rig.onggi("delete", "--force", cid).returncode == 0
    assert not _alive(pid, start) and not state_dirs(rig.root, [cid])


def test_a_recycled_pid_in_the_record_is_not_killed(rig, tmp_path):
    """The record names a pid that now belongs to someone else (another start time)."""
    import subprocess

    bystander = subprocess.Popen(["sleep", "30"])
    try:
        cid, _ = rig.new(["sleep", "30"])
        os.makedirs(rig.root / cid)
        (rig.root / cid / "init.json").write_text(json.dumps(
            {"stage1": [bystander.pid, 1], "pid": bystander.pid, "start_time": 1,
             "pid_ns": False, "cgroup_driver": "", "cgroup_paths": {}}))
        assert rig.onggi("delete", "--force", cid).returncode == 0
        assert bystander.poll() is None, "delete --force killed a process that is not ours"
        assert not state_dirs(rig.root, [cid])
    finally:
        bystander.kill()
        bystander.wait()


# state.json fields that parse as JSON but have a type or shape onggi never writes (the
# review's reproductions: each once gave a traceback or kept the id taken for good)
SHAPES = {"cgroup_data": [], "host_mounts": {"x": 1}, "cgroup_driver": "/",
          "net_devices": [1], "intel_rdt": {"path": 1}, "no_new_keyring": "yes"}


@pytest.mark.parametrize("field", SHAPES)
def test_a_field_of_the_wrong_shape_is_corrupt_state_and_delete_force_frees_the_id(rig, field):
    cid, tag = rig.new(["sleep", "30"])
    probe = rig.probe(cid, tag)
    before = probe.snapshot()
    assert rig.create(cid).returncode == 0
    pid = json.loads(rig.onggi("state", cid).stdout)["pid"]
    start = _start_time(pid)
    path = rig.root / cid / "state.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), field: SHAPES[field]}))
    for verb in (["state", cid], ["update", "--pids-limit", "5", cid], ["kill", cid, "KILL"],
                 ["delete", cid]):
        _one_line(rig.onggi(*verb), "corrupt state", field)
    assert _alive(pid, start)
    _delete_force_frees_all(rig, cid, pid, start, probe, before)


def test_delete_force_frees_the_id_when_a_host_resource_cannot_be_released(rig, tmp_path):
    """A resctrl group that cannot be removed (here: a plain directory that is not empty):
    delete fails and keeps the id; delete --force warns, and frees the id."""
    group = tmp_path / "clos"
    group.mkdir()
    (group / "tasks").write_text("")
    cid, tag = rig.new(["true"])
    assert rig.create(cid).returncode == 0
    assert rig.onggi("start", cid).returncode == 0
    assert rig.wait_status(cid, "stopped") == "stopped"
    path = rig.root / cid / "state.json"
    path.write_text(json.dumps({**json.loads(path.read_text()),
                                "intel_rdt": {"path": str(group), "created": True}}))
    reason = f"linux.intelRdt: removing {group}: directory not empty"
    assert _one_line(rig.onggi("delete", cid)) == f"onggi: {reason}"
    assert state_dirs(rig.root, [cid])
    res = rig.onggi("delete", "--force", cid)
    assert (res.returncode, res.stdout) == (
        0, f"onggi: warning: container {cid}: {reason}; freeing its id anyway\n")
    assert not state_dirs(rig.root, [cid]) and group.is_dir()
