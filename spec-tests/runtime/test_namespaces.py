"""Each namespace: new (inode differs from the host's), absent (same), or joined by path."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from harness import userns

from runtime.linux import syscalls
from runtime.spec import CLONE_FLAGS

NS = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt",
      "cgroup": "cgroup", "time": "time"}


def _host_ns(name: str) -> str:
    return os.readlink(f"/proc/self/ns/{name}")


def _inside_ns(bundle) -> dict[str, str]:
    script = "; ".join(f"echo {n}=$(readlink /proc/self/ns/{n})" for n in NS.values())
    res = bundle.sh(script)
    assert res.returncode == 0, res.stderr
    return dict(line.split("=", 1) for line in res.stdout.split())


def _set_namespaces(bundle, kinds):
    bundle.config["linux"]["namespaces"] = [{"type": k} for k in kinds]


def test_every_new_namespace_differs_from_the_host(bundle):
    _set_namespaces(bundle, NS)
    inside = _inside_ns(bundle)
    for kind, name in NS.items():
        assert inside[name] != _host_ns(name), kind


@pytest.mark.parametrize("kind", ["network", "ipc", "uts", "cgroup", "pid", "time"])
def test_left_out_namespace_is_shared_with_the_host(bundle, kind):
    _set_namespaces(bundle, [k for k in NS if k != kind])
    if kind == "uts":
        bundle.config.pop("hostname")
    inside = _inside_ns(bundle)
    assert inside[NS[kind]] == _host_ns(NS[kind])
    for other, name in NS.items():
        if other != kind:
            assert inside[name] != _host_ns(name)


def test_join_namespaces_by_path(bundle):
    _set_namespaces(bundle, NS)
    first = bundle.create(args=["sleep", "100"])
    pid = bundle.state(first)["pid"]
    joined = {k: f"/proc/{pid}/ns/{NS[k]}" for k in ("network", "ipc", "uts", "pid", "cgroup",
                                                     "time")}
    bundle.config["linux"]["namespaces"] = [
        {"type": k, "path": joined[k]} if k in joined else {"type": k} for k in NS
    ]
    inside = _inside_ns(bundle)
    for kind, path in joined.items():
        assert inside[NS[kind]] == os.readlink(path), kind
    assert inside["mnt"] != os.readlink(f"/proc/{pid}/ns/mnt")


def test_joining_a_namespace_of_the_wrong_type_fails(bundle):
    bundle.config["linux"]["namespaces"] = [
        {"type": "ipc", "path": "/proc/self/ns/net"} if n["type"] == "ipc" else n
        for n in bundle.config["linux"]["namespaces"]
    ]
    bundle.write()
    res = bundle.onggi("create", "-b", str(bundle.path), bundle.new_id())
    assert res.returncode != 0
    assert "linux.namespaces[2].path" in res.stderr and "network namespace, not ipc" in res.stderr
    assert res.stderr.count("\n") == 1 and os.listdir(bundle.root) == []


def test_joining_a_missing_namespace_path_fails(bundle):
    bundle.config["linux"]["namespaces"].append({"type": "time", "path": "/proc/no/such"})
    bundle.write()
    res = bundle.onggi("create", "-b", str(bundle.path), bundle.new_id())
    assert res.returncode != 0 and "/proc/no/such: no such file" in res.stderr


def test_user_namespace_maps_ids(bundle):
    userns(bundle)
    res = bundle.sh("cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c %u /bin/busybox;"
                    " sleep 0.5")
    assert res.returncode == 0, res.stderr
    lines = [line.split() for line in res.stdout.splitlines()]
    assert lines[0] == ["0", "100000", "65536"] and lines[1] == ["0", "100000", "65536"]
    assert lines[2] == ["0"]
    assert lines[3] == ["65534"]  # the host's root owns the rootfs: unmapped, seen as nobody


def _can_open_exe_from_container(pid: int) -> bool:
    """Open /proc/<pid>/exe as root of the container's user namespace (what an attacker
    inside would be)."""
    userns = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY)
    child = os.fork()
    if child == 0:
        try:
            syscalls.setns(userns, CLONE_FLAGS["user"])
            os.close(os.open(f"/proc/{pid}/exe", os.O_RDONLY))
            os._exit(0)
        except OSError:
            os._exit(1)
    os.close(userns)
    return os.waitpid(child, 0)[1] == 0


def test_user_namespace_host_side_uid(bundle):
    userns(bundle)
    cid = bundle.create(args=["sleep", "100"])
    pid = bundle.state(cid)["pid"]
    # Before start the init (onggi's interpreter) is not dumpable: the container's root
    # cannot reach it through /proc/<init>/exe (CVE-2019-5736).
    assert not _can_open_exe_from_container(pid)
    bundle.onggi("start", cid, check=True)
    time.sleep(0.2)
    status = open(f"/proc/{pid}/status").read()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == ["100000"] * 4
    assert _can_open_exe_from_container(pid)  # the exec'd `sleep` is dumpable again


def test_join_a_user_namespace(bundle):
    userns(bundle)
    first = bundle.create(args=["sleep", "100"])
    pid = bundle.state(first)["pid"]
    lx = bundle.config["linux"]
    lx.pop("uidMappings")
    lx.pop("gidMappings")
    lx["namespaces"] = [{"type": "user", "path": f"/proc/{pid}/ns/user"}] + [
        n for n in lx["namespaces"] if n["type"] != "user"]
    res = bundle.sh("readlink /proc/self/ns/user; cat /proc/self/uid_map")
    assert res.returncode == 0, res.stderr
    user, uid_map = res.stdout.split("\n")[:2]
    assert user == os.readlink(f"/proc/{pid}/ns/user")
    assert uid_map.split() == ["0", "100000", "65536"]


def test_join_a_mount_namespace_still_sets_up_the_rootfs(bundle):
    """Like runc: the rootfs is mounted and pivoted into inside the joined namespace, so the
    container never sees that namespace's whole filesystem."""
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "100"])
    try:
        ns = f"/proc/{holder.pid}/ns/mnt"
        deadline = time.monotonic() + 5
        while os.readlink(ns) == _host_ns("mnt") and time.monotonic() < deadline:
            time.sleep(0.01)
        bundle.config["linux"]["namespaces"] = [
            {"type": "mount", "path": ns} if n["type"] == "mount" else n
            for n in bundle.config["linux"]["namespaces"]]
        res = bundle.sh("readlink /proc/self/ns/mnt; ls /")
        assert res.returncode == 0, res.stderr
        mnt, *top = res.stdout.split()
        assert mnt == os.readlink(ns)
        assert "bin" in top and "work" not in top and "usr" in top
        assert str(bundle.path) not in open("/proc/self/mountinfo").read()
    finally:
        holder.kill()
        holder.wait()


