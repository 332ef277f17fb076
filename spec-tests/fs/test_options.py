"""Every mount option of the spec's list: its flag (unit) and its effect in mountinfo
(inside the container)."""

from __future__ import annotations

import pytest
from fs_harness import mountinfo_of

from runtime.linux import mountopts
from runtime.linux import syscalls as sc

SPEC_OPTIONS = (
    "async atime bind defaults dev diratime dirsync exec iversion lazytime loud mand noatime "
    "nodev nodiratime noexec noiversion nolazytime nomand norelatime nostrictatime nosuid "
    "nosymfollow private ratime rbind rdev rdiratime relatime remount rexec rnoatime rnodev "
    "rnodiratime rnoexec rnorelatime rnostrictatime rnosuid rnosymfollow ro rprivate rrelatime "
    "rro rrw rshared rslave rstrictatime rsuid rsymfollow runbindable rw shared silent slave "
    "strictatime suid symfollow sync tmpcopyup unbindable idmap ridmap"
).split()


def test_every_spec_option_is_known():
    assert set(SPEC_OPTIONS) <= set(mountopts.known_options())


# option -> (MS flag it sets, MS flag it clears) for plain flag options
FLAG_CASES = {
    "async": (0, sc.MS_SYNCHRONOUS), "atime": (0, sc.MS_NOATIME), "bind": (sc.MS_BIND, 0),
    "defaults": (0, 0), "dev": (0, sc.MS_NODEV), "diratime": (0, sc.MS_NODIRATIME),
    "dirsync": (sc.MS_DIRSYNC, 0), "exec": (0, sc.MS_NOEXEC), "iversion": (sc.MS_I_VERSION, 0),
    "lazytime": (sc.MS_LAZYTIME, 0), "loud": (0, sc.MS_SILENT), "mand": (sc.MS_MANDLOCK, 0),
    "noatime": (sc.MS_NOATIME, 0), "nodev": (sc.MS_NODEV, 0),
    "nodiratime": (sc.MS_NODIRATIME, 0), "noexec": (sc.MS_NOEXEC, 0),
    "noiversion": (0, sc.MS_I_VERSION), "nolazytime": (0, sc.MS_LAZYTIME),
    "nomand": (0, sc.MS_MANDLOCK), "norelatime": (0, sc.MS_RELATIME),
    "nostrictatime": (0, sc.MS_STRICTATIME), "nosuid": (sc.MS_NOSUID, 0),
    "nosymfollow": (sc.MS_NOSYMFOLLOW, 0), "rbind": (sc.MS_BIND | sc.MS_REC, 0),
    "relatime": (sc.MS_RELATIME, 0), "remount": (sc.MS_REMOUNT, 0), "ro": (sc.MS_RDONLY, 0),
    "rw": (0, sc.MS_RDONLY), "silent": (sc.MS_SILENT, 0),
    "strictatime": (sc.MS_STRICTATIME, 0), "suid": (0, sc.MS_NOSUID),
    "symfollow": (0, sc.MS_NOSYMFOLLOW), "sync": (sc.MS_SYNCHRONOUS, 0),
}


@pytest.mark.parametrize("opt", sorted(FLAG_CASES))
def test_flag_option_parses(opt):
    set_, clear = FLAG_CASES[opt]
    o = mountopts.parse([opt])
    assert o.flags == set_
    assert o.clear == clear
    assert o.data == ""
    if clear:  # a clearing option undoes the setting one before it
        assert mountopts.parse(["x", opt]).flags & clear == 0


def test_unknown_options_are_fs_data_in_order():
    o = mountopts.parse(["nosuid", "mode=755", "size=1m", "ro", "newinstance"])
    assert o.data == "mode=755,size=1m,newinstance"
    assert o.flags == sc.MS_NOSUID | sc.MS_RDONLY


def test_recursive_atime_options_set_the_whole_field():
    o = mountopts.parse(["rnoatime"])
    assert (o.attr_set, o.attr_clr) == (sc.MOUNT_ATTR_NOATIME, sc.MOUNT_ATTR__ATIME)
    o = mountopts.parse(["rnoatime", "rstrictatime"])
    assert (o.attr_set, o.attr_clr) == (sc.MOUNT_ATTR_STRICTATIME, sc.MOUNT_ATTR__ATIME)
    o = mountopts.parse(["rro", "rrw"])
    assert (o.attr_set, o.attr_clr) == (0, sc.MOUNT_ATTR_RDONLY)


def tmpfs(dest, *opts):
    return {"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": list(opts)}


def bind(dest, src, *opts):
    return {"destination": dest, "type": "bind", "source": src, "options": list(opts)}


