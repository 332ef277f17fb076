"""The CLI surface engines rely on, and `spec`/`features`/`validate` against the schemas."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from harness import HOT_CORE, REPO, launcher_imports, need_shared, onggi

from runtime import schema


def test_version():
    res = onggi("--version")
    assert res.returncode == 0
    lines = [ln for ln in res.stdout.splitlines() if not ln.startswith("commit: ")]
    assert lines[:2] == ["onggi version 0.1.0", "spec: 1.3.0"]


def test_both_option_forms(tmp_path):
    for argv in (["--root", str(tmp_path), "list"], [f"--root={tmp_path}", "list"],
                 ["--root", str(tmp_path), "--log-format=json", "list", "--format=json"]):
        res = onggi(*argv)
        assert res.returncode == 0, res.stderr


def test_bundled_schemas_equal_the_reference():
    ref = need_shared()
    for path in sorted((REPO / "runtime" / "schemas").glob("*.json")):
        assert path.read_bytes() == (ref / path.name).read_bytes(), path.name


@pytest.mark.parametrize("rootless", [False, True])
def test_spec_writes_a_valid_config(tmp_path, rootless):
    need_shared()
    res = onggi("spec", "--bundle", str(tmp_path), *(["--rootless"] if rootless else []))
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "config.json").read_text())
    assert schema.check_with_jsonschema(doc) == []
    assert doc["ociVersion"] == "1.3.0" and doc["process"]["args"] == ["sh"]
    ns = {n["type"] for n in doc["linux"]["namespaces"]}
    assert ("user" in ns) == rootless and ("network" not in ns) == rootless
    again = onggi("spec", "--bundle", str(tmp_path))
    assert again.returncode != 0 and "file exists" in again.stderr


def test_features_validate():
    need_shared()
    res = onggi("features")
    doc = json.loads(res.stdout)
    assert schema.check_with_jsonschema(doc, "features-schema.json") == []
    assert "rbind" in doc["mountOptions"] and "CAP_SYS_ADMIN" in doc["linux"]["capabilities"]
    assert set(doc["linux"]["namespaces"]) == {"cgroup", "ipc", "mount", "network", "pid",
                                               "time", "user", "uts"}


def test_validate_agrees_with_strict(tmp_path):
    (tmp_path / "rootfs").mkdir()
    onggi("spec", "--bundle", str(tmp_path), check=True)
    assert onggi("validate", "-b", str(tmp_path)).returncode == 0
    doc = json.loads((tmp_path / "config.json").read_text())
    doc["process"]["user"]["uid"] = -1
    (tmp_path / "config.json").write_text(json.dumps(doc))
    fast = onggi("validate", "-b", str(tmp_path))
    strict = onggi("validate", "--strict", "-b", str(tmp_path))
    assert fast.returncode != 0 and strict.returncode != 0
    assert "process.user.uid" in fast.stderr and "process.user.uid" in strict.stderr


HEAVY = ("jsonschema", "pyroute2", "pyseccomp", "prctl", "_prctl", "asyncio", "zstandard",
         "jeepney")


@pytest.mark.parametrize("verb", [["state", "x"], ["kill", "x", "9"], ["delete", "--force", "x"],
                                  ["start", "x"]])
def test_hot_verbs_import_only_the_core(tmp_path, verb):
    """Through the installed entry script (python -S), as engines call onggi: nothing but
    HOT_CORE (no argparse, json, re, enum, typing...). delete --force of an unknown id
    looks for what a killed create left (runtime.reclaim)."""
    mods, res = launcher_imports(tmp_path, "--root", str(tmp_path), *verb)
    assert res.stderr == "" if verb[0] == "delete" else ("does not exist" in res.stderr)
    allowed = HOT_CORE | ({"runtime.reclaim"} if verb[0] == "delete" else set())
    assert mods - allowed == set()


def test_list_imports_nothing_heavy(tmp_path):
    mods, res = launcher_imports(tmp_path, "--root", str(tmp_path), "list")
    assert res.returncode == 0 and not mods & set(HEAVY), mods & set(HEAVY)


def test_launcher_script_runs_onggi(tmp_path):
    """The Makefile's faster entry script (python -S) reaches the same CLI."""
    dest = tmp_path / "onggi"
    subprocess.run([sys.executable, "-m", "runtime.launcher", str(dest)], check=True, cwd=REPO)
    assert dest.read_text().startswith(f"#!{sys.executable} -S\n")
    res = subprocess.run([str(dest), "--root", str(tmp_path), "state", "nope"],
                         capture_output=True, text=True)
    assert res.returncode == 1 and res.stderr == "onggi: container nope does not exist\n"
    res = subprocess.run([str(dest), "features"], capture_output=True, text=True)
    assert res.returncode == 0 and json.loads(res.stdout)["ociVersionMax"] == "1.3.0"
