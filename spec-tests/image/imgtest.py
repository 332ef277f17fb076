"""Helpers and fixtures of the image tool's tests: temp stores, a loopback registry, trees.

Everything is built here from Debian packages (busybox-static, docker-registry); nothing is
downloaded. Each test's temp dir is removed, mounts under it are checked for and undone.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = (REPO / ".." / "shared").resolve()
sys.path.insert(0, str(REPO / "bundles" / "image"))

import imagefix  # noqa: E402

PY = str(REPO / ".venv" / "bin" / "python")
ONGGI = str(REPO / ".venv" / "bin" / "onggi")


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (mknod, chown, overlay mounts)")


def need_bin(path: str, pkg: str) -> None:
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} missing: install the Debian package {pkg}")


def mounts_under(prefix: str) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == prefix or mp.startswith(prefix.rstrip("/") + "/"):
                out.append(mp)
    return out


@pytest.fixture
def work() -> Any:
    """A temp dir removed afterwards; a mount left under it fails the test."""
    need_root()
    d = Path(tempfile.mkdtemp(prefix="onggi-img-"))
    yield d
    left = mounts_under(str(d))
    for mp in sorted(left, key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], check=False)
    shutil.rmtree(d, ignore_errors=True)
    assert not left, f"mounts left behind: {left}"


@pytest.fixture
def store(work: Path) -> Path:
    return work / "store"


def image(args: list[str], store: Path) -> int:
    from runtime.image.cli import main

    return main(args, store=str(store))


@pytest.fixture(scope="session")
def registry() -> Any:
    need_root()
    need_bin(imagefix.LocalRegistry.BIN, "docker-registry")
    d = Path(tempfile.mkdtemp(prefix="onggi-reg-"))
    reg = imagefix.LocalRegistry(d).start()
    yield reg
    reg.stop()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def busybox_layout() -> Any:
    """An OCI layout with busybox:latest (gzip) built from busybox-static."""
    need_bin(imagefix.BUSYBOX, "busybox-static")
    d = Path(tempfile.mkdtemp(prefix="onggi-lay-"))
    imagefix.busybox_layout(d / "busybox", "latest")
    yield d / "busybox"
    shutil.rmtree(d, ignore_errors=True)


def tree(root: str | Path, ignore_xattr_prefix: tuple[str, ...] = ("trusted.overlay.",)) -> dict[str, Any]:
    """Everything user-visible about a tree: type, mode, owner, size, content hash, link
    target, device numbers, xattrs; plus hardlink groups under the key "<links>"."""
    root = str(root)
    out: dict[str, Any] = {}
    inodes: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            m = st.st_mode
            info: dict[str, Any] = {"mode": oct(stat.S_IMODE(m)), "uid": st.st_uid, "gid": st.st_gid}
            if stat.S_ISREG(m):
                info["type"] = "f"
                info["size"] = st.st_size
                with open(p, "rb") as f:
                    info["sha"] = hashlib.sha256(f.read()).hexdigest()[:16]
                info["mtime"] = int(st.st_mtime)
                if st.st_nlink > 1:
                    inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            elif stat.S_ISDIR(m):
                info["type"] = "d"
            elif stat.S_ISLNK(m):
                info["type"] = "l"
                info["target"] = os.readlink(p)
                del info["mode"]
            elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
                info["type"] = "c" if stat.S_ISCHR(m) else "b"
                info["dev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            elif stat.S_ISFIFO(m):
                info["type"] = "p"
            xs = {}
            for k in os.listxattr(p, follow_symlinks=False):
                if not k.startswith(ignore_xattr_prefix):
                    xs[k] = os.getxattr(p, k, follow_symlinks=False)
            if xs:
                info["xattrs"] = xs
            out[rel] = info
    out["<links>"] = sorted(sorted(v) for v in inodes.values() if len(v) > 1)
    return out


def dir_state(root: Path) -> dict[str, Any]:
    """A tree snapshot with mtimes of dirs too: used to prove nothing outside changed."""
    t = tree(root)
    for rel in list(t):
        if rel != "<links>":
            st = os.lstat(os.path.join(root, rel))
            t[rel]["ino"] = st.st_ino
            t[rel]["nlink"] = st.st_nlink
            t[rel]["mtime_ns"] = st.st_mtime_ns
    return t
