"""process.apparmorProfile and process.selinuxLabel are refused on a host without that LSM
(nothing would confine the container), and the host probes behave as runc's."""

from __future__ import annotations

import os

import pytest

from runtime.linux import lsm


def _one_line_refusal(bundle) -> str:
    res = bundle.run(["true"])
    lines = res.stderr.splitlines()
    assert res.returncode != 0 and len(lines) == 1, res.stderr
    assert os.listdir(bundle.root) == []
    return lines[0]


@pytest.mark.skipif(lsm.apparmor_enabled(), reason="AppArmor is enabled here")
def test_apparmor_profile_refused_without_apparmor(bundle):
    bundle.config["process"]["apparmorProfile"] = "acme_secure_profile"
    assert _one_line_refusal(bundle) == ("onggi: config: process.apparmorProfile: AppArmor "
                                         "is not enabled on this host")


@pytest.mark.skipif(lsm.selinux_enabled(), reason="SELinux is enabled here")
def test_selinux_label_refused_without_selinux(bundle):
    bundle.config["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0:c1,c2"
    assert _one_line_refusal(bundle) == (
        "onggi: config: process.selinuxLabel: selinux label is specified in config, but "
        "selinux is disabled or not supported")


def test_empty_profile_and_label_are_unset(bundle):
    bundle.config["process"]["apparmorProfile"] = ""
    bundle.config["process"]["selinuxLabel"] = ""
    assert bundle.run(["true"]).returncode == 0


def test_apparmor_probe(tmp_path):
    """runc's isEnabled: securityfs has apparmor and the module parameter says Y."""
    assert not lsm.apparmor_enabled(str(tmp_path))
    (tmp_path / "kernel/security/apparmor").mkdir(parents=True)
    params = tmp_path / "module/apparmor/parameters"
    params.mkdir(parents=True)
    (params / "enabled").write_text("N\n")
    assert not lsm.apparmor_enabled(str(tmp_path))
    (params / "enabled").write_text("Y\n")
    assert lsm.apparmor_enabled(str(tmp_path))


def test_apparmor_exec_file(tmp_path):
    """The LSM-stacking file when the kernel has it, the legacy one otherwise."""
    (tmp_path / "self/attr").mkdir(parents=True)
    assert lsm.apparmor_exec_path(str(tmp_path)) == "/proc/thread-self/attr/exec"
    (tmp_path / "self/attr/apparmor").mkdir()
    (tmp_path / "self/attr/apparmor/exec").write_text("")
    assert lsm.apparmor_exec_path(str(tmp_path)) == "/proc/thread-self/attr/apparmor/exec"


def test_features_agree_with_the_probes(bundle):
    import json

    doc = json.loads(bundle.onggi("features", check=True).stdout)["linux"]
    assert doc["apparmor"]["enabled"] == lsm.apparmor_enabled()
    assert doc["selinux"]["enabled"] == lsm.selinux_enabled()
