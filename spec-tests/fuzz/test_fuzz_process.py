"""Fuzz: process.json files for `exec --process`, mutated from valid ones. Each gets a
one-line error or a process that runs; never a traceback or a hang, nothing left behind.

The in-process part goes through execproc.build_process, the CLI part through real execs.

    ONGGI_FUZZ_PROCESSES=5000 ONGGI_FUZZ_EXECS=100 .venv/bin/python -m pytest -q \\
        spec-tests/fuzz/test_fuzz_process.py
"""

from __future__ import annotations

import json
import os
import random
import traceback
from collections import Counter

from fuzzgen import Mutator, dumps
from leakcheck import Probe, state_dirs

PROCESSES = int(os.environ.get("ONGGI_FUZZ_PROCESSES", "2000"))
EXECS = int(os.environ.get("ONGGI_FUZZ_EXECS", "20"))
SEED = int(os.environ.get("ONGGI_FUZZ_SEED", str(random.randrange(1 << 30))))

VALID = {"terminal": False, "user": {"uid": 0, "gid": 0, "additionalGids": [1]},
         "args": ["/bin/true"], "env": ["PATH=/bin:/usr/bin", "A=b"], "cwd": "/",
         "capabilities": {k: ["CAP_KILL"] for k in ("bounding", "effective", "permitted")},
         "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
         "noNewPrivileges": True, "oomScoreAdj": 0}


def test_mutated_process_files_in_process(tmp_path):
    from runtime import execproc as ex
    from runtime.errors import OnggiError

    config = {"process": {**VALID, "args": ["sh"]}}
    gen = Mutator(SEED)
    seen: Counter = Counter()
    bugs = []
    path = tmp_path / "process.json"
    for i in range(PROCESSES):
        data = dumps(gen.mutate(VALID)) if gen.rng.random() < 0.8 else gen.damage(dumps(VALID))
        path.write_bytes(data)
        try:
            ex.build_process(ex.ExecArgs(id="c1", process=str(path)), config)
            seen["valid"] += 1
        except OnggiError as e:
            seen["refused"] += 1
            if not str(e).strip():
                bugs.append(f"#{i}: an empty message")
        except Exception:  # noqa: BLE001 - a traceback the user would see
            bugs.append(f"#{i}: {traceback.format_exc(limit=-3)}\n{data[:300]!r}")
    print(f"process.json fuzz: {PROCESSES} (seed {SEED}): {dict(seen)}, {len(bugs)} bugs")
    assert not bugs, f"seed {SEED}: {len(bugs)} bugs, first:\n{bugs[0]}"


def test_a_sample_through_real_execs(bundle, tmp_path):
    cid = bundle.create(None, args=["sleep", "60"])
    assert bundle.onggi("start", cid).returncode == 0
    gen = Mutator(SEED + 1)
    probe = Probe(paths=[bundle.path, bundle.root, tmp_path])
    before = probe.snapshot()
    seen: Counter = Counter()
    bad = []
    path = tmp_path / "process.json"
    for i in range(EXECS):
        doc = gen.mutate(VALID, edits=1)
        path.write_bytes(dumps(doc))
        res = bundle.onggi("exec", "--process", str(path), cid, timeout=30)
        seen["ran" if res.returncode == 0 else "refused"] += 1
        if res.returncode != 0:
            lines = res.stderr.splitlines()
            if len(lines) != 1 or not lines[0].startswith("onggi: ") or \
                    "internal error" in res.stderr:
                bad.append(f"#{i}: {res.stderr!r} for {json.dumps(doc)[:300]}")
    assert bundle.onggi("delete", "--force", cid).returncode == 0
    bad += probe.leaks(before) + state_dirs(bundle.root, [cid])
    print(f"process.json fuzz, real execs: {EXECS} (seed {SEED + 1}): {dict(seen)}, "
          f"{len(bad)} bad")
    assert not bad, bad[:3]
