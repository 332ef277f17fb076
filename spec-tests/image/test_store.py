"""The store as the user sees it: ls (table and JSON), tag, inspect, rm with its in-use
check, and garbage collection of blobs and snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from imgtest import image, imagefix

from runtime.errors import OnggiError
from runtime.image.store import Store

E = imagefix.E


def _two_images(work: Path) -> Path:
    w = imagefix.OCIWriter(work / "lay")
    base = imagefix.tar_bytes(imagefix.busybox_entries())
    w.tag(w.image([(base, "gzip"), (imagefix.tar_bytes([E("a", data=b"a")]), "gzip")], imagefix.image_config()), "a")
    w.tag(w.image([(base, "gzip"), (imagefix.tar_bytes([E("b", data=b"b")]), "zstd")], imagefix.image_config()), "b")
    return work / "lay"


def test_ls_table_and_json(work: Path, store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lay = _two_images(work)
    image(["pull", "-q", f"oci:{lay}:a"], store)
    image(["pull", "-q", f"oci:{lay}:b"], store)
    capsys.readouterr()
    assert image(["images", "--format", "json"], store) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["repository"], r["tag"]) for r in rows] == [("localhost/lay", "a"), ("localhost/lay", "b")]
    for r in rows:
        assert r["digest"].startswith("sha256:") and r["size"] > 900000
        assert r["created"] == "2026-11-01T00:00:00Z"
    assert image(["image", "ls"], store) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["REPOSITORY", "TAG", "DIGEST", "SIZE", "CREATED"]
    assert out[1].split()[:3] == ["localhost/lay", "a", rows[0]["digest"][7:19]]


def test_tag_inspect_and_rm_with_gc(work: Path, store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lay = _two_images(work)
    image(["pull", "-q", f"oci:{lay}:a"], store)
    image(["pull", "-q", f"oci:{lay}:b"], store)
    assert image(["image", "tag", "localhost/lay:a", "example.com/team/app:1.0"], store) == 0
    capsys.readouterr()
    assert image(["image", "inspect", "example.com/team/app:1.0"], store) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["name"] == "example.com/team/app:1.0"
    assert len(doc["layers"]) == 2 and doc["layers"][1]["diffID"].startswith("sha256:")
    assert doc["config"]["rootfs"]["diff_ids"] == [x["diffID"] for x in doc["layers"]]
    assert doc["manifest"]["layers"][0]["digest"] == doc["layers"][0]["digest"]
    s = Store(store)
    n_blobs = len(list(s.blobs.iterdir()))
    # Removing one of two names of an image frees nothing.
    assert image(["rmi", "localhost/lay:a"], store) == 0
    assert len(list(s.blobs.iterdir())) == n_blobs
    # Removing the last name frees its unique layer, config and manifest, not the shared base.
    assert image(["image", "rm", "example.com/team/app:1.0"], store) == 0
    assert len(list(s.blobs.iterdir())) == n_blobs - 3
    assert image(["image", "rm", "localhost/lay:b"], store) == 0
    assert list(s.blobs.iterdir()) == []
    assert sorted(p.name for p in s.locks.iterdir()) == ["gc.lock", "index.lock"]
    with pytest.raises(OnggiError, match="image localhost/lay:b: not in store"):
        image(["image", "rm", "localhost/lay:b"], store)
    with pytest.raises(OnggiError, match="image nothere: not in store"):
        image(["image", "inspect", "nothere"], store)


def test_rm_refuses_while_overlay_bundle_uses_image(work: Path, store: Path) -> None:
    lay = _two_images(work)
    image(["pull", "-q", f"oci:{lay}:a"], store)
    assert image(["image", "unpack", "-q", "localhost/lay:a", str(work / "ob"), "--mode", "overlay"], store) == 0
    s = Store(store)
    try:
        with pytest.raises(OnggiError, match=f"in use by overlay bundle {work / 'ob'}"):
            image(["rmi", "localhost/lay:a"], store)
        assert "localhost/lay:a" in s.read_index()["images"]
        # --force untags and frees blobs, but the mounted bundle's snapshots stay.
        snaps = sorted(p.name for p in s.snapshots.iterdir() if not p.name.startswith("."))
        assert image(["rmi", "--force", "localhost/lay:a"], store) == 0
        assert s.read_index()["images"] == {}
        assert sorted(p.name for p in s.snapshots.iterdir() if not p.name.startswith(".")) == snaps
        assert (work / "ob" / "rootfs" / "a").read_bytes() == b"a"
    finally:
        image(["image", "unmount", str(work / "ob")], store)
    # With the bundle gone, the next collection frees its snapshots and overlay dirs.
    image(["pull", "-q", f"oci:{lay}:b"], store)
    image(["rmi", "localhost/lay:b"], store)
    assert [p for p in s.snapshots.iterdir() if not p.name.startswith(".")] == []
    assert list(s.overlays.iterdir()) == []


def test_copy_bundle_does_not_pin_and_existing_bundle_is_refused(work: Path, store: Path) -> None:
    lay = _two_images(work)
    image(["image", "unpack", "-q", f"oci:{lay}:a", str(work / "cb")], store)
    with pytest.raises(OnggiError, match="config.json already exists"):
        image(["image", "unpack", "-q", f"oci:{lay}:a", str(work / "cb")], store)
    assert image(["rmi", "localhost/lay:a"], store) == 0
    with pytest.raises(OnggiError, match="not an overlay bundle"):
        image(["image", "unmount", str(work / "cb")], store)


def test_progress_bars_on_a_tty(work: Path, busybox_layout: Path) -> None:
    """On a TTY each layer gets a bar redrawn in place; elsewhere plain lines (see
    test_registry), and nothing with --quiet."""
    import os
    import subprocess

    from imgtest import ONGGI

    master, slave = os.openpty()
    p = subprocess.Popen([ONGGI, "--store", str(work / "s"), "image", "pull", f"oci:{busybox_layout}"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert p.wait(30) == 0
    text = out.decode(errors="replace")
    assert "\x1b[" in text and "\r\x1b[K" in text, text
    assert "[" + "#" * 30 + "]" in text and "done" in text


def test_rm_by_digest_removes_every_name(work: Path, store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lay = _two_images(work)
    image(["pull", "-q", f"oci:{lay}:a"], store)
    image(["image", "tag", "localhost/lay:a", "other/name:x"], store)
    rec = Store(store).read_index()["images"]["localhost/lay:a"]
    capsys.readouterr()
    assert image(["rmi", rec["config"][7:19]], store) == 0
    assert sorted(capsys.readouterr().out.split()) == sorted(
        ["Untagged:", "Untagged:", "localhost/lay:a", "docker.io/other/name:x"])
    assert Store(store).read_index()["images"] == {}


def test_odd_store_and_bundle_paths(work: Path, busybox_layout: Path) -> None:
    """',' and ':' in the store path, spaces in the bundle's: overlay options stay intact."""
    store = work / "my,store:1"
    bundle = work / "a bundle, with: commas"
    assert image(["image", "unpack", "-q", "--mode", "overlay", f"oci:{busybox_layout}", str(bundle)], store) == 0
    try:
        assert (bundle / "rootfs" / "bin" / "busybox").is_file()
        (bundle / "rootfs" / "new").write_text("x")
        assert len(list((store / "overlays").glob("*/upper/new"))) == 1
    finally:
        image(["image", "unmount", str(bundle)], store)