def has(point, *words):
    return lambda mi: all(w in mi[point]["opts"] for w in words)


def lacks(point, *words):
    return lambda mi: not any(w in mi[point]["opts"] for w in words)


def sb_has(point, word):
    return lambda mi: word in mi[point]["super"]


def sb_lacks(point, word):
    return lambda mi: word not in mi[point]["super"]


def tag(point, prefix):
    return lambda mi: any(t.startswith(prefix) for t in mi[point]["optional"])


def no_tags(point):
    return lambda mi: not mi[point]["optional"]


def both(*checks):
    return lambda mi: all(c(mi) for c in checks)


def strict(point):
    return lacks(point, "relatime", "noatime")


# a source with a submount, bound from the rootfs path so the bind sees both
SRC = [tmpfs("/s", "size=1m"), tmpfs("/s/sub", "size=1m")]


def src_with(*opts):
    return [tmpfs("/s", *opts), tmpfs("/s/sub", *opts)]


def rec(opt, check_word=None, lack_word=None, src_opts=()):
    mounts = src_with(*src_opts) + [bind("/d", "rootfs/s", "rbind", opt)]
    checks = []
    for p in ("/d", "/d/sub"):
        if check_word:
            checks.append(has(p, check_word))
        if lack_word:
            checks.append(lacks(p, lack_word))
    return mounts, both(*checks)


# option -> (mounts to add, check on the container's mountinfo)
CASES = {
    "ro": ([tmpfs("/t", "ro")], has("/t", "ro")),
    "rw": ([tmpfs("/t", "ro", "rw")], has("/t", "rw")),
    "nosuid": ([tmpfs("/t", "nosuid")], has("/t", "nosuid")),
    "suid": ([tmpfs("/t", "nosuid", "suid")], lacks("/t", "nosuid")),
    "nodev": ([tmpfs("/t", "nodev")], has("/t", "nodev")),
    "dev": ([tmpfs("/t", "nodev", "dev")], lacks("/t", "nodev")),
    "noexec": ([tmpfs("/t", "noexec")], has("/t", "noexec")),
    "exec": ([tmpfs("/t", "noexec", "exec")], lacks("/t", "noexec")),
    "noatime": ([tmpfs("/t", "noatime")], has("/t", "noatime")),
    "atime": ([tmpfs("/t", "noatime", "atime")], lacks("/t", "noatime")),
    "nodiratime": ([tmpfs("/t", "nodiratime")], has("/t", "nodiratime")),
    "diratime": ([tmpfs("/t", "nodiratime", "diratime")], lacks("/t", "nodiratime")),
    "relatime": ([tmpfs("/t", "relatime")], has("/t", "relatime")),
    "norelatime": ([tmpfs("/t", "relatime", "norelatime")], lacks("/t", "noatime")),
    "strictatime": ([tmpfs("/t", "strictatime")], strict("/t")),
    "nostrictatime": ([tmpfs("/t", "strictatime", "nostrictatime")], has("/t", "relatime")),
    "nosymfollow": ([tmpfs("/t", "nosymfollow")], has("/t", "nosymfollow")),
    "symfollow": ([tmpfs("/t", "nosymfollow", "symfollow")], lacks("/t", "nosymfollow")),
    "sync": ([tmpfs("/t", "sync")], sb_has("/t", "sync")),
    "async": ([tmpfs("/t", "sync", "async")], sb_lacks("/t", "sync")),
    "dirsync": ([tmpfs("/t", "dirsync")], sb_has("/t", "dirsync")),
    "mand": ([tmpfs("/t", "mand")], sb_has("/t", "mand")),
    "nomand": ([tmpfs("/t", "mand", "nomand")], sb_lacks("/t", "mand")),
    "lazytime": ([tmpfs("/t", "lazytime")], sb_has("/t", "lazytime")),
    "nolazytime": ([tmpfs("/t", "lazytime", "nolazytime")], sb_lacks("/t", "lazytime")),
    # no trace in mountinfo: the mount must still be made, with the flag (unit test above)
    "defaults": ([tmpfs("/t", "defaults")], has("/t", "rw")),
    "iversion": ([tmpfs("/t", "iversion")], has("/t", "rw")),
    "noiversion": ([tmpfs("/t", "noiversion")], has("/t", "rw")),
    "silent": ([tmpfs("/t", "silent")], has("/t", "rw")),
    "loud": ([tmpfs("/t", "silent", "loud")], has("/t", "rw")),
    "remount": ([tmpfs("/t", "size=1m"), tmpfs("/t", "remount", "ro", "size=2m")],
                both(has("/t", "ro"), sb_has("/t", "size=2048k"))),
    "bind": (SRC + [bind("/d", "rootfs/s", "bind")],
             lambda mi: "/d" in mi and "/d/sub" not in mi),
    "rbind": (SRC + [bind("/d", "rootfs/s", "rbind")],
              lambda mi: "/d" in mi and "/d/sub" in mi),
    "shared": ([tmpfs("/t", "shared")], tag("/t", "shared:")),
    "private": ([tmpfs("/t", "shared", "private")], no_tags("/t")),
    "slave": ([tmpfs("/s", "shared"), bind("/d", "rootfs/s", "bind", "slave")],
              both(tag("/d", "master:"), lambda mi: not tag("/d", "shared:")(mi))),
    "unbindable": ([tmpfs("/t", "unbindable")], tag("/t", "unbindable")),
    "rshared": (SRC + [bind("/d", "rootfs/s", "rbind", "rshared")],
                both(tag("/d", "shared:"), tag("/d/sub", "shared:"))),
    "rprivate": (src_with("shared") + [bind("/d", "rootfs/s", "rbind", "rprivate")],
                 both(no_tags("/d"), no_tags("/d/sub"))),
    "rslave": (src_with("shared") + [bind("/d", "rootfs/s", "rbind", "rslave")],
               both(tag("/d", "master:"), tag("/d/sub", "master:"))),
    "runbindable": (SRC + [bind("/d", "rootfs/s", "rbind", "runbindable")],
                    both(tag("/d", "unbindable"), tag("/d/sub", "unbindable"))),
    "rro": rec("rro", "ro"),
    "rrw": ([tmpfs("/s"), tmpfs("/s/sub", "ro"), tmpfs("/s", "remount", "ro"),
             bind("/d", "rootfs/s", "rbind", "rrw")],
            both(has("/s", "ro"), has("/s/sub", "ro"), has("/d", "rw"), has("/d/sub", "rw"))),
    "rnosuid": rec("rnosuid", "nosuid"),
    "rsuid": rec("rsuid", None, "nosuid", src_opts=("nosuid",)),
    "rnodev": rec("rnodev", "nodev"),
    "rdev": rec("rdev", None, "nodev", src_opts=("nodev",)),
    "rnoexec": rec("rnoexec", "noexec"),
    "rexec": rec("rexec", None, "noexec", src_opts=("noexec",)),
    "rnodiratime": rec("rnodiratime", "nodiratime"),
    "rdiratime": rec("rdiratime", None, "nodiratime", src_opts=("nodiratime",)),
    "rrelatime": rec("rrelatime", "relatime", src_opts=("strictatime",)),
    "rnorelatime": rec("rnorelatime", "relatime", src_opts=("noatime",)),
    "rnoatime": rec("rnoatime", "noatime"),
    "ratime": rec("ratime", "relatime", "noatime", src_opts=("noatime",)),
    "rstrictatime": rec("rstrictatime", None, "relatime"),
    "rnostrictatime": rec("rnostrictatime", "relatime", src_opts=("strictatime",)),
    "rnosymfollow": rec("rnosymfollow", "nosymfollow"),
    "rsymfollow": rec("rsymfollow", None, "nosymfollow", src_opts=("nosymfollow",)),
    "tmpcopyup": ([tmpfs("/etc", "tmpcopyup", "mode=755")],
                  lambda mi: mi["/etc"]["fstype"] == "tmpfs"),
}


