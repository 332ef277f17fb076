"""exec under load: many at once into one container, and execs racing the container's
exit. Each ends with the process's status or one line of error; nothing hangs, nothing
is left behind."""

from __future__ import annotations

import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from exec_harness import alive, ex, init_pid, start, wait_for

RACE_ERRORS = ("cannot exec in a stopped container", "unable to start container process",
               "does not exist")


def test_50_concurrent_execs(bundle):
    cid = start(bundle)
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(
            lambda i: ex(bundle, "-e", f"N={i}", cid, "sh", "-c", 'echo "$N $$"; sleep 0.2',
                         timeout=120), range(50)))
    bad = [(r.returncode, r.stderr) for r in results if r.returncode != 0]
    assert not bad, bad[:3]
    lines = [r.stdout.split() for r in results]
    assert sorted(int(n) for n, _ in lines) == list(range(50))
    assert len({pid for _, pid in lines}) == 50  # 50 processes, in the container's pid ns
    ps = json.loads(bundle.onggi("ps", "--format", "json", cid, check=True).stdout)
    assert ps == [init_pid(bundle, cid)]  # all gone again


def test_exec_racing_the_containers_exit(bundle):
    """The init is killed while execs are on their way, a little later each round, so
    they meet it at every step: before the status check, while joining, once running."""
    marker = f"race-{uuid.uuid4().hex[:6]}"
    outcomes: dict[str, int] = {}
    for rnd in range(8):
        cid = start(bundle)
        with ThreadPoolExecutor(6) as pool:
            futs = [pool.submit(ex, bundle, cid, "sh", "-c", f"echo ok; sleep 3 # {marker}",
                                timeout=30) for _ in range(6)]
            time.sleep(0.015 * rnd)
            bundle.onggi("kill", cid, "KILL", check=True)
            results = [f.result() for f in futs]
        for r in results:
            if r.returncode == 0:
                kind = "ran"
            elif r.returncode == 137:
                assert r.stdout in ("", "ok\n")
                kind = "killed with the container"
            else:
                assert r.returncode == 255, (r.returncode, r.stderr)
                assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
                assert any(w in r.stderr for w in RACE_ERRORS), r.stderr
                kind = r.stderr.split("exec failed: ")[1].split(":")[0].strip()
            outcomes[kind] = outcomes.get(kind, 0) + 1
        bundle.wait_stopped(cid)
        bundle.onggi("delete", cid, check=True)
    wait_for(lambda: not _with_marker(marker), 10)
    assert sum(outcomes.values()) == 48, outcomes


def _with_marker(marker: str) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if marker.encode() in (p / "cmdline").read_bytes() and alive(int(p.name)):
                    out.append(int(p.name))
            except OSError:
                pass
    return out


def test_exec_while_delete_force(bundle):
    """delete --force takes the lock execs share: an exec either got in before (and dies
    with the container) or finds it gone."""
    cid = start(bundle)
    marker = f"del-{uuid.uuid4().hex[:6]}"
    with ThreadPoolExecutor(8) as pool:
        futs = [pool.submit(ex, bundle, "-d", cid, "sh", "-c", f"sleep 30 # {marker}",
                            timeout=30) for _ in range(6)]
        time.sleep(0.05)
        futs.append(pool.submit(bundle.onggi, "delete", "--force", cid))
        results = [f.result() for f in futs]
    assert results[-1].returncode == 0, results[-1].stderr
    for r in results[:-1]:
        assert r.returncode in (0, 255), r.stderr
    wait_for(lambda: not _with_marker(marker), 10)


CHILD_STEPS = ("prepare", "join-namespaces", "cgroup", "process", "exec")


@pytest.mark.parametrize("step", [*CHILD_STEPS, "forked", "cgroup-joined"])
def test_killed_at_each_step_leaves_nothing(bundle, step):
    """ONGGI_FAULT kills onggi (or its child) at a step, as a shim's timeout would: the exec
    fails, no process of it is left, and the container goes on and takes new execs."""
    cid = start(bundle)
    marker = f"fault-{uuid.uuid4().hex[:6]}"
    res = ex(bundle, "-d", cid, "sh", "-c", f"sleep 30 # {marker}", env={
        **os.environ, "ONGGI_FAULT": f"exec:{step}"})
    if step in CHILD_STEPS:
        assert res.returncode == 255 and "unable to start container process" in res.stderr, (
            res.returncode, res.stderr)
    else:
        assert res.returncode == -9  # onggi itself was killed
    wait_for(lambda: not _with_marker(marker), 10)
    assert bundle.state(cid)["status"] == "running"
    assert ex(bundle, cid, "true").returncode == 0
