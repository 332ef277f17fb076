"""`onggi exec` into real containers: the status, the namespaces, root, cgroups, the
process setup taken from the container, and the flags that change it."""

from __future__ import annotations

import os
import subprocess

import pytest
from exec_harness import (
    ExecCgroups,
    alive,
    ex,
    exec_from_subreaper,
    init_pid,
    own_cgroups,
    start,
    status_field,
    userns,
    wait_for,
)

from runtime.spec import CAP_NUMBER

NAMESPACES = ("mnt", "net", "pid", "ipc", "uts", "cgroup", "user", "time")


def _caps(text: str) -> dict[str, int]:
    return {k: int(v, 16) for k, v in (line.split(":\t") for line in text.splitlines())}


def _mask(*names: str) -> int:
    return sum(1 << CAP_NUMBER[n] for n in names)


@pytest.fixture
def running(bundle) -> str:
    return start(bundle)


# ---------------------------------------------------------------- status and output


def test_exit_status_and_output(bundle, running):
    res = ex(bundle, running, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (res.returncode, res.stdout, res.stderr) == (3, "out\n", "err\n")
    assert ex(bundle, running, "true").returncode == 0


@pytest.mark.parametrize(("sig", "code"), [("KILL", 137), ("TERM", 143), ("INT", 130)])
def test_exit_by_signal_is_128_plus_n(bundle, running, sig, code):
    assert ex(bundle, running, "sh", "-c", f"kill -{sig} $$").returncode == code


def test_stdin_reaches_the_process(bundle, running):
    res = ex(bundle, running, "cat", input="piped\n")
    assert res.stdout == "piped\n"


def test_args_after_the_id_are_the_command(bundle, running):
    """Everything after the id belongs to the command, flags included (runc)."""
    res = ex(bundle, running, "sh", "-c", 'echo "$@"', "zero", "-t", "--cwd", "/x")
    assert res.stdout == "-t --cwd /x\n"


# ---------------------------------------------------------------- where it runs


def test_namespaces_are_the_inits(bundle, running):
    pid = init_pid(bundle, running)
    script = "; ".join(f"readlink /proc/self/ns/{n}" for n in NAMESPACES)
    res = ex(bundle, running, "sh", "-c", script)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [os.readlink(f"/proc/{pid}/ns/{n}") for n in NAMESPACES]
    # and not just the host's: the container has its own of these (a cgroup namespace
    # only where `onggi spec` adds one: on cgroup2, as runc)
    own = {"mount": "mnt", "network": "net", "pid": "pid", "ipc": "ipc", "uts": "uts",
           "cgroup": "cgroup"}
    listed = [own[n["type"]] for n in bundle.config["linux"]["namespaces"] if n["type"] in own]
    assert {"mnt", "net", "pid", "ipc", "uts"} <= set(listed)
    assert all(os.readlink(f"/proc/{pid}/ns/{n}") != os.readlink(f"/proc/self/ns/{n}")
               for n in listed)


def test_exec_into_a_user_namespace(bundle):
    """User first: then root of the container's user namespace, with its maps."""
    userns(bundle, 200000)
    cid = start(bundle)
    pid = init_pid(bundle, cid)
    res = ex(bundle, cid, "sh", "-c", "id -u; cat /proc/self/uid_map; readlink /proc/self/ns/user")
    assert res.returncode == 0, res.stderr
    uid, inside, outside, size, user_ns = res.stdout.split()
    assert (uid, inside, outside, size) == ("0", "0", "200000", "65536")
    assert user_ns == os.readlink(f"/proc/{pid}/ns/user")
    pid_file = bundle.path.parent / "pid"
    res = ex(bundle, "-d", "-u", "1000", "--pid-file", str(pid_file), cid, "sleep", "100")
    assert res.returncode == 0, res.stderr
    exec_pid = int(pid_file.read_text())
    try:
        assert status_field(exec_pid, "Uid").split()[0] == "201000"  # as the host sees it
    finally:
        os.kill(exec_pid, 9)


def test_pid_namespace_is_joined_by_forking(bundle, running):
    """The process is in the init's pid namespace (setns alone only moves children)."""
    res = ex(bundle, running, "sh", "-c", 'echo $$; echo $PPID; tr "\\0" " " < /proc/1/cmdline')
    pid, ppid, one = res.stdout.splitlines()
    assert int(pid) > 1 and ppid == "0"  # its parent is outside the namespace
    assert one.split() == ["sleep", "1000"]


def test_exec_without_a_pid_namespace(bundle):
    bundle.config["linux"]["namespaces"] = [
        n for n in bundle.config["linux"]["namespaces"] if n["type"] != "pid"]
    cid = start(bundle)
    res = ex(bundle, cid, "sh", "-c", "echo $$; readlink /proc/self/ns/pid")
    assert res.returncode == 0, res.stderr
    pid, ns = res.stdout.split()
    assert int(pid) > 1000 or int(pid) != 1
    assert ns == os.readlink("/proc/self/ns/pid")


@pytest.mark.parametrize("no_pivot", [False, True])
def test_the_root_is_the_containers(bundle, tmp_path, no_pivot):
    """setns(mnt) gives the namespace's root; with --no-pivot that is not the container's
    (it chroots): exec takes the init's root."""
    (bundle.rootfs / "in-container").write_text("yes")
    cid = start(bundle, None, *(["--no-pivot"] if no_pivot else []))
    res = ex(bundle, cid, "sh", "-c", "cat /in-container; echo; ls /; pwd")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "yes" and lines[-1] == "/"
    assert sorted(lines[1:-1]) == sorted(os.listdir(bundle.rootfs))


def test_the_root_without_a_mount_namespace(bundle):
    """No mount namespace: setns(mnt) cannot give the container's root, the init's root
    (a chroot in the host's mount namespace) does (runc's exec would see the host's /)."""
    bundle.config["linux"]["namespaces"] = [
        n for n in bundle.config["linux"]["namespaces"] if n["type"] != "mount"]
    bundle.config["mounts"] = [m for m in bundle.config["mounts"]
                               if m["destination"] in ("/proc",)]
    cid = bundle.create(args=["sleep", "1000"], check=False)
    if bundle.last_create.returncode != 0:
        pytest.skip(f"create refuses it here: {bundle.last_create.stderr.strip()}")
    bundle.onggi("start", cid, check=True)
    res = ex(bundle, cid, "ls", "/")
    assert sorted(res.stdout.split()) == sorted(os.listdir(bundle.rootfs)), res.stderr


@pytest.mark.guest_too
def test_cgroups_are_the_inits(bundle, running):
    cg = ExecCgroups(bundle, running)
    try:
        res = exec_from_subreaper(bundle, "-d", running, "sleep", "100",
                                  pid_file=bundle.path.parent / "p1")
        assert res["rc"] == 0, res["err"]
        # the subreaper printed after it had read them: compare in a second exec
        pid_file = bundle.path.parent / "p2"
        r = ex(bundle, "-d", "--pid-file", str(pid_file), running, "sleep", "100")
        assert r.returncode == 0, r.stderr
        pid = int(pid_file.read_text())
        try:
            assert own_cgroups(pid) == own_cgroups(init_pid(bundle, running))
            for key, d in cg.dirs.items():
                assert str(pid) in (d / "cgroup.procs").read_text().split(), key
        finally:
            os.kill(pid, 9)
            wait_for(lambda: not alive(pid))
    finally:
        cg.cleanup()


def test_cgroup_sub_paths(bundle, running):
    """--cgroup SUB (every hierarchy) and CTRL:SUB (that one); the rest stay the init's."""
    cg = ExecCgroups(bundle, running)
    pids = []
    try:
        subs = cg.sub("sub")
        ctrl = next(k for k in cg.dirs if k)
        for flags, want in ((["--cgroup", "sub"], subs),
                            (["--cgroup", f"{ctrl}:sub"], {ctrl: subs[ctrl]})):
            pid_file = bundle.path.parent / f"p{len(pids)}"
            res = ex(bundle, "-d", "--pid-file", str(pid_file), *flags, running, "sleep", "100")
            assert res.returncode == 0, res.stderr
            pids.append(int(pid_file.read_text()))
            for key, d in cg.dirs.items():
                where = want.get(key, d)
                assert str(pids[-1]) in (where / "cgroup.procs").read_text().split(), key
        for bad, words in ((f"{ctrl}:../x", "leaves"), ("nope", "no such cgroup"),
                           ("bogus:sub", "unknown controller")):
            res = ex(bundle, "--cgroup", bad, running, "true")
            assert res.returncode == 255 and words in res.stderr, res.stderr
        res = ex(bundle, "--cgroup", "sub", "--cgroup", f"{ctrl}:sub", running, "true")
        assert res.returncode == 255 and "missing <controller>: prefix" in res.stderr
    finally:
        for pid in pids:
            os.kill(pid, 9)
            wait_for(lambda p=pid: not alive(p))
        cg.cleanup()


def test_a_cgroup_the_process_cannot_join_fails_the_exec_cleanly(bundle, running):
    """The process moves itself into the v1 cgroups (no global lock, see exec_join.Plan);
    where it cannot, the parent tries by pid, and when that fails too the exec fails with one
    line naming the cgroup, and no process is left. A v1 cpuset cgroup without CPUs takes no
    process."""
    cg = ExecCgroups(bundle, running)
    try:
        if "cpuset" not in cg.dirs:
            pytest.skip("no v1 cpuset hierarchy here")
        empty = cg.dirs["cpuset"] / "empty"
        empty.mkdir()
        cg.made.append(empty)
        before = set(os.listdir("/proc"))
        res = ex(bundle, "--cgroup", "cpuset:empty", running, "true")
        assert res.returncode == 255, res.stderr
        line = res.stderr.strip()
        assert "\n" not in line and f"joining the container's cgroup {empty}" in line, line
        assert (empty / "cgroup.procs").read_text() == ""
        assert not [p for p in set(os.listdir("/proc")) - before
                    if p.isdigit() and alive(int(p)) and own_cgroups(int(p))
                    == own_cgroups(init_pid(bundle, running))]
    finally:
        cg.cleanup()


def test_the_join_plan():
    """What the parent still writes by pid (exec_join.Plan.by_pid)."""
    from runtime.cgroups.exec_join import Plan

    dirs = [("cpu", "/c"), ("pids", "/p"), ("", "/u")]
    plan = Plan(dirs, paused=False)
    assert plan.tasks == ["/c/tasks", "/p/tasks"] and plan.v2 == "/u"
    assert plan.by_pid([]) == [("", "/u")]  # clone3 did not put it there
    assert plan.by_pid(["/p/tasks"]) == [("pids", "/p"), ("", "/u")]
    plan.born_in = "/u"
    assert plan.by_pid([]) == []
    paused = Plan(dirs, paused=True)  # it would freeze before it could report
    assert paused.tasks == [] and paused.v2 is None and paused.by_pid([]) == dirs


# ---------------------------------------------------------------- the process setup


def test_capabilities_are_the_containers_and_cap_adds(bundle, running):
    cfg = bundle.config["process"]["capabilities"]
    want = _mask(*cfg["bounding"])
    res = ex(bundle, running, "grep", "^Cap", "/proc/self/status")
    got = _caps(res.stdout)
    assert (got["CapBnd"], got["CapEff"], got["CapPrm"]) == (want, want, want)
    res = ex(bundle, "--cap", "CAP_SYS_ADMIN", "-c", "CAP_NET_RAW", running,
             "grep", "^Cap", "/proc/self/status")
    got = _caps(res.stdout)
    more = want | _mask("CAP_SYS_ADMIN", "CAP_NET_RAW")
    assert (got["CapBnd"], got["CapEff"], got["CapPrm"], got["CapAmb"]) == (more, more, more, 0)
    res = ex(bundle, "--cap", "CAP_BOGUS", running, "true")
    assert res.returncode == 255 and "--cap CAP_BOGUS: unknown capability" in res.stderr


def test_cap_goes_to_ambient_when_the_container_has_inheritable(bundle):
    """runc: --cap adds to ambient when the process has inheritable caps (the kernel then
    raises it only if it is inheritable too)."""
    caps = bundle.config["process"]["capabilities"]
    caps["bounding"].append("CAP_SYS_ADMIN")
    caps["inheritable"] = ["CAP_SYS_ADMIN"]
    caps["ambient"] = []
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    cid = start(bundle)
    res = ex(bundle, cid, "grep", "^Cap", "/proc/self/status")
    assert _caps(res.stdout)["CapAmb"] == 0 and _caps(res.stdout)["CapEff"] == 0
    res = ex(bundle, "--cap", "CAP_SYS_ADMIN", cid, "grep", "^Cap", "/proc/self/status")
    got = _caps(res.stdout)
    assert got["CapAmb"] == got["CapEff"] == _mask("CAP_SYS_ADMIN"), res.stderr


def test_seccomp_is_the_containers(bundle):
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 1}]}
    cid = start(bundle)
    res = ex(bundle, cid, "sh", "-c", "grep ^Seccomp: /proc/self/status; mkdir /tmp/d")
    assert res.stdout.split() == ["Seccomp:", "2"]
    assert res.returncode == 1 and "Operation not permitted" in res.stderr
    # also without noNewPrivileges: loaded while it still has CAP_SYS_ADMIN
    res = ex(bundle, "--no-new-privs=false", cid, "sh", "-c",
             "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; mkdir /tmp/d")
    assert res.stdout.split() == ["NoNewPrivs:", "0", "Seccomp:", "2"]
    assert res.returncode == 1


