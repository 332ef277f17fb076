"""linux.intelRdt: refused without resctrl (this host has none); the resctrl writes, checked
against a fake resctrl tree."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from runtime.errors import ConfigError, OnggiError
from runtime.linux import resctrl
from runtime.spec import IntelRdt


@pytest.mark.skipif(resctrl.is_resctrl(), reason="resctrl is mounted here")
def test_refused_without_resctrl(bundle):
    bundle.config["linux"]["intelRdt"] = {"closID": "guaranteed_group"}
    res = bundle.run(["true"])
    assert res.returncode != 0
    assert res.stderr == ("onggi: config: linux.intelRdt: resctrl is not mounted at "
                          "/sys/fs/resctrl: Intel RDT is not available on this host\n")
    assert os.listdir(bundle.root) == []


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A resctrl tree with CAT, MBA and monitoring; the mount check accepts it."""
    for d in ("info/L3", "info/MB", "info/L3_MON"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "info/last_cmd_status").write_text("ok\n")
    monkeypatch.setattr(resctrl, "is_resctrl", lambda root=None: True)
    return tmp_path


def _group(root, name, schemata=""):
    """A CLOS group as the kernel shows one: schemata, tasks, mon_groups/."""
    d = root / name
    (d / "mon_groups").mkdir(parents=True)
    (d / "schemata").write_text(schemata)
    (d / "tasks").write_text("")
    return d


def _kernel_mkdir(monkeypatch):
    """What resctrl does on mkdir: the group's files appear in it."""
    real = os.mkdir

    def mkdir(path, mode=0o777):
        real(path, mode)
        mon = os.path.basename(os.path.dirname(path)) == "mon_groups"
        for f in ("tasks",) if mon else ("schemata", "tasks"):
            open(os.path.join(path, f), "w").close()
        if not mon:
            real(os.path.join(path, "mon_groups"))

    monkeypatch.setattr(os, "mkdir", mkdir)


def test_own_group_written_and_removed(fake, monkeypatch):
    rdt = IntelRdt(None, "L3:0=ff;1=ff", "MB:0=50", ("L3:0=f0",), True)
    plan = resctrl.prepare(rdt, "c1", str(fake))
    assert plan.path == str(fake / "c1")
    _kernel_mkdir(monkeypatch)
    rec: dict = {}
    resctrl.apply(plan, 4242, rec)
    assert (fake / "c1/schemata").read_text() == "L3:0=ff;1=ff\nMB:0=50\nL3:0=f0\n"
    assert (fake / "c1/tasks").read_text() == "4242"
    assert (fake / "c1/mon_groups/c1/tasks").read_text() == "4242"
    assert rec == {"path": str(fake / "c1"), "created": True,
                   "mon": str(fake / "c1/mon_groups/c1")}
    removed, real_rmdir = [], os.rmdir

    def rmdir(path):  # resctrl's rmdir takes a group with its files
        removed.append(path)
        for top, dirs, files in os.walk(path, topdown=False):
            for f in files:
                os.unlink(os.path.join(top, f))
            for d in dirs:
                real_rmdir(os.path.join(top, d))
        real_rmdir(path)

    monkeypatch.setattr(os, "rmdir", rmdir)
    resctrl.remove(rec)
    assert removed == [str(fake / "c1/mon_groups/c1"), str(fake / "c1")]
    assert not (fake / "c1").exists()


def test_existing_clos_with_the_same_schemata_is_joined_and_kept(fake):
    d = _group(fake, "gold", "    L3:0=0ff;1=0ff\n    MB:0= 50;1=100\n")
    rdt = IntelRdt("gold", "L3:0=ff", "MB:0=50", (), False)
    plan = resctrl.prepare(rdt, "c1", str(fake))
    rec: dict = {}
    resctrl.apply(plan, 7, rec)
    assert (d / "tasks").read_text() == "7"
    assert "created" not in rec
    resctrl.remove(rec)
    assert d.is_dir()  # a closID is never removed


def test_existing_clos_with_other_schemata_is_refused(fake):
    _group(fake, "gold", "L3:0=0f\n")
    with pytest.raises(ConfigError) as e:
        resctrl.prepare(IntelRdt("gold", "L3:0=ff"), "c1", str(fake))
    assert e.value.field == "linux.intelRdt.closID" and "other schemata" in e.value.reason


