"""Fixtures for the filesystem tests: a private busybox rootfs and config per test."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import fs_harness
import pytest


class FsBundle:
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


@pytest.fixture
def fsb(tmp_path, busybox_rootfs):
    if os.geteuid() != 0:
        pytest.skip("mount namespaces need root")
    path = tmp_path / "bundle"
    path.mkdir()
    shutil.copytree(busybox_rootfs, path / "rootfs", symlinks=True)
    yield FsBundle(path)
    # nothing a test did may stay on the host's mount table
    leaked = [m for m in fs_harness.host_mounts() if str(tmp_path) in m]
    assert not leaked, leaked
