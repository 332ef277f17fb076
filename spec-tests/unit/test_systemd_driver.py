"""The systemd cgroup driver without systemd: cgroupsPath "slice:prefix:name" (runc's rules),
the unit's properties as they go over D-Bus (signature and value), the annotations, and the
refusals. The driver itself runs for real in the v2 guest (spec-tests/cgroups/
test_cg_systemd.py); the message serialisation is checked against jeepney's own parser."""

from __future__ import annotations

import pytest

from runtime.cgroups import sdprops as P
from runtime.cgroups import systemd as S
from runtime.cgroups.files import CgroupError
from runtime.cgroups.paths import Layout

U64 = 2**64 - 1


@pytest.mark.parametrize("path, want", [
    ("", ("system.slice", "onggi", "c1")),
    ("system.slice:docker:abc", ("system.slice", "docker", "abc")),
    (":crio:abc", ("system.slice", "crio", "abc")),
    ("machine.slice::abc", ("machine.slice", "", "abc")),
])
def test_cgroups_path_parts(path, want):
    assert S.parse(path, "c1") == want


@pytest.mark.parametrize("path, words", [
    ("a:b", 'expected cgroupsPath to be of format "slice:prefix:name" for systemd cgroups, '
            "got 'a:b' instead"),
    ("/abs/path", "expected cgroupsPath to be of format"),
    ("a.slice:b:c:d", "expected cgroupsPath to be of format"),
    ("system.slice:p:", "the name part is empty"),
    ("system.slice:p:x.slice", "x.slice is a slice, which cannot hold processes"),
])
def test_bad_cgroups_paths(path, words):
    with pytest.raises(CgroupError) as e:
        S.parse(path, "c1")
    assert str(e.value).startswith("linux.cgroupsPath: ") and words in str(e.value)


@pytest.mark.parametrize("slice_, want", [
    ("system.slice", "/system.slice"),
    ("a-b-c.slice", "/a.slice/a-b.slice/a-b-c.slice"),
    ("-.slice", "/"),
    ("machine.slice", "/machine.slice"),
])
def test_expand_slice(slice_, want):
    assert S.expand_slice(slice_) == want


@pytest.mark.parametrize("slice_", ["system", "a/b.slice", "a--b.slice", "-a.slice", "a-.slice",
                                    ".slice", "a b.slice"])
def test_invalid_slices(slice_):
    with pytest.raises(CgroupError, match=f"linux.cgroupsPath: invalid slice name: {slice_}"):
        S.expand_slice(slice_)


def test_scope_dir_and_unit_names():
    assert S.unit_name("docker", "abc") == "docker-abc.scope"
    assert S.unit_name("", "abc") == "-abc.scope"  # runc's too
    assert S.scope_dir("/sys/fs/cgroup", "a-b.slice", "p-x.scope") == \
        "/sys/fs/cgroup/a.slice/a-b.slice/p-x.scope"
    assert S.scope_dir("/sys/fs/cgroup", "-.slice", "p-x.scope") == "/sys/fs/cgroup/p-x.scope"
    with pytest.raises(CgroupError, match="not a valid systemd unit name"):
        S.unit_name("p", "a/b")
    with pytest.raises(CgroupError, match="not a valid systemd unit name"):
        S.unit_name("p", "x" * 300)


def test_unit_properties_as_runc_sends_them():
    props = dict(P.unit_properties("onggi-c1.scope", "system.slice", "c1", 4242))
    assert props == {
        "Description": ("s", "libcontainer container c1"),
        "Slice": ("s", "system.slice"), "Delegate": ("b", True), "PIDs": ("au", [4242]),
        "MemoryAccounting": ("b", True), "CPUAccounting": ("b", True),
        "IOAccounting": ("b", True), "TasksAccounting": ("b", True),
        "DefaultDependencies": ("b", False)}


def _props(res: dict, version: int = 252, **kw) -> dict:
    out = P.resource_properties(res, version, **kw)
    names = [n for n, _ in out]
    assert len(names) == len(set(names)), names  # systemd takes the last; none twice
    return dict(out)


def test_resources_become_properties():
    got = _props({"memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728},
                  "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-2,9",
                          "mems": "0"},
                  "pids": {"limit": 100}, "blockIO": {"weight": 500}}, skip_devices=True)
    assert got == {
        "MemoryMax": ("t", 67108864), "MemoryLow": ("t", 33554432),
        "MemorySwapMax": ("t", 67108864),  # swap - limit, as on cgroupfs
        "CPUWeight": ("t", 100),  # shares 1024, the formula of runc >= 1.4
        "CPUQuotaPeriodUSec": ("t", 100000), "CPUQuotaPerSecUSec": ("t", 500000),
        "TasksMax": ("t", 100),
        "AllowedCPUs": ("ay", bytes([0b00000111, 0b00000010])),  # little-endian bitmask
        "AllowedMemoryNodes": ("ay", b"\x01"),
        "IOWeight": ("t", 4950)}  # blkio 500 on io.weight's scale, as cgroupfs gets it


