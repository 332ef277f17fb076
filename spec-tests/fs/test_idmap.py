"""idmapped bind mounts: "idmap" (the mount itself) and "ridmap" (and every submount)."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

MAPS = {
    "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 10}],
    "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 10}],
}


@pytest.fixture
def volume(tmp_path):
    vol = tmp_path / "vol"
    (vol / "sub").mkdir(parents=True)
    for name, owner in (("root-file", 0), ("one-file", 1)):
        (vol / name).write_text(name)
        os.chown(vol / name, owner, owner)
    return vol


def test_idmap_maps_file_owners(fsb, volume):
    fsb.mount("/vol", "bind", str(volume), ["bind", "idmap"], **MAPS)
    r = fsb.sh("stat -c '%n %u %g' /vol/root-file /vol/one-file; "
               "grep ' /vol ' /proc/self/mountinfo")
    assert r.rc == 0, r.err
    assert "/vol/root-file 1000 2000" in r.out
    assert "/vol/one-file 1001 2001" in r.out
    assert ",idmapped " in r.out
    # the host's view of the files is unchanged
    assert os.stat(volume / "root-file").st_uid == 0


@pytest.fixture
def volume_with_submount(volume):
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(volume / "sub")], check=True)
    try:
        (volume / "sub" / "root-file").write_text("x")
        yield volume
    finally:
        subprocess.run(["umount", "-l", str(volume / "sub")], check=False)


def _idmappable(path) -> str:
    """"" when the kernel can idmap the mount at `path`, else why not (a tmpfs needs Linux
    >= 6.3; Debian 12's 6.1 refuses it with EINVAL). Probed on a detached clone."""
    from types import SimpleNamespace as NS

    from runtime.linux import idmap

    m = [NS(container_id=0, host_id=1000, size=10)]
    try:
        os.close(idmap.open_tree(str(path), m, m, False, False))
    except OSError as e:
        return e.strerror or str(e)
    return ""


@pytest.mark.parametrize("opt,sub_uid", [("ridmap", "1000"), ("idmap", "0")])
def test_ridmap_maps_submounts_and_idmap_does_not(fsb, volume_with_submount, opt, sub_uid):
    why = _idmappable(volume_with_submount / "sub") if opt == "ridmap" else ""
    if why:
        pytest.skip(f"this kernel cannot idmap-mount a tmpfs (Linux >= 6.3 can): {why}")
    fsb.mount("/r", "bind", str(volume_with_submount), ["rbind", opt], **MAPS)
    r = fsb.sh("stat -c '%n %u' /r/root-file /r/sub/root-file")
    assert r.rc == 0, r.err
    assert "/r/root-file 1000" in r.out
    assert f"/r/sub/root-file {sub_uid}" in r.out


def test_idmap_needs_mappings_and_a_bind(fsb, volume):
    fsb.mount("/vol", "tmpfs", "tmpfs", ["idmap"], **MAPS)
    assert re.search(r"mounts\[\d+\]", fsb.error())


def test_idmap_in_a_user_namespace_shows_the_container_root(fsb, volume):
    from test_devices import USERNS_MAP, userns_config

    userns_config(fsb)
    fsb.mount("/vol", "bind", str(volume), ["bind", "idmap"],
              uidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}],
              gidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}])
    r = fsb.sh("stat -c '%n %u %g' /vol/root-file /vol/one-file; touch /vol/new && echo ok",
               userns=USERNS_MAP)
    assert r.rc == 0, r.err
    assert "/vol/root-file 0 0" in r.out
    assert "/vol/one-file 1 1" in r.out
    # container root writes through the mapping as host root
    assert "ok" in r.out
    assert os.stat(volume / "new").st_uid == 0
