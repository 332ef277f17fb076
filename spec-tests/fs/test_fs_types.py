"""Filesystem types beyond the defaults: overlay, tmpfs with tmpcopyup, mqueue, sysfs
fallback, and mountLabel."""

from __future__ import annotations

import os

from fs_harness import mountinfo_of

from runtime import spec
from runtime.linux import lsm, mountplan
from runtime.linux import syscalls as sc
from runtime.record import Record


def test_overlay(fsb, tmp_path):
    lower, upper, work = (tmp_path / n for n in ("lower", "upper", "work"))
    for d in (lower, upper, work):
        d.mkdir()
    (lower / "from-lower").write_text("low")
    fsb.mount("/ov", "overlay", "overlay",
              [f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}", "nodev"])
    r = fsb.sh("cat /ov/from-lower; echo; echo up > /ov/new; grep ' /ov ' /proc/self/mountinfo")
    assert r.rc == 0, r.err
    assert r.out.startswith("low")
    assert "- overlay overlay" in r.out and "nodev" in r.out
    assert (upper / "new").read_text() == "up\n"
    assert not (lower / "new").exists()


def test_tmpcopyup_keeps_content_owner_mode_and_links(fsb):
    etc = fsb.rootfs / "etc"
    os.chown(etc / "group", 12, 34)
    os.chmod(etc / "group", 0o640)
    os.symlink("passwd", etc / "pw-link")
    (etc / "sub").mkdir()
    (etc / "sub" / "deep").write_text("deep")
    fsb.mount("/etc", "tmpfs", "tmpfs", ["tmpcopyup", "ro", "mode=755"])
    r = fsb.sh("stat -c '%n %u %g %a' /etc/group; readlink /etc/pw-link; cat /etc/sub/deep;"
               "echo; touch /etc/x 2>&1; grep ' /etc ' /proc/self/mountinfo")
    assert r.rc == 0, r.err
    assert "/etc/group 12 34 640" in r.out
    assert "passwd" in r.out.split()
    assert "deep" in r.out
    assert "Read-only file system" in r.out
    mi = mountinfo_of(r.out)
    assert mi["/etc"]["fstype"] == "tmpfs" and "ro" in mi["/etc"]["opts"]
    # the image's files are untouched
    assert not (etc / "x").exists()


def test_tmpcopyup_only_on_tmpfs(fsb):
    fsb.mount("/x", "proc", "proc", ["tmpcopyup"])
    assert "tmpcopyup works only on a tmpfs" in fsb.error()


def test_sysfs_without_a_netns_in_a_userns_is_the_hosts_read_only(fsb):
    from test_devices import USERNS_MAP, userns_config

    userns_config(fsb)
    fsb.config["linux"]["namespaces"] = [n for n in fsb.config["linux"]["namespaces"]
                                         if n["type"] != "network"]
    r = fsb.sh("grep ' /sys ' /proc/self/mountinfo; ls /sys/kernel >/dev/null && echo ok",
               userns=USERNS_MAP)
    assert r.rc == 0, r.err
    assert " ro," in r.out and "ok" in r.out
    # the host's sysfs (its superblock is shared with the host: same device number)
    host_dev = next(line.split()[2] for line in open("/proc/self/mountinfo")
                    if line.split()[4] == "/sys")
    assert f" {host_dev} " in r.out


def _cfg(fsb) -> spec.Config:
    raw = dict(fsb.config)
    raw["process"] = dict(raw["process"], args=["true"])
    return spec.parse(raw, str(fsb.path))


def test_mount_label_ignored_without_selinux(hfsb):
    fsb = hfsb
    fsb.config["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0:c1,c2"
    plan = mountplan.plan(_cfg(fsb))
    assert plan.mount_label is None
    assert any("SELinux is not enabled" in n for n in plan.notes)
    assert all("context=" not in m.opts.data for m in plan.mounts)
    r = fsb.sh("true")
    assert r.rc == 0, r.err


def test_mount_label_is_context_when_selinux_is_on(hfsb, monkeypatch):
    fsb = hfsb
    monkeypatch.setattr(lsm, "selinux_enabled", lambda: True)
    label = "system_u:object_r:container_file_t:s0:c1,c2"
    fsb.config["linux"]["mountLabel"] = label
    plan = mountplan.plan(_cfg(fsb))
    by_dest = {m.destination: m for m in plan.mounts}
    assert f'context="{label}"' in by_dest["/dev"].opts.data
    assert f'context="{label}"' in by_dest["/dev/shm"].opts.data
    assert "context=" not in by_dest["/proc"].opts.data
    assert "context=" not in by_dest["/sys"].opts.data
    assert plan.mount_label == label


def test_plan_is_plain_data(hfsb):
    fsb = hfsb
    plan = mountplan.plan(_cfg(fsb))
    assert isinstance(plan, Record)
    assert plan.start_propagation == sc.MS_SLAVE | sc.MS_REC
    assert plan.setup_dev


def test_mount_data_splits_on_commas_outside_quotes():
    assert sc.split_data('mode=755,context="u:r:t:s0:c1,c2",size=1m') == [
        "mode=755", 'context="u:r:t:s0:c1,c2"', "size=1m"]
    assert sc.split_data("") == []


def test_fs_context_gets_quoted_values_unquoted():
    # mount(2) data quotes a value with commas (context="...c1,c2"); fsconfig takes it raw.
    # tmpfs has no context= without SELinux, so a quoted mode stands in for it.
    fd = sc.fsopen_mount("tmpfs", 'mode="700",size=1m', sc.MOUNT_ATTR_RDONLY)
    try:
        assert os.fstat(fd).st_mode & 0o777 == 0o700
    finally:
        os.close(fd)