@pytest.mark.parametrize("res, want", [
    ({"memory": {"limit": -1}}, {"MemoryMax": ("t", U64), "MemorySwapMax": ("t", U64)}),
    ({"memory": {"limit": -1, "swap": -1}}, {"MemoryMax": ("t", U64),
                                             "MemorySwapMax": ("t", U64)}),
    ({"pids": {"limit": -1}}, {"TasksMax": ("t", U64)}),
    ({"pids": {"limit": 0}}, {"TasksMax": ("t", 1)}),  # systemd refuses 0
    ({"cpu": {"quota": -1, "period": 100000}}, {"CPUQuotaPeriodUSec": ("t", 100000),
                                                "CPUQuotaPerSecUSec": ("t", U64)}),
    ({"cpu": {"quota": 12345}}, {"CPUQuotaPerSecUSec": ("t", 130000)}),  # 10 ms steps, up
    ({"cpu": {"idle": 1, "shares": 512}}, {"CPUWeight": ("t", 0)}),
    ({"unified": {"memory.high": "max", "pids.max": "7", "cpu.weight": "50",
                  "cpu.max": "max 50000", "io.max": "8:0 rbps=1"}},
     {"MemoryHigh": ("t", U64), "TasksMax": ("t", 7), "CPUWeight": ("t", 50),
      "CPUQuotaPeriodUSec": ("t", 50000), "CPUQuotaPerSecUSec": ("t", U64)}),
])
def test_special_values(res, want):
    assert _props(res, skip_devices=True) == want


def test_old_systemd_gets_fewer_properties():
    res = {"cpu": {"period": 100000, "quota": 50000, "cpus": "0", "idle": 1}}
    got = _props(res, version=241, skip_devices=True)
    assert got == {"CPUQuotaPerSecUSec": ("t", 500000)}  # no period, cpuset, idle weight


def test_quota_for_cgroupfs_follows_systemds_rounding():
    assert P.cpu_quota(12345, 100000, 252) == (
        [("CPUQuotaPeriodUSec", ("t", 100000)), ("CPUQuotaPerSecUSec", ("t", 130000))], 13000)
    assert P.cpu_quota(50000, 0, 252) == ([("CPUQuotaPerSecUSec", ("t", 500000))], 50000)
    assert P.cpu_quota(0, 0, 252) == ([], 0)


def test_devices_as_runc_gives_them_to_systemd():
    deny_all = {"allow": False, "access": "rwm"}
    got = _props({"devices": [deny_all, {"allow": True, "type": "c", "major": 10,
                                         "minor": 229, "access": "rw"},
                              {"allow": True, "type": "b", "major": 8, "access": "r"}]})
    assert got["DevicePolicy"] == ("s", "strict")
    sig, allow = got["DeviceAllow"]
    assert sig == "a(ss)"
    assert ("/dev/char/10:229", "rw") in allow and ("block-8", "r") in allow
    # the defaults runc always adds
    assert {("char-*", "m"), ("block-*", "m"), ("/dev/char/1:3", "rwm"),
            ("char-136", "rwm"), ("/dev/char/5:2", "rwm")} <= set(allow)
    # allow-all: no device policy at all
    got = _props({"devices": [{"allow": True, "access": "rwm"}]})
    assert got == {"DevicePolicy": ("s", "auto"), "DeviceAllow": ("a(ss)", [])}
    # a deny list: systemd cannot say it, its scope denies all (our eBPF program rules)
    got = _props({"devices": [{"allow": True, "access": "rwm"},
                              {"allow": False, "type": "c", "major": 10, "minor": 229,
                               "access": "rwm"}]})
    assert got == {"DevicePolicy": ("s", "strict"), "DeviceAllow": ("a(ss)", [])}
    assert "DevicePolicy" not in _props({"devices": [deny_all]}, skip_devices=True)


def test_device_groups_for_old_systemd():
    devs = "Character devices:\n  1 mem\n136 pts\n\nBlock devices:\n  8 sd\n"
    assert P._device_group("c", 136, devs) == "char-pts"
    assert P._device_group("b", 8, devs) == "block-sd"
    assert P._device_group("c", 8, devs) == ""


