"""linux.resources.devices: on v1 devices.list keeps the config's order, then runc's default
allows (runtime-tools linux_cgroups_devices reads that order; runc 1.1.5 sorts and fails it);
inside, a device node is usable only when a rule allows it."""

from __future__ import annotations

from pathlib import Path

import pytest
from cgtest import cgpaths, resources, running, v1_host

DENY_ALL = {"allow": False, "access": "rwm"}
FUSE = {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666}


@v1_host
def test_devices_list_keeps_the_config_order(bundle):
    resources(bundle, devices=[
        DENY_ALL,
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
        {"allow": True, "type": "b", "major": 8, "minor": 20, "access": "rw"},
        {"allow": True, "type": "b", "major": 10, "minor": 200, "access": "r"},
    ])
    cid = running(bundle, start=False)
    listed = Path(cgpaths(bundle, cid)["devices"], "devices.list").read_text().splitlines()
    assert listed == [
        "c 10:229 rwm", "b 8:20 rw", "b 10:200 r",  # the config's rules, in its order
        "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:8 rwm", "c 1:7 rwm", "c 5:0 rwm", "c 1:5 rwm",
        "c 1:9 rwm", "c 136:* rwm", "c 5:2 rwm", "c 10:200 rwm",  # then runc's defaults
    ]


@v1_host
def test_allow_all(bundle):
    resources(bundle, devices=[{"allow": True, "access": "rwm"}])
    cid = running(bundle, start=False)
    assert Path(cgpaths(bundle, cid)["devices"], "devices.list").read_text() == "a *:* rwm\n"


def _open_fuse(bundle) -> str:
    bundle.config["linux"]["devices"] = [FUSE]
    r = bundle.sh("(exec 3<>/dev/fuse) && echo opened; cat /dev/null && echo null-ok")
    return r.stdout + r.stderr


@pytest.mark.guest_too
def test_a_device_without_an_allow_rule_cannot_be_opened(bundle):
    resources(bundle, devices=[DENY_ALL])
    out = _open_fuse(bundle)
    assert "opened" not in out and "Operation not permitted" in out, out
    assert "null-ok" in out  # the defaults still allow /dev/null


@pytest.mark.guest_too
def test_an_allow_rule_opens_it(bundle):
    resources(bundle, devices=[DENY_ALL, {"allow": True, "type": "c", "major": 10,
                                          "minor": 229, "access": "rw"}])
    assert "opened" in _open_fuse(bundle)


@pytest.mark.guest_too
def test_a_later_deny_wins(bundle):
    resources(bundle, devices=[DENY_ALL,
                               {"allow": True, "type": "c", "major": 10, "minor": 229,
                                "access": "rwm"},
                               {"allow": False, "type": "c", "major": 10, "minor": 229,
                                "access": "rwm"}])
    out = _open_fuse(bundle)
    assert "opened" not in out and "Operation not permitted" in out, out
