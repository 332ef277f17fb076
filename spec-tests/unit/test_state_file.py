"""state.json across onggi versions, and the config snapshot beside it."""

from __future__ import annotations

import json
import re

import pytest

from runtime import state
from runtime.errors import OnggiError

OLD = {"id": "c1", "pid": 1, "start_time": 5, "bundle": "/b", "rootfs": "/b/rootfs",
       "created": "2026-01-01T00:00:00Z", "owner": "", "annotations": {}, "pid_ns": True,
       "hooks": {}}


def _write(tmp_path, data: str) -> None:
    (tmp_path / "c1").mkdir()
    (tmp_path / "c1" / state.STATE_FILE).write_text(data)


def test_a_state_file_from_before_cgroups_loads_with_defaults(tmp_path):
    _write(tmp_path, json.dumps(OLD))
    _, st = state.load(str(tmp_path), "c1")
    assert (st.id, st.cgroup_paths, st.namespaces, st.cgroup_driver) == ("c1", {}, {}, "")


def test_fields_of_a_newer_onggi_are_dropped(tmp_path):
    _write(tmp_path, json.dumps({**OLD, "future_field": [1, 2]}))
    assert state.load(str(tmp_path), "c1")[1].pid == 1


@pytest.mark.parametrize("data", ['{"id": "c1", "pid": ', '[1, 2]', '{"id": "c1"}', ""])
def test_a_broken_state_file_is_one_clear_error(tmp_path, data):
    _write(tmp_path, data)
    with pytest.raises(OnggiError, match="state.json: corrupt state"):
        state.load(str(tmp_path), "c1")


def test_save_then_load_round_trips_with_the_config_snapshot(tmp_path):
    path = tmp_path / "c1"
    path.mkdir()
    st = state.State(**OLD, cgroup_paths={"memory": "/sys/fs/cgroup/memory/x"},
                     namespaces={"pid": "/proc/1/ns/pid"})
    state.save(str(path), st)
    state.save_config(str(path), b'{"ociVersion": "1.3.0"}')
    assert state.load(str(tmp_path), "c1")[1] == st
    assert state.load_config(str(path)) == b'{"ociVersion": "1.3.0"}'
    assert sorted(p.name for p in path.iterdir()) == [state.CONFIG_FILE, state.STATE_FILE]


def test_the_second_record_round_trips_and_a_broken_one_reads_as_none(tmp_path):
    rec = {"stage1": [10, 20], "pid": 11, "start_time": 21, "pid_ns": True,
           "cgroup_driver": "fs", "cgroup_paths": {"memory": "/sys/fs/cgroup/memory/c1"}}
    state.save_record(str(tmp_path), rec)
    init, stage1 = state.load_record(str(tmp_path), "c1")
    assert (init.pid, init.start_time, init.pid_ns, init.cgroup_paths) == \
        (11, 21, True, rec["cgroup_paths"])
    assert (stage1.pid, stage1.start_time) == (10, 20)
    for bad in ('{"pid": ', '{"pid": "11"}', "[]", ""):
        (tmp_path / state.RECORD_FILE).write_text(bad)
        assert state.load_record(str(tmp_path), "c1") is None


def test_a_state_of_another_id_or_with_wrong_types_is_broken(tmp_path):
    _write(tmp_path, json.dumps({**OLD, "id": "c2"}))
    with pytest.raises(OnggiError, match="it is the state of 'c2'"):
        state.load(str(tmp_path), "c1")
    (tmp_path / "c1" / state.STATE_FILE).write_text(json.dumps({**OLD, "pid": True}))
    with pytest.raises(OnggiError, match="pid: want int, got bool"):
        state.load(str(tmp_path), "c1")


def test_remove_dir_takes_state_json_and_the_record_last(tmp_path, monkeypatch):
    """A delete killed halfway leaves a dir the next delete --force still understands."""
    import os

    path = tmp_path / "c1"
    path.mkdir()
    for name in (state.STATE_FILE, state.RECORD_FILE, state.CONFIG_FILE, state.EXEC_FIFO):
        (path / name).write_text("x")
    order = []
    real = os.unlink
    monkeypatch.setattr(os, "unlink", lambda p: (order.append(os.path.basename(p)), real(p)))
    state.remove_dir(str(path))
    assert order[-2:] == [state.STATE_FILE, state.RECORD_FILE] and not path.exists()


