"""The config.json files podman 4.3 and containerd 1.6 really write (recorded with
`conformance/engines record`, see configs/) run unchanged with onggi.

Only what is specific to the recording host is filled in: the container id, containerd's
namespace, podman's per-container files ({userdata}: hosts, resolv.conf, shm...) and the
network namespace file ({netns}); root.path is the test bundle's rootfs. Each container must
print what the engine's container printed and exit 0, leaving no state behind.
($ONGGI_ENGINE_RUNTIME=runc runs them with runc instead.)"""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from engine_env import cgroups

CONFIGS = sorted((Path(__file__).parent / "configs").glob("*.json"))
DIR_MOUNTS = {"/dev/shm"}  # the other {userdata} sources are files
FILE_TEXT = {"hosts": "127.0.0.1 localhost\n", "resolv.conf": "nameserver 127.0.0.1\n",
             "hostname": "engine-config\n", "passwd": "root:x:0:0:root:/root:/bin/sh\n",
             "group": "root:x:0:\n"}


@pytest.fixture
def netns():
    """A network namespace file like podman's /run/netns/netns-<uuid>."""
    name = f"onggi-cfg-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield f"/run/netns/{name}"
    subprocess.run(["ip", "netns", "delete", name], check=False)


def fill(text: str, subs: dict[str, str]) -> dict:
    for key, value in subs.items():
        text = text.replace("{" + key + "}", value)
    return json.loads(text)


def userdata_files(cfg: dict, userdata: Path) -> None:
    """Create the per-container files podman would have made, where the config binds them."""
    for m in cfg["mounts"]:
        if not m["source"].startswith(str(userdata) + "/"):
            continue
        src = Path(m["source"])
        if m["destination"] in DIR_MOUNTS:
            src.mkdir(parents=True, exist_ok=True)
        else:
            src.parent.mkdir(parents=True, exist_ok=True)
            src.write_text(FILE_TEXT.get(src.name, ""))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_engine_config_runs_unchanged(config, tmp_path, busybox_rootfs, state_root, netns,
                                      runtime):
    if os.geteuid() != 0:
        pytest.skip("real containers need root")
    cid = uuid.uuid4().hex  # podman's ids are 64 hex digits; containerd's are names
    ns = f"onggi-cfg-{uuid.uuid4().hex[:8]}"
    userdata = tmp_path / "userdata"
    cfg = fill(config.read_text(), {"id": cid, "ns": ns, "userdata": str(userdata),
                                    "netns": netns, "base": str(tmp_path)})
    userdata_files(cfg, userdata)
    bundle = tmp_path / "bundle"
    shutil.copytree(busybox_rootfs, bundle / "rootfs", symlinks=True)
    (bundle / "config.json").write_text(json.dumps(cfg))
    parent = cfg["linux"]["cgroupsPath"].rsplit("/", 1)[0]
    before = cgroups.existing(parent)
    # a terminal container is run from a terminal, as a person would (runc insists)
    master, slave = pty.openpty() if cfg["process"].get("terminal") else (None, None)
    try:
        res = subprocess.run([runtime.path, "--root", str(state_root), "run", "-b", str(bundle),
                              cid], capture_output=True, text=True, timeout=60,
                             stdin=slave if slave is not None else subprocess.DEVNULL)
    finally:
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)
        subprocess.run([runtime.path, "--root", str(state_root), "delete", "--force", cid],
                       capture_output=True)
        cgroups.remove_we_made(cfg["linux"]["cgroupsPath"], set(), recursive=True)
        cgroups.remove_we_made(parent, before)
    assert res.returncode == 0, f"{config.name}: exit {res.returncode}: {res.stderr}"
    assert res.stdout.replace("\r\n", "\n") == "engine-config-ok\n", res.stdout
    assert os.listdir(state_root) == []
