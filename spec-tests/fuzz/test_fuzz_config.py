"""Fuzz: config.json files mutated from valid ones. Each gets a one-line error or a working
container; never a traceback, an internal error or a hang, and nothing is left behind.

Most go through what `create` does before it forks, in this process (parse, schema, mount
plan, seccomp, namespace paths); a sample goes through a real `onggi create`.

    ONGGI_FUZZ_CONFIGS=20000 ONGGI_FUZZ_CREATES=300 ONGGI_FUZZ_SEED=1 \\
        .venv/bin/python -m pytest -q spec-tests/fuzz/test_fuzz_config.py
"""

from __future__ import annotations

import copy
import json
import os
import random
import time
import traceback
import uuid
from collections import Counter

import pytest
from fuzzgen import Mutator, dumps
from harness import onggi
from leakcheck import Probe, state_dirs

from runtime import spec, spec_default
from runtime.errors import OnggiError
from runtime.linux import mountplan, namespaces

CONFIGS = int(os.environ.get("ONGGI_FUZZ_CONFIGS", "3000"))
CREATES = int(os.environ.get("ONGGI_FUZZ_CREATES", "30"))
SEED = int(os.environ.get("ONGGI_FUZZ_SEED", str(random.randrange(1 << 30))))


def _bases(bundle) -> list[dict]:
    """Valid configs to start from (each is checked valid first)."""
    plain = spec_default.default_spec()
    plain["process"]["terminal"] = False
    plain["process"]["args"] = ["true"]
    del plain["linux"]["resources"]
    rootless = spec_default.default_spec(rootless=True)
    rootless["process"]["terminal"] = False
    rich = copy.deepcopy(plain)
    (bundle / "data").mkdir(exist_ok=True)
    rich["mounts"].append({"destination": "/data", "type": "bind",
                           "source": str(bundle / "data"), "options": ["rbind", "ro"]})
    rich["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                           "options": ["size=1m", "mode=1777"]})
    rich["hooks"] = {"prestart": [{"path": "/bin/true", "args": ["true"], "timeout": 5}]}
    rich["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    rich["linux"]["sysctl"] = {"net.ipv4.ip_forward": "0"}
    rich["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                                 "fileMode": 438, "uid": 0, "gid": 0}]
    rich["process"]["rlimits"].append({"type": "RLIMIT_NPROC", "hard": 100, "soft": 100})
    rich["process"]["oomScoreAdj"] = 100
    rich["annotations"] = {"org.example": "x"}
    rich["domainname"] = "example"
    minimal = {"ociVersion": "1.3.0", "root": {"path": "rootfs"},
               "process": {"cwd": "/", "args": ["true"], "user": {"uid": 0, "gid": 0}},
               "linux": {"namespaces": [{"type": "mount"}]}}
    return [plain, rootless, rich, minimal]


def precreate(data: bytes, bundle: str) -> str:
    """What `create` checks before it forks; "valid" or raises (OnggiError: a refusal)."""
    raw = spec.parse_json(data, os.path.join(bundle, "config.json"))
    cfg = spec.parse(raw, bundle)
    plan = mountplan.plan(cfg)
    mountplan.close_trees(plan.mounts)
    if cfg.linux.seccomp is not None:
        from runtime.linux import seccomp

        seccomp.prepare(cfg.linux.seccomp)
    for _, fd in namespaces.open_joins(cfg.linux):
        os.close(fd)
    return "valid"


def _safe_for_a_real_create(doc: object) -> bool:
    """Only configs whose mounts stay in a new mount namespace and that run no hook reach a
    real create (a config without one is refused today, but the sample must never depend
    on that)."""
    try:
        ns = doc["linux"]["namespaces"]
        return (not doc.get("hooks")) and any(
            isinstance(n, dict) and n.get("type") == "mount" and "path" not in n for n in ns)
    except (TypeError, KeyError, AttributeError):
        return False


@pytest.fixture(scope="module")
def fuzz_bundle(tmp_path_factory, busybox_rootfs):
    import shutil

    base = tmp_path_factory.mktemp("fuzz")
    path = base / "bundle"
    path.mkdir()
    shutil.copytree(busybox_rootfs, path / "rootfs", symlinks=True)
    return path


def test_mutated_configs_are_refused_in_one_line_or_accepted(fuzz_bundle):
    bases = _bases(fuzz_bundle)
    for b in bases:
        assert precreate(dumps(b), str(fuzz_bundle)) == "valid"
    gen = Mutator(SEED)
    seen: Counter = Counter()
    bugs, slowest = [], 0.0
    for i in range(CONFIGS):
        doc = gen.mutate(bases[i % len(bases)])
        data = dumps(doc)
        t0 = time.perf_counter()
        try:
            seen[precreate(data, str(fuzz_bundle))] += 1
        except OnggiError as e:
            seen["refused"] += 1
            if not str(e).strip():  # (a newline in it is fine: the CLI prints one line)
                bugs.append(f"#{i}: an empty message")
        except Exception:  # noqa: BLE001 - every other exception is a bug to report
            bugs.append(f"#{i}: {traceback.format_exc(limit=-3)}\n{data[:300]!r}")
        slowest = max(slowest, time.perf_counter() - t0)
    print(f"config fuzz: {CONFIGS} configs (seed {SEED}): {dict(seen)}, "
          f"slowest {slowest * 1000:.0f} ms, {len(bugs)} bugs")
    assert not bugs, f"seed {SEED}: {len(bugs)} bugs, first:\n{bugs[0]}"
    assert slowest < 5, "a config took seconds to check"


def test_a_sample_through_real_creates(fuzz_bundle, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("real containers need root")
    root = tmp_path / "state"
    bundle = str(fuzz_bundle)
    gen = Mutator(SEED + 1)
    bases = _bases(fuzz_bundle)[:2]  # no hooks, no host sysctl: see _safe_for_a_real_create
    probe = Probe(paths=[fuzz_bundle, root])
    before = probe.snapshot()
    seen: Counter = Counter()
    bad = []
    tried = 0
    while tried < CREATES:
        doc = gen.mutate(bases[tried % len(bases)], edits=1)
        if not _safe_for_a_real_create(doc):
            continue
        data = dumps(doc)
        try:
            expect = precreate(data, bundle)
        except Exception:  # noqa: BLE001 - refused before fork: half of those are enough
            expect = "refused"
            if seen["refused before fork"] > CREATES // 2:
                continue
        tried += 1
        (fuzz_bundle / "config.json").write_bytes(data)
        cid = f"z{tried}-{uuid.uuid4().hex[:8]}"  # unique: its cgroups are named after it
        with open(tmp_path / "out", "w+") as f:
            res = onggi("create", "-b", bundle, cid, root=root, capture_output=False,
                        stdout=f, stderr=f, stdin=None, timeout=30)
            f.seek(0)
            out = f.read()
        if res.returncode == 0:
            seen["created"] += 1
            st = onggi("state", cid, root=root)
            if st.returncode != 0 or json.loads(st.stdout)["status"] != "created":
                bad.append(f"{cid}: created but state says {st.stdout or st.stderr}")
        else:
            seen["refused before fork" if expect == "refused" else "refused by the child"] += 1
            lines = out.splitlines()
            if len(lines) != 1 or not lines[0].startswith("onggi: ") or \
                    "internal error" in out:
                bad.append(f"{cid}: {out!r} for {data[:400]!r}")
        if onggi("delete", "--force", cid, root=root).returncode != 0:
            bad.append(f"{cid}: delete --force failed")
        left = state_dirs(root)
        if left:
            bad.append(f"{cid}: left {left}")
    bad += probe.leaks(before)
    print(f"config fuzz, real creates: {tried} (seed {SEED + 1}): {dict(seen)}, {len(bad)} bad")
    assert not bad, bad[:3]
