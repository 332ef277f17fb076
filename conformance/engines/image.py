"""The test image, with no network: Debian's busybox-static as a one-layer rootfs tarball."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .common import REPO

sys.path.insert(0, str(REPO / "bundles"))

import busybox  # noqa: E402  (bundles/busybox.py)

IMAGE = "localhost/onggi-bb:latest"


def rootfs_tar(workdir: Path) -> Path:
    """rootfs/ from bundles/busybox.py, packed as the tarball `podman import` takes."""
    tar = workdir / "busybox-rootfs.tar"
    if not tar.exists():
        rootfs = Path(busybox.build_rootfs(str(workdir / "bb-rootfs")))
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tar), "."],
                       check=True)
    return tar