def test_every_option_has_a_container_case():
    # idmap and ridmap have their own tests (test_idmap.py)
    assert set(SPEC_OPTIONS) - {"idmap", "ridmap"} == set(CASES)


@pytest.mark.parametrize("opt", sorted(CASES))
def test_option_in_container(fsb, opt):
    mounts, check = CASES[opt]
    fsb.config["mounts"] += mounts
    r = fsb.sh("cat /proc/self/mountinfo; echo ==; cat /etc/passwd 2>&1")
    assert r.rc == 0, r.err
    info, _, after = r.out.partition("==\n")
    mi = mountinfo_of(info)
    assert check(mi), "\n".join(line for line in info.splitlines() if " /t" in line
                                 or " /d" in line or " /s" in line or " /etc" in line)
    if opt == "tmpcopyup":
        assert after.startswith("root:x:0:0:")


def test_bind_remount_changes_the_mount_already_there(fsb, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    fsb.config["mounts"] += [bind("/v", str(vol), "bind"),
                             bind("/v", str(vol), "bind", "remount", "ro", "nosuid")]
    r = fsb.sh("cat /proc/self/mountinfo")
    assert r.rc == 0, r.err
    mi = mountinfo_of(r.out)
    assert {"ro", "nosuid"} <= mi["/v"]["opts"]
    assert sum(1 for line in r.out.splitlines() if line.split()[4] == "/v") == 1
