"""The typed parse: semantic rules the schema cannot state, each named by its field."""

from __future__ import annotations

import pytest

from runtime import spec
from runtime.errors import ConfigError
from runtime.spec_default import default_spec


@pytest.fixture
def bundle_dir(tmp_path):
    (tmp_path / "rootfs").mkdir()
    return tmp_path


def _with(mutate):
    doc = default_spec()
    mutate(doc)
    return doc


_NS = len(default_spec()["linux"]["namespaces"])  # the index of one more namespace
CASES = [
    ("root.path", lambda d: d["root"].update(path="missing")),
    ("process.args", lambda d: d["process"].update(args=[])),
    ("process.cwd", lambda d: d["process"].update(cwd="relative")),
    ("process.capabilities.bounding", lambda d: d["process"]["capabilities"]["bounding"].append("CAP_BOGUS")),
    ("process.rlimits[0].type", lambda d: d["process"]["rlimits"][0].update(type="RLIMIT_BOGUS")),
    ("process.rlimits[0]", lambda d: d["process"]["rlimits"][0].update(soft=2048)),
    (f"linux.namespaces[{_NS}].type", lambda d: d["linux"]["namespaces"].append({"type": "pid"})),
    (f"linux.namespaces[{_NS}].type", lambda d: d["linux"]["namespaces"].append({"type": "bogus"})),
    (f"linux.namespaces[{_NS}].path", lambda d: d["linux"]["namespaces"].append({"type": "time", "path": "rel"})),
    ("hostname", lambda d: d["linux"].update(namespaces=[{"type": "mount"}])),
    ("linux.uidMappings", lambda d: d["linux"]["namespaces"].append({"type": "user"})),
    ("linux.timeOffsets", lambda d: d["linux"].update(timeOffsets={"monotonic": {"secs": 1}})),
    ("linux.sysctl.net.ipv4.ip_forward", lambda d: (d["linux"].update(sysctl={"net.ipv4.ip_forward": "1"}),
                                                    d["linux"]["namespaces"].remove({"type": "network"}))),
    ("ociVersion", lambda d: d.update(ociVersion="2.0.0")),
    ("mounts[0].destination", lambda d: d["mounts"][0].pop("destination")),
    ("linux.devices[0]", lambda d: d["linux"].update(devices=[{"path": "/dev/x", "type": "c"}])),
]


@pytest.mark.parametrize("field,mutate", CASES, ids=[c[0] for c in CASES])
def test_bad_config_names_the_field(bundle_dir, field, mutate):
    with pytest.raises(ConfigError) as exc:
        spec.parse(_with(mutate), str(bundle_dir))
    assert exc.value.field == field, str(exc.value)
    assert "\n" not in str(exc.value)


def test_default_spec_parses(bundle_dir):
    cfg = spec.parse(default_spec(), str(bundle_dir))
    assert cfg.root_path == str(bundle_dir / "rootfs")
    assert cfg.process.args == ("sh",)
    assert cfg.process.capabilities.bounding == (29, 5, 10)
    assert cfg.linux.ns("pid") is not None and cfg.linux.ns("user") is None
    assert cfg.process.rlimits[0].resource == 7


def test_rootless_spec_parses(bundle_dir):
    cfg = spec.parse(default_spec(rootless=True), str(bundle_dir))
    assert cfg.linux.ns("user") is not None and cfg.linux.ns("network") is None
    assert cfg.linux.uid_mappings[0].size == 1
