"""Fixtures of the fault suite: one bundle and --root for a whole module (a fresh rootfs per
test would cost more than most tests here), and the fault matrix printed at the end."""

from __future__ import annotations

import os
import shutil

import pytest
from faultlib import MATRIX, SUMMARY, Rig, format_matrix
from harness import Bundle, busybox_rootfs  # noqa: F401


@pytest.fixture(scope="module")
def rig(tmp_path_factory, busybox_rootfs):  # noqa: F811
    if os.geteuid() != 0:
        pytest.skip("real containers need root")
    base = tmp_path_factory.mktemp("faults")
    path, root = base / "bundle", base / "state"
    path.mkdir()
    root.mkdir()
    shutil.copytree(busybox_rootfs, path / "rootfs", symlinks=True)
    r = Rig(Bundle(path, root))
    yield r
    r.bundle.cleanup()
    r.console.close()


def pytest_terminal_summary(terminalreporter):
    for line in SUMMARY:
        terminalreporter.write_line(line)
    if MATRIX:
        text = format_matrix()
        terminalreporter.write_sep("-", "fault matrix (step x verb): outcome, then delete --force")
        terminalreporter.write_line(text)
        out = os.environ.get("ONGGI_FAULT_MATRIX")
        if out:
            with open(out, "w") as f:
                f.write(text + "\n")
