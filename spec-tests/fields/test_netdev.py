"""linux.netDevices: a host link moved into the container, renamed, with its address and
up; what happens to it on delete; the refusals. Tests use a veth pair with unique names
(this kernel has no dummy driver) and remove it whatever happens."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _exists(name: str) -> bool:
    return _ip("link", "show", "dev", name, check=False).returncode == 0


def _gone(*names: str, timeout: float = 5) -> bool:
    """The kernel tears a dead network namespace down asynchronously (cleanup_net)."""
    deadline = time.monotonic() + timeout
    while any(_exists(n) for n in names):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def veth():
    """(name, peer): a veth pair on the host, the first end with 10.77.x.1/24 and up."""
    name = "ov" + uuid.uuid4().hex[:8]
    peer = name + "p"
    _ip("link", "add", name, "type", "veth", "peer", "name", peer)
    try:
        _ip("addr", "add", f"10.77.{os.getpid() % 250}.1/24", "dev", name)
        _ip("link", "set", name, "up")
        yield name, peer
    finally:
        for n in (name, peer):
            if _exists(n):
                _ip("link", "del", n, check=False)


def _net_config(bundle, devices: dict) -> None:
    bundle.config["linux"]["netDevices"] = devices
    ns = bundle.config["linux"]["namespaces"]
    if not any(n["type"] == "network" for n in ns):
        ns.append({"type": "network"})


def test_moved_renamed_with_address_and_up(bundle, veth):
    name, peer = veth
    _net_config(bundle, {name: {"name": "ctr0"}})
    cid = bundle.create(args=["sh", "-c", "ip -o addr show dev ctr0; ip -o link show dev ctr0"])
    try:
        assert not _exists(name)  # gone from the host while the container has it
        st = json.loads((bundle.root / cid / "state.json").read_text())
        assert st["net_devices"][0]["host"] == name and st["net_devices"][0]["name"] == "ctr0"
        assert st["net_devices"][0]["kind"] == "veth"
        bundle.onggi("start", cid, check=True)
        bundle.wait_stopped(cid)
        out = bundle.output(cid)
        assert f"inet 10.77.{os.getpid() % 250}.1/24" in out
        assert "ctr0" in out and ",UP" in out
    finally:
        bundle.onggi("delete", "--force", cid, check=True)
    # a virtual device dies with the container's network namespace (so does its peer);
    # a physical one would come back to the host under its own name
    assert _gone(name, peer)


def test_name_defaults_to_the_host_name(bundle, veth):
    name, _ = veth
    _net_config(bundle, {name: {}})
    res = bundle.run(["ip", "-o", "link", "show", "dev", name])
    assert res.returncode == 0, res.stderr
    assert f": {name}@" in res.stdout


def test_missing_link_is_refused(bundle):
    missing = "ov" + uuid.uuid4().hex[:8]
    _net_config(bundle, {missing: {"name": "ctr0"}})
    res = bundle.run(["true"])
    assert res.returncode != 0
    assert res.stderr == (f"onggi: linux.netDevices.{missing}: there is no link named "
                          f"{missing!r} on the host\n")
    assert os.listdir(bundle.root) == []


def test_name_taken_in_the_container_is_refused_and_the_link_stays(bundle, veth):
    name, _ = veth
    _net_config(bundle, {name: {"name": "lo"}})
    res = bundle.run(["true"])
    assert res.returncode != 0
    assert res.stderr.startswith(f"onggi: linux.netDevices.{name}: ")
    assert "already has a link named 'lo'" in res.stderr
    assert len(res.stderr.splitlines()) == 1
    assert _exists(name) and ",UP," in _ip("link", "show", "dev", name).stdout  # untouched
    assert os.listdir(bundle.root) == []


def test_without_a_network_namespace_is_refused(bundle, veth):
    name, _ = veth
    bundle.config["linux"]["netDevices"] = {name: {}}
    bundle.config["linux"]["namespaces"] = [n for n in bundle.config["linux"]["namespaces"]
                                            if n["type"] != "network"]
    res = bundle.run(["true"])
    assert res.returncode != 0
    assert res.stderr.startswith("onggi: config: linux.netDevices: needs a network namespace")
    assert _exists(name)


@pytest.mark.parametrize("bad", ["a/b", "x" * 16, "..", "with space"])
def test_bad_names_are_refused(bundle, bad):
    _net_config(bundle, {"eth9": {"name": bad}})
    res = bundle.run(["true"])
    assert res.returncode != 0
    assert res.stderr.startswith("onggi: config: linux.netDevices.eth9.name: invalid network "
                                 "device name")


def test_failed_create_after_the_move_leaves_nothing(bundle, veth):
    """The move succeeds, a later step fails: the container's namespace goes away and the
    device with it (virtual), and no state is left."""
    name, peer = veth
    _net_config(bundle, {name: {"name": "ctr0"}})
    bundle.config["process"]["cwd"] = "/etc/passwd/x"  # fails in the init, after the move
    res = bundle.run(["true"])
    assert res.returncode != 0
    assert os.listdir(bundle.root) == []
    assert _gone(name, peer)


def test_give_back_renames_a_returned_physical_device(monkeypatch):
    """What delete does for a physical device, which this VM cannot offer: once the kernel
    returns it (under the name it had inside), it gets its host name back. Simulated with a
    veth end recorded as physical (no kind) that never left."""
    from runtime.linux import netdev

    name = "ov" + uuid.uuid4().hex[:8]
    _ip("link", "add", name, "type", "veth", "peer", "name", name + "p")
    try:
        addr = _ip("-j", "link", "show", "dev", name).stdout
        mac = json.loads(addr)[0]["address"]
        moved = [{"host": "ob" + name[2:], "name": name, "kind": "", "address": mac}]
        assert netdev.give_back(moved, wait=1) == []
        assert _exists("ob" + name[2:])
        gone = [{"host": "x", "name": "nope", "kind": "", "address": "02:00:00:00:00:01"}]
        assert "not back on the host" in netdev.give_back(gone, wait=0.1)[0]
    finally:
        for n in (name, "ob" + name[2:]):
            if _exists(n):
                _ip("link", "del", n, check=False)