def test_session_keyring(bundle):
    bundle.config["linux"]["maskedPaths"].remove("/proc/keys")
    bundle.write(["sh", "-c", "grep -o '_ses[^ ]*' /proc/keys || echo none"])
    cid = bundle.new_id()
    res = bundle.onggi("run", "-b", str(bundle.path), cid)
    assert f"_ses.{cid}:" in res.stdout.split()
    other = bundle.new_id()
    res = bundle.onggi("run", "--no-new-keyring", "-b", str(bundle.path), other)
    assert res.returncode == 0 and f"_ses.{other}:" not in res.stdout


def test_time_namespace_offsets(bundle):
    bundle.config["linux"]["namespaces"].append({"type": "time"})
    bundle.config["linux"]["timeOffsets"] = {"boottime": {"secs": 864000, "nanosecs": 0},
                                             "monotonic": {"secs": 86400}}
    host = float(open("/proc/uptime").read().split()[0])
    res = bundle.sh("cat /proc/uptime")
    inside = float(res.stdout.split()[0])
    assert 864000 <= inside - host < 864000 + 30


def test_hostname_and_domainname(bundle):
    bundle.config["hostname"] = "jar"
    bundle.config["domainname"] = "kimchi.example"
    res = bundle.sh("hostname; cat /proc/sys/kernel/domainname")
    assert res.stdout.split() == ["jar", "kimchi.example"]
    assert os.uname().nodename != "jar"


def test_loopback_is_up_in_a_new_network_namespace(bundle):
    res = bundle.sh("cat /sys/class/net/lo/operstate /sys/class/net/lo/flags; ls /sys/class/net")
    state, flags, *ifaces = res.stdout.split()
    assert int(flags, 16) & 1, "IFF_UP"
    assert ifaces == ["lo"]


def test_sysctl_is_set_inside_only(bundle):
    host = open("/proc/sys/net/ipv4/ip_default_ttl").read().strip()
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_default_ttl": "42",
                                        "kernel.shmmni": "1234"}
    res = bundle.sh("cat /proc/sys/net/ipv4/ip_default_ttl /proc/sys/kernel/shmmni")
    assert res.stdout.split() == ["42", "1234"]
    assert open("/proc/sys/net/ipv4/ip_default_ttl").read().strip() == host


def test_new_pid_namespace_makes_process_pid_1(bundle):
    assert bundle.sh("echo $$").stdout == "1\n"


def test_mount_namespace_keeps_container_mounts_off_the_host(bundle):
    cid = bundle.create(args=["sleep", "100"])
    pid = bundle.state(cid)["pid"]
    theirs = open(f"/proc/{pid}/mountinfo").read()
    assert " /proc " in theirs and str(bundle.path) not in open("/proc/self/mountinfo").read()
