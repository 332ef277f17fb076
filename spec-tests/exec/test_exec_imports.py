"""exec is on the engines' path (conmon and the shim call it for every exec): no argparse,
nothing heavy, and pyseccomp only for a container that has a filter."""

from __future__ import annotations

import subprocess
import sys

import pytest
from exec_harness import start
from harness import ONGGI

NEVER = {"argparse", "jsonschema", "pyroute2", "asyncio", "zstandard", "runtime.init",
         "runtime.linux.mounts", "runtime.hooks", "runtime.foreground", "runtime.linux.tty",
         # create's: the config was checked when the container was made
         "runtime.launch", "runtime.container", "runtime.spec.load", "runtime.fields"}


def _imports(bundle, *argv: str) -> set[str]:
    if not ONGGI[0].endswith("/onggi"):
        pytest.skip("no .venv/bin/onggi launcher (make deps)")
    res = subprocess.run([sys.executable, "-S", "-X", "importtime", ONGGI[0], "--root",
                          str(bundle.root), "exec", *argv], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=30)
    assert res.returncode == 0, res.stderr
    return {line.split("|")[-1].strip() for line in res.stderr.splitlines()
            if line.startswith("import time:")}


def test_detached_exec_imports_nothing_heavy(bundle, tmp_path):
    cid = start(bundle)
    got = _imports(bundle, "-d", "--pid-file", str(tmp_path / "pid"), cid, "true")
    assert "runtime.execinit" in got  # the measurement itself worked
    assert not got & (NEVER | {"pyseccomp", "typing", "re"}), got & NEVER


def test_seccomp_only_with_a_filter(bundle, tmp_path):
    bundle.config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW"}
    cid = start(bundle)
    got = _imports(bundle, "-d", cid, "true")
    assert "pyseccomp" in got and not got & NEVER


def test_foreground_exec_takes_only_the_signal_relay(bundle):
    """A foreground exec waits and forwards signals (runtime.foreground) and loads nothing of
    `run`'s create/delete, nor typing (re, enum: ~3 ms)."""
    cid = start(bundle)
    got = _imports(bundle, cid, "true")
    assert "runtime.foreground" in got
    assert not got & (NEVER - {"runtime.foreground"} | {"pyseccomp", "typing", "re"}), got
