"""A three-layer image covering every whiteout, hardlink, xattr and type-change case,
unpacked in copy and overlay mode and compared, entry by entry, with the expected tree."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
from imgtest import image, imagefix, tree

from runtime.errors import OnggiError

E = imagefix.E

# security.capability, VFS_CAP_REVISION_2 with CAP_NET_BIND_SERVICE permitted+effective.
CAPS = struct.pack("<5I", 0x02000001, 1 << 10, 0, 0, 0)
BINX = b"\x00\xff\xfe\x80binary\x00"
LONG = "long/" + "d" * 120 + "/" + "f" * 150
NONUTF8 = b"names/\xff\xfe-latin1-\xe9.txt".decode("utf-8", "surrogateescape")

L1 = [
    E("etc/", "d", mode=0o755),
    E("etc/keep", data=b"keep", mtime=1600000000),
    E("etc/gone", data=b"gone"),
    E("dir1/", "d", mode=0o755),
    E("dir1/a", data=b"a"),
    E("dir1/b", data=b"b1"),
    E("dir1/sub/", "d", mode=0o750),
    E("dir1/sub/c", data=b"c"),
    E("opq/", "d", mode=0o755),
    E("opq/old1", data=b"old1"),
    E("opq/olddir/", "d", mode=0o755),
    E("opq/olddir/x", data=b"x"),
    E("opq2/", "d", mode=0o755),
    E("opq2/old", data=b"old"),
    E("dir2file/", "d", mode=0o755),
    E("dir2file/child", data=b"child"),
    E("file2dir", data=b"i am a file"),
    E("file2link", data=b"x"),
    E("link2file", "l", link="etc/keep"),
    E("hl/", "d", mode=0o755),
    E("hl/orig", data=b"shared", uid=1000, gid=1000, mode=0o640),
    E("hl/link1", "h", link="hl/orig"),
    E("hl/pairA", data=b"pair"),
    E("hl/pairB", "h", link="hl/pairA"),
    E("bin/", "d", mode=0o755),
    E("bin/suid", data=b"s", mode=0o4755),
    E("bin/sgid", data=b"g", mode=0o2755, gid=50),
    E("sticky/", "d", mode=0o1777),
    E("zero", data=b"secret", mode=0o000),
    E("zerodir/", "d", mode=0o000),
    E("caps", data=b"cap", mode=0o755, xattrs={"security.capability": CAPS, "user.bin": BINX}),
    E("xdir/", "d", mode=0o755, xattrs={"user.dirattr": b"dir\x01"}),
    E("dev/", "d", mode=0o755),
    E("dev/mychr", "c", mode=0o666, dev=(1, 3)),
    E("dev/myblk", "b", mode=0o660, dev=(7, 0), gid=6),
    E("fifo", "p", mode=0o600),
    E("abs", "l", link="/etc/keep"),
    E(LONG, data=b"long name"),
    E(NONUTF8, data=b"bytes name"),
    E("owned", data=b"o", mode=0o640, uid=1234, gid=5678),
    E("overlayattr", data=b"o", xattrs={"trusted.overlay.opaque": b"y"}),
]

L2 = [
    E("etc/.wh.gone"),
    E("opq/new1", data=b"new1"),
    E("opq/.wh..wh..opq"),  # after an entry of its own layer: that entry must survive
    E("opq2/.wh..wh..opq"),  # before: everything from below goes
    E("opq2/new", data=b"new"),
    E("dir2file", data=b"was a dir"),
    E("file2dir/", "d", mode=0o711),
    E("file2dir/inner", data=b"inner"),
    E("file2link", "l", link="etc/keep"),
    E("link2file", data=b"now a file"),  # must replace the link, not write etc/keep
    E("hl/pairA", data=b"replaced"),
    E("hl/link2", "h", link="hl/orig"),  # a hardlink to a file of the layer below
    E("dir1/.wh.sub"),
    E("dir1/b", data=b"b2"),
    E("etc/", "d", mode=0o700),
]

L3 = [
    E("dir1/.wh.a"),
    E("etc/gone", data=b"back"),
    E("opq/", "d", mode=0o755),
]


def expected() -> dict:
    def f(data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0, mtime: int = imagefix.MTIME, **kw):
        import hashlib

        d = {"type": "f", "mode": oct(mode), "uid": uid, "gid": gid, "size": len(data),
             "sha": hashlib.sha256(data).hexdigest()[:16], "mtime": mtime}
        d.update(kw)
        return d

    def d(mode: int = 0o755, uid: int = 0, gid: int = 0, **kw):
        x = {"type": "d", "mode": oct(mode), "uid": uid, "gid": gid}
        x.update(kw)
        return x

    def ln(target: str):
        return {"type": "l", "target": target, "uid": 0, "gid": 0}

    t = {
        "etc": d(0o700), "etc/keep": f(b"keep", mtime=1600000000), "etc/gone": f(b"back"),
        "dir1": d(), "dir1/b": f(b"b2"),
        "opq": d(), "opq/new1": f(b"new1"),
        "opq2": d(), "opq2/new": f(b"new"),
        "dir2file": f(b"was a dir"),
        "file2dir": d(0o711), "file2dir/inner": f(b"inner"),
        "file2link": ln("etc/keep"),
        "link2file": f(b"now a file"),
        "hl": d(), "hl/orig": f(b"shared", 0o640, 1000, 1000), "hl/link1": f(b"shared", 0o640, 1000, 1000),
        "hl/link2": f(b"shared", 0o640, 1000, 1000),
        "hl/pairA": f(b"replaced"), "hl/pairB": f(b"pair"),
        "bin": d(), "bin/suid": f(b"s", 0o4755), "bin/sgid": f(b"g", 0o2755, 0, 50),
        "sticky": d(0o1777), "zero": f(b"secret", 0o000), "zerodir": d(0o000),
        "caps": f(b"cap", 0o755, xattrs={"security.capability": CAPS, "user.bin": BINX}),
        "xdir": d(xattrs={"user.dirattr": b"dir\x01"}),
        "dev": d(), "dev/mychr": {"type": "c", "mode": "0o666", "uid": 0, "gid": 0, "dev": (1, 3)},
        "dev/myblk": {"type": "b", "mode": "0o660", "uid": 0, "gid": 6, "dev": (7, 0)},
        "fifo": {"type": "p", "mode": "0o600", "uid": 0, "gid": 0},
        "abs": ln("/etc/keep"),
        "long": d(), "long/" + "d" * 120: d(), LONG: f(b"long name"),
        "names": d(), NONUTF8: f(b"bytes name"),
        "owned": f(b"o", 0o640, 1234, 5678),
        "overlayattr": f(b"o"),
    }
    # Parents the tar did not list are made 0755 root; hl/orig has three names.
    t["<links>"] = [["hl/link1", "hl/link2", "hl/orig"]]
    return t


@pytest.fixture
def layered(work: Path) -> Path:
    w = imagefix.OCIWriter(work / "layout")
    desc = w.image(
        [
            (imagefix.tar_bytes(L1), "gzip"),
            (imagefix.tar_bytes(L2), "zstd"),
            (imagefix.tar_bytes(L3, eof=False), "none"),
        ],
        imagefix.image_config(["sh"]),
    )
    w.tag(desc, "v1")
    return work / "layout"


def test_copy_mode_tree_is_exact(layered: Path, work: Path, store: Path) -> None:
    assert image(["image", "unpack", f"oci:{layered}:v1", str(work / "b")], store) == 0
    got = tree(work / "b" / "rootfs")
    want = expected()
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k] == want[k], k


def test_overlay_mode_matches_copy_mode(layered: Path, work: Path, store: Path) -> None:
    assert image(["image", "unpack", f"oci:{layered}:v1", str(work / "c")], store) == 0
    assert image(["image", "unpack", f"oci:{layered}:v1", str(work / "o"), "--mode", "overlay"], store) == 0
    try:
        copy_t = tree(work / "c" / "rootfs")
        over_t = tree(work / "o" / "rootfs")
        # A hardlink into a lower layer cannot share the inode across read-only snapshots:
        # the snapshot holds a copy, so only the identity of that one name differs.
        assert copy_t.pop("<links>") == [["hl/link1", "hl/link2", "hl/orig"]]
        assert over_t.pop("<links>") == [["hl/link1", "hl/orig"]]
        assert sorted(over_t) == sorted(copy_t)
        for k in copy_t:
            if copy_t[k]["type"] == "d":
                continue  # dir mtimes are not compared; the rest must be equal
            assert over_t[k] == copy_t[k], k
        for k in copy_t:
            assert over_t[k] == copy_t[k], k
        # The snapshots hold overlayfs whiteouts, not .wh. files.
        snaps = sorted(p for p in (store / "snapshots").iterdir() if not p.name.startswith("."))
        assert len(snaps) == 3
        by_diff = {json.loads((p / "meta.json").read_text())["diffID"]: p for p in snaps}
        l2 = by_diff[imagefix.sha(imagefix.tar_bytes(L2))]
        assert os.getxattr(l2 / "fs" / "opq2", "trusted.overlay.opaque") == b"y"
        st = os.lstat(l2 / "fs" / "dir1" / "sub")
        assert os.major(st.st_rdev) == 0 and os.minor(st.st_rdev) == 0 and (st.st_mode & 0o170000) == 0o020000
        assert not any(n.startswith(".wh.") for _, dirs, files in os.walk(l2) for n in dirs + files)
        # The layer's own trusted.overlay.* xattr is dropped, never obeyed.
        l1 = by_diff[imagefix.sha(imagefix.tar_bytes(L1))]
        assert not l1.name.startswith("c-"), "a self-contained layer is keyed by its diffID"
        assert l2.name.startswith("c-"), "a layer that reaches into lower layers is keyed by chain"

        assert "trusted.overlay.opaque" not in os.listxattr(l1 / "fs" / "overlayattr")
    finally:
        image(["image", "unmount", str(work / "o")], store)
    assert not (work / "o").exists()


def test_second_overlay_bundle_shares_snapshots(layered: Path, work: Path, store: Path) -> None:
    for b in ("o1", "o2"):
        assert image(["image", "unpack", f"oci:{layered}:v1", str(work / b), "--mode", "overlay"], store) == 0
    try:
        snaps = [p for p in (store / "snapshots").iterdir() if not p.name.startswith(".")]
        assert len(snaps) == 3, "layers are extracted once and shared"
        (work / "o1" / "rootfs" / "etc" / "keep").write_text("changed in o1")
        assert (work / "o2" / "rootfs" / "etc" / "keep").read_text() == "keep"
        assert (work / "o1" / "rootfs" / "etc" / "gone").read_text() == "back"
    finally:
        image(["image", "unmount", str(work / "o1")], store)
        image(["image", "unmount", str(work / "o2")], store)


def test_killed_snapshot_extraction_is_redone_cleanly(work: Path, store: Path) -> None:
    """SIGKILL in the middle of extracting a snapshot: no half snapshot is ever used."""
    import shutil
    import signal
    import subprocess
    import time

    from imgtest import PY, REPO

    big = [E(f"d{i // 100}/f{i}", data=os.urandom(2000)) for i in range(6000)]
    w = imagefix.OCIWriter(work / "lay")
    w.tag(w.image([(imagefix.tar_bytes(big), "gzip")], imagefix.image_config()), "v1")
    assert image(["pull", "-q", f"oci:{work / 'lay'}:v1"], store) == 0
    code = (f"from runtime.image.cli import main; main(['image','unpack','-q','--mode','overlay',"
            f"'localhost/lay:v1','{work / 'k'}'], store='{store}')")
    def done() -> list[str]:
        return [q.name for q in (store / "snapshots").iterdir() if not q.name.startswith(("tmp-", "."))]

    for _ in range(5):  # on a loaded machine the kill may come too late: then try again
        p = subprocess.Popen([PY, "-c", code], cwd=REPO)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any((store / "snapshots").glob("tmp-*/fs/d1")):
            time.sleep(0.002)
        p.send_signal(signal.SIGKILL)
        p.wait()
        if not done():
            break
        try:
            image(["image", "unmount", str(work / "k")], store)
        except OnggiError:
            subprocess.run(["umount", "-l", str(work / "k" / "rootfs")], capture_output=True)
            shutil.rmtree(work / "k", ignore_errors=True)
        shutil.rmtree(store / "snapshots" / done()[0])
    assert done() == [], "the kill never landed during an extraction"
    assert any((store / "snapshots").glob("tmp-*")), "a half extraction was left to clean"
    assert image(["image", "unpack", "-q", "--mode", "overlay", "localhost/lay:v1", str(work / "ok")], store) == 0
    try:
        assert len(list((work / "ok" / "rootfs").rglob("f*"))) == 6000
        assert not any((store / "snapshots").glob("tmp-*")), "the dead extraction was cleaned up"
    finally:
        image(["image", "unmount", str(work / "ok")], store)
