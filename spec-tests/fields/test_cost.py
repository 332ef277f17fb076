"""A config without these fields pays nothing for them: `create` imports no pyroute2 and
none of the modules that probe the host (LSMs, resctrl, NUMA) or set the new attributes;
a config with them imports exactly what it needs."""

from __future__ import annotations

import subprocess
import uuid

from harness import create_imports

FIELD_MODULES = {"pyroute2", "runtime.linux.execattrs", "runtime.linux.sched",
                 "runtime.linux.lsm", "runtime.linux.resctrl", "runtime.linux.netdev",
                 "runtime.linux.mempolicy", "runtime.linux.personality",
                 "runtime.linux.hostmounts"}


def test_plain_create_imports_none_of_it(bundle):
    imported = create_imports(bundle)
    assert "runtime.launch" in imported  # the measurement works
    assert not imported & FIELD_MODULES, imported & FIELD_MODULES


def test_each_field_imports_only_its_module(bundle):
    bundle.config["process"]["scheduler"] = {"policy": "SCHED_BATCH"}
    imported = create_imports(bundle)
    assert {"runtime.linux.execattrs", "runtime.linux.sched"} <= imported
    assert not imported & {"pyroute2", "runtime.linux.resctrl", "runtime.linux.mempolicy",
                           "runtime.linux.hostmounts"}
    del bundle.config["process"]["scheduler"]
    bundle.config["linux"]["namespaces"] = [n for n in bundle.config["linux"]["namespaces"]
                                            if n["type"] != "mount"]
    imported = create_imports(bundle)
    assert "runtime.linux.hostmounts" in imported
    assert not imported & {"pyroute2", "runtime.linux.execattrs", "runtime.linux.resctrl"}


def test_net_devices_import_pyroute2(bundle):
    name = "ov" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"],
                   check=True)
    try:
        bundle.config["linux"]["netDevices"] = {name: {"name": "eth0"}}
        imported = create_imports(bundle)
        assert "pyroute2" in imported and "runtime.linux.netdev" in imported
    finally:
        for n in (name, name + "p"):
            subprocess.run(["ip", "link", "del", n], capture_output=True)