@pytest.mark.parametrize(("where", "value", "script", "want"), [
    # Go's decoder reads a null member as absent: no additional groups
    ("process.user.additionalGids", None, "id -G", "0\n"),
    # neither defaultAction nor syscalls: no filter at all (runc's SetupSeccomp)
    ("linux.seccomp", {"architectures": ["SCMP_ARCH_X86_64"]},
     "grep ^Seccomp: /proc/self/status", "Seccomp:\t0\n"),
])
def test_exec_reads_the_config_as_create_accepted_it(bundle, where, value, script, want):
    """create normalises the config before it checks it; exec starts from the same
    document, not from the file's raw text."""
    section, _, key = where.rpartition(".")
    doc = bundle.config
    for part in section.split("."):
        doc = doc.setdefault(part, {})
    doc[key] = value
    cid = start(bundle)
    res = ex(bundle, cid, "sh", "-c", script)
    assert (res.returncode, res.stdout, res.stderr) == (0, want, "")


def test_no_new_privs_rlimits_umask_and_groups_are_the_containers(bundle):
    p = bundle.config["process"]
    p["noNewPrivileges"] = True
    p["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}]
    p["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [5, 6], "umask": 0o027}
    cid = start(bundle)
    res = ex(bundle, cid, "sh", "-c", "grep ^NoNewPrivs /proc/self/status; ulimit -n; "
             "ulimit -Hn; umask; id -u; id -g; id -G")
    assert res.stdout.split("\n")[:-1] == ["NoNewPrivs:\t1", "321", "654", "0027", "1000",
                                           "1001", "1001 5 6"], res.stderr
    res = ex(bundle, "--no-new-privs=false", cid, "grep", "^NoNewPrivs", "/proc/self/status")
    assert res.stdout == "NoNewPrivs:\t0\n"


def test_user_groups_cwd_and_env_flags(bundle, running):
    res = ex(bundle, "-u", "1000:1001", "-g", "7", "--additional-gids", "8", "--cwd", "/tmp",
             "-e", "A=1", "--env=A=2", "-e", "B=x=y", running,
             "sh", "-c", 'id -u; id -g; id -G; pwd; echo "$A $B"; env | grep -c "^A="')
    assert res.stdout.split("\n")[:-1] == ["1000", "1001", "1001 7 8", "/tmp", "2 x=y", "1"]
    res = ex(bundle, "-u", "65534", running, "sh", "-c", "id -u; id -g")
    assert res.stdout.split() == ["65534", "0"]  # no :GID keeps the container's (runc)


@pytest.mark.parametrize(("flags", "home"), [
    ([], "/root"), (["-u", "65534"], "/nonexistent"), (["-u", "1000"], "/"),
    (["-e", "HOME=/mine"], "/mine"), (["-e", "HOME="], "/root")])
def test_home_from_the_containers_passwd(bundle, running, flags, home):
    res = ex(bundle, *flags, running, "sh", "-c", 'echo "$HOME"; env | grep -c ^HOME=')
    assert res.stdout.split() == [home, "1"], res.stderr


def test_cwd_is_not_created_and_must_be_absolute(bundle, running):
    res = ex(bundle, "--cwd", "/nonexistent-dir", running, "true")
    assert res.returncode == 255
    assert "process.cwd /nonexistent-dir: no such file or directory" in res.stderr
    assert not (bundle.rootfs / "nonexistent-dir").exists()
    res = ex(bundle, "--cwd", "tmp", running, "true")
    assert res.returncode == 255 and "--cwd tmp: must be an absolute path" in res.stderr


def test_cwd_through_a_symlink_stays_in_the_container(bundle, tmp_path):
    """A cwd that is a symlink to an absolute host-looking path resolves in the container."""
    sentinel = tmp_path / "host-only"
    sentinel.mkdir()
    (sentinel / "marker").write_text("host")
    (bundle.rootfs / "escape").symlink_to(str(sentinel))
    os.makedirs(bundle.rootfs / str(sentinel).lstrip("/"))
    cid = start(bundle)
    res = ex(bundle, "--cwd", "/escape", cid, "sh", "-c", "pwd; ls")
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{sentinel}\n"  # the container's copy of the path: empty


# ---------------------------------------------------------------- detached


def test_detached_returns_with_the_pid_in_the_pid_file(bundle, running, tmp_path):
    pid_file = tmp_path / "exec.pid"
    res = ex(bundle, "-d", "--pid-file", str(pid_file), running, "sleep", "100")
    assert res.returncode == 0, res.stderr
    text = pid_file.read_text()
    assert text.isdigit() and not text.endswith("\n")  # runc's format
    pid = int(text)
    try:
        assert alive(pid) and status_field(pid, "Name") == "sleep"
        assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(
            f"/proc/{init_pid(bundle, running)}/ns/pid")
    finally:
        os.kill(pid, 9)


def test_detached_process_is_a_child_of_the_callers_subreaper(bundle, running, tmp_path):
    """Like conmon and the shim, the caller reaps the exec'd process: no onggi in between."""
    res = exec_from_subreaper(bundle, "-d", running, "sleep", "100",
                              pid_file=tmp_path / "exec.pid")
    assert res["rc"] == 0, res["err"]
    assert res["ppid"] == res["me"] and res["reaped"]


def test_foreground_pid_file_and_signal_forwarding(bundle, running, tmp_path):
    pid_file = tmp_path / "fg.pid"
    proc = subprocess.Popen(
        _onggi(bundle, "exec", "--pid-file", str(pid_file), running, "sh", "-c",
               "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done"),
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        wait_for(pid_file.exists)  # written once onggi saw the exec, a moment after
        assert pid_file.read_text().isdigit()
        proc.send_signal(15)
        assert proc.wait(10) == 42
        assert proc.stdout.read() == "got-term\n"
    finally:
        proc.kill()
        proc.wait()


def _onggi(bundle, *args: str) -> list[str]:
    from harness import ONGGI

    return ONGGI + ["--root", str(bundle.root), *args]