@pytest.mark.parametrize("cpus, want", [("0", b"\x01"), ("7", b"\x80"), ("8", b"\x00\x01"),
                                        ("0-3, 8", b"\x0f\x01"), ("1,1", b"\x02")])
def test_range_to_bits(cpus, want):
    assert P.range_to_bits(cpus, "cpu.cpus") == want


@pytest.mark.parametrize("cpus", ["", "a", "3-1", "-1", "1-"])
def test_range_to_bits_refusals(cpus):
    with pytest.raises(CgroupError, match="linux.resources.cpu.cpus: "):
        P.range_to_bits(cpus, "cpu.cpus")


@pytest.mark.parametrize("text, want", [
    ("true", ("b", True)), ("false", ("b", False)), ("5", ("i", 5)), ("uint64 5", ("t", 5)),
    ("@t 5", ("t", 5)), ("uint32 7", ("u", 7)), ("'inactive-or-failed'", ("s", "inactive-or-failed")),
    ('"a b"', ("s", "a b")), ("['a', 'b']", ("as", ["a", "b"])), ("[]", ("as", [])),
    ("1.5", ("d", 1.5)), ("string 'x'", ("s", "x")),
])
def test_gvariant_text(text, want):
    assert P.parse_gvariant(text, "x") == want


@pytest.mark.parametrize("text", ["uint64 -1", "byte 300", "yes", "{'a': 1}", "'open", "@t 'x'",
                                  "(1, 2)", "[1, 2]"])
def test_gvariant_refusals(text):
    with pytest.raises(CgroupError, match="cannot parse .* as a GVariant value"):
        P.parse_gvariant(text, "x")


def test_annotations():
    got = P.annotation_properties({
        "org.systemd.property.TimeoutStopSec": "uint64 20",
        "org.systemd.property.CollectMode": "'inactive-or-failed'",
        "org.systemd.property.CPUQuotaPerSecUSec": "uint64 300000",
        "other": "x"})
    assert got == [("TimeoutStopUSec", ("t", 20000000)),  # Sec -> USec, times 10^6
                   ("CollectMode", ("s", "inactive-or-failed")),
                   ("CPUQuotaPerSecUSec", ("t", 300000))]
    for bad, words in (("org.systemd.property.ab", "three or more letters"),
                       ("org.systemd.property.Foo1", "three or more letters"),
                       ("org.systemd.property.TimeoutStopSec", "takes a number of seconds")):
        with pytest.raises(CgroupError) as e:
            P.annotation_properties({bad: "'x'" if "Sec" in bad else "1"})
        assert str(e.value).startswith(f"annotations[{bad!r}]: ") and words in str(e.value)


def test_properties_serialise_as_dbus_reads_them():
    """StartTransientUnit's body as jeepney serialises it, parsed back: the signatures are
    the ones systemd's bus API takes (a(sv) with (s, value) variants)."""
    from jeepney import DBusAddress, Parser, new_method_call

    props = (P.unit_properties("p-x.scope", "system.slice", "x", 7)
             + P.resource_properties({"memory": {"limit": 1 << 26},
                                      "cpu": {"cpus": "0-1"},
                                      "devices": [{"allow": False, "access": "rwm"}]}, 252))
    addr = DBusAddress("/org/freedesktop/systemd1", bus_name="org.freedesktop.systemd1",
                       interface="org.freedesktop.systemd1.Manager")
    msg = new_method_call(addr, "StartTransientUnit", "ssa(sv)a(sa(sv))",
                          ("p-x.scope", "replace", props, []))
    parser = Parser()
    parser.add_data(msg.serialise(serial=1))
    back = parser.get_next_message()
    assert back.body[0] == "p-x.scope" and back.body[2] == props


def test_refused_on_v1_and_rootless(monkeypatch, tmp_path):
    from runtime.cgroups import Options, paths
    from runtime.spec import parse

    (tmp_path / "rootfs").mkdir()
    cfg = parse({"ociVersion": "1.0.0", "root": {"path": "rootfs"},
                 "process": {"args": ["true"], "cwd": "/"},
                 "linux": {"cgroupsPath": "system.slice:p:x"}}, str(tmp_path))
    for mode in ("hybrid", "v1"):
        monkeypatch.setattr(paths, "host_layout", lambda m=mode: Layout(m))
        with pytest.raises(CgroupError, match=f"pure cgroup v2 host; this one is {mode}"):
            S.SystemdManager.for_create(cfg, "x", Options(systemd=True))
    monkeypatch.setattr(paths, "host_layout", lambda: Layout("v2", "/sys/fs/cgroup"))
    with pytest.raises(CgroupError, match="rootless containers"):
        S.SystemdManager.for_create(cfg, "x", Options(systemd=True, rootless="true"))
