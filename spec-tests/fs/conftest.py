"""Fixtures for the filesystem tests.

`fsb` runs each test twice: through the fork-based harness (rootfs alone, as the init calls
it) and through a real `onggi run` of the bundle (the top-level `bundle` fixture). `hfsb` is
the harness alone, for tests that reach inside (monkeypatching the plan, async starts).
Both give the same interface: .path, .rootfs, .config, .mount(), .sh() -> Result, .error().
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import fs_harness
import pytest
from fs_harness import FsBundle


class OnggiBundle(FsBundle):
    """The same tests through a real `onggi run` (spec-tests/conftest.py's Bundle)."""

    runner = "onggi"

    def __init__(self, bundle) -> None:
        self.b = bundle
        self.path = bundle.path
        self.rootfs = bundle.rootfs
        self.config = bundle.config
        # like the harness: root writable, so tests can make files; the rest is onggi's
        self.config["root"]["readonly"] = False

    def run(self, argv: list[str], *, no_pivot: bool = False, userns=None,
            timeout: float = 30, **kw) -> fs_harness.Result:
        extra = ["--no-pivot"] if no_pivot else []
        res = self.b.run(list(argv), *extra, timeout=timeout)
        return fs_harness.Result(res.returncode, res.stdout, res.stderr)

    def start(self, script: str, **kw):
        raise NotImplementedError("use hfsb for async starts")


def _leak_check(tmp_path: Path) -> None:
    leaked = [m for m in fs_harness.host_mounts() if str(tmp_path) in m]
    assert not leaked, leaked


@pytest.fixture
def hfsb(tmp_path, busybox_rootfs):
    if os.geteuid() != 0:
        pytest.skip("mount namespaces need root")
    path = tmp_path / "bundle"
    path.mkdir()
    shutil.copytree(busybox_rootfs, path / "rootfs", symlinks=True)
    yield FsBundle(path)
    # nothing a test did may stay on the host's mount table
    _leak_check(tmp_path)


@pytest.fixture(params=["harness", "onggi"])
def fsb(request, tmp_path):
    if request.param == "harness":
        yield request.getfixturevalue("hfsb")
        return
    bundle = request.getfixturevalue("bundle")
    yield OnggiBundle(bundle)
    bundle.cleanup()
    _leak_check(tmp_path)
