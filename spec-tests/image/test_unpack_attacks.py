"""Malicious layers, one per attack: nothing outside the rootfs is written, chmodded,
chowned or deleted, in copy mode and in overlay (snapshot) mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from imgtest import dir_state, image, imagefix

from runtime.errors import OnggiError

E = imagefix.E


def _attacks(outside: Path) -> dict[str, tuple[list[E], str | None, dict[str, bytes | None]]]:
    """name -> (entries, expected error substring or None, {path in rootfs: content or None}).

    Every escape aims exactly at the sentinel dir `outside` (rootfs is work/bundle/rootfs,
    so "../../outside" from the rootfs is work/outside): were the code ever to regress,
    only the sentinel could be hit, never the host."""
    o = str(outside)
    up = "../../outside"
    return {
        "dotdot-name": ([E(f"{up}/evil", data=b"pwn"), E(f"./{up}/victim", data=b"pwn")],
                        None, {"outside/evil": b"pwn", "outside/victim": b"pwn"}),
        "absolute-name": ([E(f"{o}/victim", data=b"pwn"), E(f"{o}/new", data=b"pwn")],
                          None, {f"{o}/victim".lstrip("/"): b"pwn"}),
        "symlink-parent-relative": ([E("esc", "l", link=up), E("esc/evil", data=b"pwn")],
                                    None, {"outside/evil": b"pwn"}),
        "symlink-parent-absolute": ([E("esc", "l", link=o), E("esc/victim", data=b"pwn")],
                                    None, {o.lstrip("/") + "/victim": b"pwn"}),
        "symlink-then-write": ([E("vl", "l", link=f"{o}/victim"), E("vl", data=b"pwn")],
                               None, {"vl": b"pwn"}),
        "symlink-then-dir": ([E("dl", "l", link=o), E("dl/", "d", mode=0o777)], None, {}),
        "symlink-then-chmod-hardlink": ([E("cl", "l", link=f"{o}/victim"), E("cl2", "h", link="cl"),
                                         E("cl2", data=b"pwn", mode=0o777)], None, {"cl2": b"pwn"}),
        "hardlink-absolute": ([E("hl", "h", link=f"{o}/victim")], "does not exist", {}),
        "hardlink-outside": ([E("hl", "h", link=f"{up}/victim")], "does not exist", {}),
        "hardlink-via-symlink": ([E("d", "l", link=o), E("hl", "h", link="d/victim")], "does not exist", {}),
        "hardlink-then-write": ([E("hl", "h", link="etc/passwd"), E("hl", data=b"pwn")],
                                None, {"hl": b"pwn", "etc/passwd": None}),
        "whiteout-dotdot": ([E("sub/", "d"), E("sub/.wh..."), E(".wh..")], "invalid whiteout", {}),
        "whiteout-through-symlink": ([E("wl", "l", link=o), E("wl/.wh.victim"),
                                     E("wr", "l", link=up), E("wr/.wh.victim")], None, {}),
        "opaque-through-symlink": ([E("ol", "l", link=o), E("ol/.wh..wh..opq"),
                                    E("or", "l", link=up), E("or/.wh..wh..opq")], None, {}),
        "symlink-loop": ([E("loop", "l", link="loop"), E("loop/x", data=b"pwn")], "too many symlinks", {}),
        "dangling-parent": ([E("dang", "l", link=f"{o}/newdir"), E("dang/x", data=b"pwn")], None,
                            {o.lstrip("/") + "/newdir/x": b"pwn"}),
    }


ATTACKS = list(_attacks(Path("/x")).keys())


@pytest.mark.parametrize("mode", ["copy", "overlay"])
@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_stays_inside(attack: str, mode: str, work: Path, store: Path) -> None:
    outside = work / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"orig")
    os.chmod(outside / "victim", 0o644)
    (outside / "sub").mkdir()
    (outside / "sub" / "keep").write_bytes(b"keep")
    entries, err, want = _attacks(outside)[attack]
    before = dir_state(outside)
    parent_before = sorted(os.listdir(work))

    w = imagefix.OCIWriter(work / "layout")
    base = imagefix.tar_bytes(imagefix.busybox_entries())
    desc = w.image([(base, "gzip"), (imagefix.tar_bytes(entries), "gzip")], imagefix.image_config())
    w.tag(desc, "evil")
    bundle = work / "bundle"
    raised = None
    try:
        image(["image", "unpack", "-q", f"oci:{work / 'layout'}:evil", str(bundle), "--mode", mode], store)
    except OnggiError as e:
        raised = str(e)
    try:
        assert dir_state(outside) == before, "something outside the rootfs changed"
        assert sorted(os.listdir(work)) == sorted(parent_before + ["bundle", "layout", "store"]) or \
            sorted(os.listdir(work)) == sorted(parent_before + ["layout", "store"])
        assert os.stat(outside / "victim").st_nlink == 1
        if err:
            assert raised is not None and err in raised, raised
            assert "\n" not in raised
            assert not (bundle / "config.json").exists()
        else:
            assert raised is None, raised
            root = bundle / "rootfs"
            for rel, content in want.items():
                p = root / rel
                if content is None:
                    assert p.read_bytes() != b"pwn"
                else:
                    assert not p.is_symlink() and p.read_bytes() == content, rel
    finally:
        if mode == "overlay" and (bundle / "config.json").exists():
            image(["image", "unmount", str(bundle)], store)