def test_missing_clos_without_schema_is_refused(fake):
    with pytest.raises(ConfigError) as e:
        resctrl.prepare(IntelRdt("silver"), "c1", str(fake))
    assert e.value.field == "linux.intelRdt.closID" and "does not exist" in e.value.reason


def test_missing_clos_with_schema_is_made_but_not_removed(fake, monkeypatch):
    plan = resctrl.prepare(IntelRdt("silver", None, "MB:0=20"), "c1", str(fake))
    rec: dict = {}
    _kernel_mkdir(monkeypatch)
    resctrl.apply(plan, 9, rec)
    assert (fake / "silver/schemata").read_text() == "MB:0=20\n"
    assert rec.get("created") is False
    resctrl.remove(rec)
    assert (fake / "silver").is_dir()


def test_root_clos(fake):
    (fake / "tasks").write_text("")
    plan = resctrl.prepare(IntelRdt("/"), "c1", str(fake))
    rec: dict = {}
    resctrl.apply(plan, 11, rec)
    assert (fake / "tasks").read_text() == "11"


@pytest.mark.parametrize("missing,rdt,field", [
    ("info/L3", IntelRdt(None, "L3:0=ff"), "linux.intelRdt.l3CacheSchema"),
    ("info/MB", IntelRdt(None, None, "MB:0=50"), "linux.intelRdt.memBwSchema"),
    ("info/L3_MON", IntelRdt(None, enable_monitoring=True), "linux.intelRdt.enableMonitoring"),
])
def test_missing_hardware_feature_is_refused(fake, missing, rdt, field):
    (fake / missing).rmdir()
    with pytest.raises(ConfigError) as e:
        resctrl.prepare(rdt, "c1", str(fake))
    assert e.value.field == field


def test_bad_clos_id_is_refused(bundle):
    bundle.config["linux"]["intelRdt"] = {"closID": "a/b"}
    res = bundle.run(["true"])
    assert res.stderr.startswith("onggi: config: linux.intelRdt.closID: invalid CLOS id")


def test_join_puts_a_process_in_the_clos_and_monitoring_groups(fake):
    gold = _group(fake, "gold")
    mon = gold / "mon_groups" / "c1"
    mon.mkdir()
    (mon / "tasks").write_text("")
    resctrl.join({"path": str(gold), "mon": str(mon)}, 4343, str(fake))
    assert (gold / "tasks").read_text() == "4343" and (mon / "tasks").read_text() == "4343"
    (mon / "tasks").unlink()
    with pytest.raises(OnggiError) as e:
        resctrl.join({"path": str(gold), "mon": str(mon)}, 4344, str(fake))
    assert str(e.value) == f"linux.intelRdt: {mon}/tasks: no such file or directory"


def test_exec_joins_the_containers_groups(bundle, tmp_path):
    """What create recorded in state.json's intel_rdt (this host has no resctrl: a fake
    tree stands in for the groups); each exec'd process goes into both groups, as runc's
    setnsProcess puts it."""
    gold = _group(tmp_path, "gold")
    mon = gold / "mon_groups" / "c1"
    mon.mkdir()
    (mon / "tasks").write_text("")
    cid = bundle.create(args=["sleep", "1000"])
    bundle.onggi("start", cid, check=True)
    path = bundle.root / cid / "state.json"
    good = path.read_text()
    doc = json.loads(good)
    doc["intel_rdt"] = {"path": str(gold), "mon": str(mon)}
    path.write_text(json.dumps(doc))
    try:
        with open(tmp_path / "err", "w+") as err:  # the process keeps exec's stdio
            res = bundle.onggi("exec", "-d", "--pid-file", str(tmp_path / "pid"), cid,
                               "sleep", "30", capture_output=False,
                               stdout=subprocess.DEVNULL, stderr=err)
        assert res.returncode == 0, (tmp_path / "err").read_text()
        pid = (tmp_path / "pid").read_text()
        assert (gold / "tasks").read_text() == pid and (mon / "tasks").read_text() == pid
    finally:
        path.write_text(good)
