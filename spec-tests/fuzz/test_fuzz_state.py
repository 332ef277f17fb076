"""Fuzz: state.json and init.json damaged or mutated (cut short, wrong types, odd values).
Every verb answers in one line, never with a traceback; `delete --force` still kills the
container and frees its id.

    ONGGI_FUZZ_STATES=20000 ONGGI_FUZZ_STATE_CLI=200 ONGGI_FUZZ_SEED=1 \\
        .venv/bin/python -m pytest -q spec-tests/fuzz/test_fuzz_state.py
"""

from __future__ import annotations

import json
import os
import random
import traceback
from collections import Counter

import pytest
from fuzzgen import Mutator, dumps
from leakcheck import Probe, state_dirs

from runtime import state

STATES = int(os.environ.get("ONGGI_FUZZ_STATES", "3000"))
CLI = int(os.environ.get("ONGGI_FUZZ_STATE_CLI", "15"))
SEED = int(os.environ.get("ONGGI_FUZZ_SEED", str(random.randrange(1 << 30))))

VALID = {"id": "c1", "pid": 4242, "start_time": 99, "bundle": "/b", "rootfs": "/b/rootfs",
         "created": "2026-01-01T00:00:00.000000000Z", "owner": "", "annotations": {"a": "b"},
         "pid_ns": True, "hooks": {"poststop": [{"path": "/bin/true", "args": ["true"]}]},
         "cgroup_driver": "", "cgroup_paths": {}, "namespaces": {"pid": "/proc/4242/ns/pid"}}
RECORD = {"stage1": [4241, 98], "pid": 4242, "start_time": 99, "pid_ns": True,
          "cgroup_driver": "", "cgroup_paths": {}}


def _variant(gen: Mutator, doc: dict) -> bytes:
    return gen.damage(dumps(doc)) if gen.rng.random() < 0.4 else dumps(gen.mutate(doc))


def test_damaged_state_files_load_or_are_refused(tmp_path):
    """In this process: state.load gives a State or a one-line Broken error; the record
    gives its processes or None; a State that loads is usable by the verbs."""
    (tmp_path / "c1").mkdir()
    gen = Mutator(SEED)
    seen: Counter = Counter()
    bugs = []
    for i in range(STATES):
        data = _variant(gen, VALID)
        (tmp_path / "c1" / state.STATE_FILE).write_bytes(data)
        (tmp_path / "c1" / state.RECORD_FILE).write_bytes(_variant(gen, RECORD))
        try:
            try:
                _, st = state.load(str(tmp_path), "c1")
            except state.Broken as e:
                seen["broken"] += 1
                assert str(e).startswith("container c1: ") and "\n" not in str(e)
            else:
                seen["loads"] += 1
                state.status(str(tmp_path / "c1"), st)
                json.dumps(st.oci("created"))
                st.hooks.get("poststop")
            found = state.load_record(str(tmp_path / "c1"), "c1")
            seen["record " + ("lost" if found is None else "read")] += 1
            if found is not None:
                assert all(type(s.pid) is int and type(s.start_time) is int for s in found)
        except Exception:  # noqa: BLE001 - a traceback the user would see
            bugs.append(f"#{i}: {traceback.format_exc(limit=-2)}\n{data[:200]!r}")
    print(f"state fuzz: {STATES} state.json + init.json pairs (seed {SEED}): {dict(seen)}, "
          f"{len(bugs)} bugs")
    assert not bugs, f"seed {SEED}: {len(bugs)} bugs, first:\n{bugs[0]}"


def test_damaged_state_of_a_live_container_through_the_cli(bundle):
    """A real created container each time; its state.json then damaged or mutated."""
    gen = Mutator(SEED + 1)
    seen: Counter = Counter()
    bad = []
    probe = Probe(paths=[bundle.path, bundle.root])
    before = probe.snapshot()
    for _ in range(CLI):
        cid = bundle.create(None, args=["sleep", "30"])  # a unique id: its cgroups too
        pid = bundle.state(cid)["pid"]
        start = state.proc_start_time(pid)
        path = bundle.root / cid / state.STATE_FILE
        good = json.loads(path.read_text())
        data = _variant(gen, good)
        path.write_bytes(data)
        for verb in (["state", cid], ["list"], ["kill", cid, "0"]):
            res = bundle.onggi(*verb)
            if res.returncode != 0 or verb[0] == "list":
                lines = res.stderr.splitlines()
                if res.returncode and (len(lines) != 1 or not lines[0].startswith("onggi: ")) \
                        or "Traceback" in res.stderr or "internal error" in res.stderr:
                    bad.append(f"{' '.join(verb)}: {res.stderr!r} for {data[:200]!r}")
            seen[f"{verb[0]} {'ok' if res.returncode == 0 else 'refused'}"] += 1
        res = bundle.onggi("delete", "--force", cid)
        if res.returncode != 0:
            bad.append(f"delete --force: {res.stderr!r} for {data[:200]!r}")
        if state.proc_start_time(pid) == start:
            bad.append(f"delete --force left the init alive for {data[:200]!r}")
        if state_dirs(bundle.root, [cid]):
            bad.append(f"delete --force left the state dir for {data[:200]!r}")
    bad += probe.leaks(before)
    print(f"state fuzz, live containers: {CLI} (seed {SEED + 1}): {dict(seen)}, {len(bad)} bad")
    assert not bad, bad[:3]


@pytest.mark.parametrize("cut", [0, 1, 10, 25, -1])
def test_a_truncated_record_alone_does_not_stop_delete(bundle, cut):
    cid = bundle.create(None, args=["sleep", "30"])
    rec = bundle.root / cid / state.RECORD_FILE
    rec.write_bytes(rec.read_bytes()[:cut])
    pid = bundle.state(cid)["pid"]
    start = state.proc_start_time(pid)
    assert bundle.onggi("delete", "--force", cid).returncode == 0
    assert state.proc_start_time(pid) != start and not state_dirs(bundle.root, [cid])
