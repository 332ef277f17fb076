"""Bad input: one line naming the field or path, a non-zero exit, and nothing left behind."""

from __future__ import annotations

import json
import os

import pytest
from leakcheck import Probe


def _snapshot(bundle) -> tuple:
    """Mounts and processes of this test only: other tests on the machine come and go."""
    probe = Probe(paths=[bundle.path, bundle.root])
    return sorted(probe.mounts()), probe.processes(), sorted(os.listdir(bundle.root))


def _create_fails(bundle, *, raw: str | None = None) -> str:
    if raw is not None:
        (bundle.path / "config.json").write_text(raw)
    else:
        bundle.write()
    before = _snapshot(bundle)
    cid = bundle.new_id()  # unique: the cgroups are named after it
    res = bundle.onggi("create", "-b", str(bundle.path), cid)
    assert res.returncode != 0
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("onggi: "), res.stderr
    assert "Traceback" not in res.stderr
    assert _snapshot(bundle) == before, "create left something behind"
    assert not (bundle.root / cid).exists()
    return lines[0]


def test_invalid_json(bundle):
    msg = _create_fails(bundle, raw='{"ociVersion": ')
    assert "config.json: invalid JSON" in msg


def test_wrong_type_names_the_field(bundle):
    bundle.config["process"]["args"] = "sh"
    assert "process.args: must be of type array" in _create_fails(bundle)


def test_missing_rootfs(bundle):
    bundle.config["root"]["path"] = "nope"
    assert "root.path" in _create_fails(bundle) and "not a directory" in _create_fails(bundle)


def test_missing_config(bundle):
    (bundle.path / "config.json").unlink()
    res = bundle.onggi("create", "-b", str(bundle.path), "x")
    assert res.returncode != 0 and "config.json: no such file or directory" in res.stderr


def test_no_process_is_refused_before_anything_runs(bundle, tmp_path):
    """Refused with the config, not by the init after the mounts and the hooks."""
    marker = tmp_path / "prestart-ran"
    del bundle.config["process"]
    bundle.config["hooks"] = {"prestart": [{"path": "/bin/sh",
                                            "args": ["sh", "-c", f"touch {marker}"]}]}
    assert _create_fails(bundle) == ("onggi: config: process: is required: the container "
                                     "has nothing to run")
    assert not marker.exists()


def test_unknown_namespace_type(bundle):
    bundle.config["linux"]["namespaces"].append({"type": "bogus"})
    last = len(bundle.config["linux"]["namespaces"]) - 1
    msg = _create_fails(bundle)
    assert f"linux.namespaces[{last}].type" in msg and "bogus" not in msg.split(":")[0]


def test_args0_not_found(bundle):
    bundle.config["process"]["args"] = ["no-such-program"]
    msg = _create_fails(bundle)
    assert 'exec: "no-such-program": executable file not found in $PATH' in msg


def test_args0_not_executable(bundle):
    bundle.config["process"]["args"] = ["/etc/passwd"]
    assert "permission denied" in _create_fails(bundle)


def test_unknown_capability(bundle):
    bundle.config["process"]["capabilities"]["effective"].append("CAP_MAKE_COFFEE")
    msg = _create_fails(bundle)
    assert "process.capabilities.effective" in msg and "CAP_MAKE_COFFEE" in msg


def test_bad_mount_source_fails_in_the_child_and_cleans_up(bundle):
    bundle.config["mounts"].append({"destination": "/data", "type": "bind",
                                    "source": "/no/such/source", "options": ["bind"]})
    assert "/no/such/source" in _create_fails(bundle)


def test_bad_uid_map_cleans_up(bundle):
    lx = bundle.config["linux"]
    lx["namespaces"].append({"type": "user"})
    lx["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 10},
                         {"containerID": 5, "hostID": 2000, "size": 10}]  # overlapping
    lx["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 10}]
    assert "linux.uidMappings" in _create_fails(bundle)


def test_log_json_has_the_error_line(bundle, tmp_path):
    bundle.config["process"]["args"] = ["no-such-program"]
    bundle.write()
    log = tmp_path / "log.json"
    res = bundle.onggi("--log", str(log), "--log-format", "json", "create", "-b",
                       str(bundle.path), "x")
    assert res.returncode != 0
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["level"] == "error" and "executable file not found" in last["msg"]
    assert last["time"].endswith("Z")


def test_log_text_quotes_the_message_as_runc_does(bundle, tmp_path):
    bundle.config["process"]["args"] = ["no-such-program"]
    bundle.write()
    log = tmp_path / "log.txt"
    res = bundle.onggi("--log", str(log), "create", "-b", str(bundle.path), bundle.new_id())
    assert res.returncode != 0
    last = log.read_text().splitlines()[-1]
    assert ' level=error msg="' in last and last.endswith('"')
    msg = last.split(' msg="', 1)[1][:-1]
    assert '\\"no-such-program\\"' in msg and '"' not in msg.replace('\\"', "")


@pytest.mark.parametrize("argv", [["create"], ["kill", "--bogus", "x"], ["frobnicate"],
                                  ["--log-format", "xml", "list"]])
def test_bad_command_lines_are_one_line(bundle, argv):
    res = bundle.onggi(*argv)
    assert res.returncode != 0 and len(res.stderr.splitlines()) == 1
    assert res.stderr.startswith("onggi: ")


def test_no_traceback_without_debug(bundle):
    bundle.config["process"]["args"] = ["no-such-program"]
    bundle.write()
    plain = bundle.onggi("create", "-b", str(bundle.path), bundle.new_id())
    assert "Traceback" not in plain.stderr
    (bundle.root / "y").mkdir()
    (bundle.root / "y" / "state.json").write_text("{broken")
    res = bundle.onggi("state", "y")
    assert res.returncode != 0 and "corrupt state" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.skipif(os.path.isdir("/run/systemd/system"), reason="systemd runs here")
def test_systemd_cgroup_is_refused_without_systemd(bundle):
    bundle.write()
    before = _snapshot(bundle)
    cid = bundle.new_id()
    res = bundle.onggi("--systemd-cgroup", "create", "-b", str(bundle.path), cid)
    assert res.returncode != 0 and len(res.stderr.splitlines()) == 1
    assert "--systemd-cgroup: systemd is not running on this host" in res.stderr
    assert _snapshot(bundle)[1:] == before[1:] and not (bundle.root / cid).exists()
    # engines pass the flag on every call: the verbs that need no new cgroup still work
    assert bundle.onggi("--systemd-cgroup", "list").returncode == 0
    assert bundle.onggi("--systemd-cgroup", "delete", "--force", cid).returncode == 0
