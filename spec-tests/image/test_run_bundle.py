"""An unpacked busybox bundle runs, in copy and overlay mode: with onggi, and with runc
(the anchor) as a cross-check that the bundle itself is right."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from imgtest import ONGGI, image, imagefix

RUNTIMES = {"onggi": ONGGI, "runc": "/usr/sbin/runc"}


@pytest.mark.parametrize("runtime", ["onggi", "runc"])
@pytest.mark.parametrize("mode", ["copy", "overlay"])
def test_busybox_bundle_runs(runtime: str, mode: str, work: Path, store: Path) -> None:
    exe = RUNTIMES[runtime]
    if not os.access(exe, os.X_OK):
        if runtime == "runc":
            pytest.fail(f"{exe} missing: install the Debian package runc")
        pytest.skip(f"{exe} missing: pip install -e . first")
    imagefix.busybox_layout(work / "lay", "latest",
                            cmd=["sh", "-c", "echo hello from onggi; id -u; pwd; echo x > /written"])
    bundle = work / "bundle"
    assert image(["image", "unpack", "-q", f"oci:{work / 'lay'}", str(bundle), "--mode", mode], store) == 0
    root = work / "state"
    cid = f"img-{mode}-{runtime}-{os.getpid()}"
    try:
        r = subprocess.run([exe, "--root", str(root), "run", "-b", str(bundle), cid],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["hello from onggi", "0", "/"]
        assert (bundle / "rootfs" / "written").read_text() == "x\n"
        if mode == "overlay":
            # The write went to the bundle's own upper dir, never into a shared snapshot.
            snaps = [p for p in (store / "snapshots").iterdir() if not p.name.startswith(".")]
            assert not any((p / "fs" / "written").exists() for p in snaps)
            assert len(list((store / "overlays").glob("*/upper/written"))) == 1
    finally:
        subprocess.run([exe, "--root", str(root), "delete", "-f", cid], capture_output=True, timeout=30)
        if mode == "overlay":
            image(["image", "unmount", str(bundle)], store)
