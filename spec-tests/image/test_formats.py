"""Layer encodings and local sources: gzip, zstd, plain, no end blocks, multi-member gzip,
sparse files (GNU and PAX), empty layers, OCI layouts and docker-archives."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from pathlib import Path

import pytest
from imgtest import image, imagefix, tree

from runtime.errors import OnggiError

E = imagefix.E

ENTRIES = [E("a/", "d"), E("a/file", data=b"x" * 100000), E("a/l", "l", link="file"), E("a/h", "h", link="a/file")]


def _unpack_one(work: Path, store: Path, layer: bytes, media: str, name: str) -> dict:
    w = imagefix.OCIWriter(work / f"lay-{name}")
    cfg = imagefix.image_config()
    import hashlib

    blob = w.blob(layer, media)
    diff = layer
    if layer[:2] == b"\x1f\x8b":
        diff = gzip.decompress(layer)
    elif layer[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        diff = zstandard.ZstdDecompressor().decompressobj().decompress(layer)
    cfg["rootfs"] = {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(diff).hexdigest()]}
    cdesc = w.blob(json.dumps(cfg).encode(), imagefix.OCI_CONFIG)
    man = {"schemaVersion": 2, "mediaType": imagefix.OCI_MANIFEST, "config": cdesc, "layers": [blob]}
    w.tag(w.blob(json.dumps(man).encode(), imagefix.OCI_MANIFEST), "t")
    image(["image", "unpack", "-q", f"oci:{work / f'lay-{name}'}:t", str(work / name)], store)
    return tree(work / name / "rootfs")


def test_gzip_zstd_plain_and_no_eof_give_the_same_tree(work: Path, store: Path) -> None:
    raw = imagefix.tar_bytes(ENTRIES)
    trees = {
        "gzip": _unpack_one(work, store, imagefix.compress(raw, "gzip"), imagefix.LAYER_TYPES["gzip"], "gz"),
        "zstd": _unpack_one(work, store, imagefix.compress(raw, "zstd"), imagefix.LAYER_TYPES["zstd"], "zst"),
        "plain": _unpack_one(work, store, raw, imagefix.LAYER_TYPES["none"], "plain"),
        "noeof": _unpack_one(work, store, imagefix.tar_bytes(ENTRIES, eof=False), imagefix.LAYER_TYPES["none"], "noeof"),
        "multigz": _unpack_one(work, store, gzip.compress(raw[:10240]) + gzip.compress(raw[10240:]),
                               imagefix.LAYER_TYPES["gzip"], "multi"),
    }
    assert trees["gzip"]["a/file"]["size"] == 100000
    assert trees["gzip"]["<links>"] == [["a/file", "a/h"]]
    for k, t in trees.items():
        assert t == trees["gzip"], k


def test_empty_layers(work: Path, store: Path) -> None:
    empty_tar = imagefix.tar_bytes([])
    assert _unpack_one(work, store, imagefix.compress(empty_tar, "gzip"), imagefix.LAYER_TYPES["gzip"], "e1") == {"<links>": []}
    assert _unpack_one(work, store, b"", imagefix.LAYER_TYPES["none"], "e2") == {"<links>": []}


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_sparse_files_keep_their_holes(fmt: str, work: Path, store: Path) -> None:
    src = work / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.seek(64 << 20)
        f.write(b"middle")
        f.seek(128 << 20)
        f.write(b"end")
    r = subprocess.run(["tar", f"--format={fmt}", "--sparse", "-C", str(src), "-cf", "-", "sparse"],
                       capture_output=True, check=True)
    layer = r.stdout
    assert len(layer) < 1 << 20, "tar wrote holes as data"
    t = _unpack_one(work, store, layer, imagefix.LAYER_TYPES["none"], f"sp-{fmt}")
    out = work / f"sp-{fmt}" / "rootfs" / "sparse"
    st = os.stat(out)
    assert st.st_size == (128 << 20) + 3
    assert st.st_blocks * 512 < 1 << 20, "holes were filled with zeros"
    with open(out, "rb") as f:
        f.seek(64 << 20)
        assert f.read(6) == b"middle"
        f.seek((64 << 20) - 10)
        assert f.read(10) == b"\0" * 10
    assert t["sparse"]["size"] == (128 << 20) + 3


def test_diff_id_mismatch_is_rejected(work: Path, store: Path) -> None:
    w = imagefix.OCIWriter(work / "lay")
    desc = w.image([(imagefix.tar_bytes(ENTRIES), "gzip")], imagefix.image_config())
    man = json.loads((work / "lay" / "blobs" / "sha256" / desc["digest"][7:]).read_bytes())
    cfg = json.loads((work / "lay" / "blobs" / "sha256" / man["config"]["digest"][7:]).read_bytes())
    cfg["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
    man["config"] = w.blob(json.dumps(cfg).encode(), imagefix.OCI_CONFIG)
    w.tag(w.blob(json.dumps(man).encode(), imagefix.OCI_MANIFEST), "bad")
    with pytest.raises(OnggiError, match="does not match diff_id"):
        image(["image", "unpack", "-q", f"oci:{work / 'lay'}:bad", str(work / "b")], store)
    assert not (work / "b").exists(), "a failed unpack leaves no half bundle"


def test_docker_archive_pull_and_unpack(work: Path, store: Path) -> None:
    l1 = imagefix.tar_bytes(imagefix.busybox_entries())
    l2 = imagefix.tar_bytes([E("etc/.wh.group"), E("hello", data=b"from archive")])
    imagefix.docker_archive(work / "img.tar", [l1, l2], imagefix.image_config(["sh"]), "example/arch:v2")
    assert image(["image", "pull", "-q", f"docker-archive:{work / 'img.tar'}"], store) == 0
    from runtime.image.images import list_images

    rows = list_images(__import__("runtime.image.store", fromlist=["Store"]).Store(store))
    assert [r["name"] for r in rows] == ["docker.io/example/arch:v2"]
    assert image(["image", "unpack", "-q", "example/arch:v2", str(work / "b")], store) == 0
    root = work / "b" / "rootfs"
    assert (root / "hello").read_bytes() == b"from archive"
    assert not (root / "etc" / "group").exists()
    assert (root / "bin" / "busybox").stat().st_size == os.stat(imagefix.BUSYBOX).st_size


def test_docker_archive_from_skopeo(work: Path, store: Path, busybox_layout: Path) -> None:
    """An archive written by another tool (skopeo's docker-archive transport)."""
    if not os.access("/usr/bin/skopeo", os.X_OK):
        pytest.fail("/usr/bin/skopeo missing: install the Debian package skopeo")
    subprocess.run(["skopeo", "--insecure-policy", "copy", "-q", f"oci:{busybox_layout}:latest",
                    f"docker-archive:{work / 'sk.tar'}:example/sk:1"], check=True)
    assert image(["image", "unpack", "-q", f"docker-archive:{work / 'sk.tar'}", str(work / "b")], store) == 0
    assert (work / "b" / "rootfs" / "bin" / "busybox").is_file()


def test_layout_without_tag_and_unknown_tag(work: Path, store: Path, busybox_layout: Path) -> None:
    assert image(["image", "pull", "-q", f"oci:{busybox_layout}"], store) == 0
    with pytest.raises(OnggiError, match="no such tag.*tags: latest"):
        image(["image", "pull", "-q", f"oci:{busybox_layout}:nope"], store)
    with pytest.raises(OnggiError, match="not an OCI image layout"):
        image(["image", "pull", "-q", f"oci:{work}"], store)
    with pytest.raises(OnggiError, match="docker-archive:.*cannot read"):
        image(["image", "pull", "-q", f"docker-archive:{work / 'missing.tar'}"], store)


def test_umoci_and_onggi_agree_on_busybox(work: Path, store: Path, busybox_layout: Path) -> None:
    """The anchor: umoci's unpack of the same image gives the same tree."""
    if not os.access("/usr/bin/umoci", os.X_OK):
        pytest.fail("/usr/bin/umoci missing: install the Debian package umoci")
    subprocess.run(["umoci", "unpack", "--image", f"{busybox_layout}:latest", str(work / "u")],
                   check=True, capture_output=True)
    assert image(["image", "unpack", "-q", f"oci:{busybox_layout}:latest", str(work / "o")], store) == 0
    assert tree(work / "o" / "rootfs") == tree(work / "u" / "rootfs")


def test_many_directories_under_a_low_fd_limit(work: Path, store: Path) -> None:
    """More dirs than RLIMIT_NOFILE: the dir fd cache must stay bounded."""
    from imgtest import PY, REPO

    entries = [E(f"t{i // 50}/d{i}/f", data=b"x") for i in range(3000)]
    w = imagefix.OCIWriter(work / "lay")
    w.tag(w.image([(imagefix.tar_bytes(entries), "gzip")], imagefix.image_config()), "t")
    code = ("import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200)); "
            "from runtime.image.cli import main; "
            f"main(['image','unpack','-q','oci:{work / 'lay'}:t','{work / 'b'}'], store='{store}')")
    r = subprocess.run([PY, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list((work / "b" / "rootfs").glob("t*/d*/f"))) == 3000