def _wrong(value: object) -> object:
    """A value of another JSON type."""
    return "x" if not isinstance(value, str) else 1


@pytest.mark.parametrize("field", state.State._fields)
def test_every_field_of_a_wrong_type_is_corrupt_state(tmp_path, field):
    """Each field State declares is checked (the checks come from its annotations)."""
    good = state.State(**OLD).to_dict()
    _write(tmp_path, json.dumps({**good, field: _wrong(good[field])}))
    with pytest.raises(state.Broken, match=f"corrupt state: {field}: want "):
        state.load(str(tmp_path), "c1")


PIDS = {"pids": "/sys/fs/cgroup/pids/c1"}
SHAPES = {
    "cgroup_driver": ("/", "cgroup_driver: unknown driver '/'"),
    # delete kills what runs in these dirs and removes them: never anything else
    "cgroup_paths": ({"pids": "../../../.."}, "cgroup_paths.pids: '../../../..' is not a "
                     "directory below /sys/fs/cgroup"),
    "cgroup_paths ": ({"pids": "/"}, "cgroup_paths.pids: '/' is not a directory below"),
    "cgroup_paths  ": ({"memory": "/sys/fs/cgroup/memory"},
                       "cgroup_paths.memory: /sys/fs/cgroup/memory is the root of a cgroup "
                       "hierarchy"),
    "cgroup_paths   ": ({"": "/sys/fs/cgroup/unified"}, "cgroup_paths.v2: /sys/fs/cgroup/"
                        "unified is the root"),
    "cgroup_paths    ": ({"pids": "/sys/fs/cgroup/pids/c1/../.."}, "cgroup_paths.pids: "),
    "cgroup_data   ": ({"parents": ["/"]}, "cgroup_data.parents: '/' is not a directory"),
    "cgroup_data": ({"parents": "/sys/fs/cgroup/pids/x"}, "cgroup_data.parents: want list"),
    "cgroup_data ": ({"parents": [1]}, "cgroup_data.parents: each must be a string"),
    "cgroup_data  ": ({"resources": []}, "cgroup_data.resources: want dict"),
    "host_mounts": ({"x": 1}, "host_mounts: path is missing"),
    "host_mounts ": ({"path": "/x", "mnt_id": "7"}, "host_mounts.mnt_id: want int"),
    "net_devices": ([1], "net_devices[0]: want dict"),
    "net_devices ": ([{"host": "eth9"}], "net_devices[0]: name is missing"),
    "intel_rdt": ({"path": 1}, "intel_rdt.path: want str"),
    "intel_rdt ": ({"path": "/x", "created": "yes"}, "intel_rdt.created: want bool"),
}


@pytest.mark.parametrize("key", SHAPES)
def test_nested_shapes_cgroup_dirs_and_unknown_drivers_are_corrupt_state(tmp_path, key):
    value, words = SHAPES[key]
    _write(tmp_path, json.dumps({**OLD, "cgroup_paths": PIDS, key.strip(): value}))
    with pytest.raises(state.Broken, match=re.escape(f"corrupt state: {words}")):
        state.load(str(tmp_path), "c1")
    (tmp_path / "c1" / state.RECORD_FILE).write_text(
        json.dumps({"pid": 1, "cgroup_paths": PIDS, key.strip(): value}))
    assert state.load_record(str(tmp_path / "c1"), "c1") is None


def test_the_shapes_onggi_writes_load(tmp_path):
    doc = {**OLD, "cgroup_driver": "fs", "cgroup_paths": {"pids": "/sys/fs/cgroup/pids/c1"},
           "cgroup_data": {"parents": ["/sys/fs/cgroup/pids/p"], "resources": {}},
           "host_mounts": {"path": "/b/rootfs", "mnt_id": 99},
           "net_devices": [{"host": "d0", "name": "eth1", "kind": "dummy", "address": ""}],
           "intel_rdt": {"path": "/sys/fs/resctrl/c1", "created": True,
                         "mon": "/sys/fs/resctrl/c1/mon_groups/c1"}, "no_new_keyring": True}
    _write(tmp_path, json.dumps(doc))
    assert state.load(str(tmp_path), "c1")[1].to_dict() == {"namespaces": {}, **doc}
