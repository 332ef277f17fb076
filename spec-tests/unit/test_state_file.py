"""state.json across onggi versions, and the config snapshot beside it."""

from __future__ import annotations

import json

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
