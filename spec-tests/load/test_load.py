"""Load: many lifecycles (create, start, wait, delete) and `run`s at once, with /bin/true;
no failure and nothing left behind. conformance/load.py is the driver (a child subreaper,
so it can wait for the inits); it also times runc doing the same.

Counts: ONGGI_LOAD_LIFECYCLES (default 100; the issue's figure is 300), ONGGI_LOAD_RUNS
(default 100; the issue's: 200), ONGGI_LOAD_EXECS (default 50, once exec exists),
ONGGI_LOAD_PARALLEL (20). conformance/load.py runs the issue's figures against runc.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from harness import REPO
from leakcheck import TAG_VAR, Probe

LIFECYCLES = int(os.environ.get("ONGGI_LOAD_LIFECYCLES", "100"))
RUNS = int(os.environ.get("ONGGI_LOAD_RUNS", "100"))
EXECS = int(os.environ.get("ONGGI_LOAD_EXECS", "50"))
PARALLEL = int(os.environ.get("ONGGI_LOAD_PARALLEL", "20"))


@pytest.mark.parametrize(("kind", "count"), [("lifecycles", LIFECYCLES), ("runs", RUNS),
                                             ("execs", EXECS)])
def test_load_without_failures_or_leftovers(tmp_path, kind, count):
    if os.geteuid() != 0:
        pytest.skip("real containers need root")
    tag = uuid.uuid4().hex
    probe = Probe(paths=[tmp_path], tag=tag)
    before = probe.snapshot()
    counts = {"lifecycles": 0, "runs": 0, "execs": 0, kind: count}
    res = subprocess.run(
        [sys.executable, str(REPO / "conformance" / "load.py"), "--only", "onggi", "--json",
         "--rounds", "1", "--work", str(tmp_path), "--env", f"{TAG_VAR}={tag}",
         "--parallel", str(PARALLEL), *(f"--{k}={v}" for k, v in counts.items())],
        capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    batches = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(batches) == 1, res.stdout
    got = batches[0]
    assert got["failures"] == [], got["failures"][:5]
    assert got["left"] == []
    print(f"{kind}: {count} in {got['seconds']:.1f} s, {PARALLEL} at a time, 0 failures")
    assert probe.leaks(before) == []
