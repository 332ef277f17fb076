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

from runtime.errors import OnggiError


class FsBundle:
    """The harness runner: mountplan.plan, mounts.mount_all, pivot.pivot/finish in a forked child."""

    runner = "harness"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rootfs = path / "rootfs"
        self.config = fs_harness.default_config()

    def run(self, argv: list[str], **kw) -> fs_harness.Result:
        return fs_harness.run(self.config, self.path, argv, **kw)

    def start(self, script: str, **kw) -> fs_harness.Running:
        return fs_harness.start(self.config, self.path, ["sh", "-c", script], **kw)

    def sh(self, script: str, **kw) -> fs_harness.Result:
        return self.run(["sh", "-c", script], **kw)

    def error(self, script: str = "true", **kw) -> str:
        """The error text of a run that must fail (config errors raise in the harness)."""
        try:
            r = self.sh(script, **kw)
        except OnggiError as e:
            return str(e)
        assert r.rc != 0, f"expected a failure, got: {r.out}"
        return r.err

    def mount(self, dest: str, type_: str | None = None, source: str | None = None,
              options: list[str] | None = None, **extra) -> dict:
        m = {"destination": dest}
        if type_ is not None:
            m["type"] = type_
        if source is not None:
            m["source"] = source
        if options is not None:
            m["options"] = options
        m.update(extra)
        self.config["mounts"].append(m)
        return m


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
