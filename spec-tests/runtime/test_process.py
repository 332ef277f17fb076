"""The process object: args, env, cwd, user, rlimits, capabilities, terminal, fds."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import threading
import time

import _prctl
import pytest
from harness import ONGGI, read_until_eof

from runtime.spec import CAP_NUMBER


def _status(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _mask(*names: str) -> int:
    return sum(1 << CAP_NUMBER[n] for n in names)


def test_args_env_cwd(bundle):
    bundle.config["process"]["env"] = ["PATH=/bin", "FOO=bar baz", "EMPTY="]
    bundle.config["process"]["cwd"] = "/tmp"
    res = bundle.run(["sh", "-c", 'echo "$FOO|$EMPTY|$(pwd)|$0|$1"', "zero", "one"])
    assert res.stdout == "bar baz||/tmp|zero|one\n"


def test_env_is_passed_exactly_as_listed(bundle):
    env = ["PATH=/bin:/usr/bin", "A=1", "A=2", "B=x=y", "HOME=/h"]
    bundle.config["process"]["env"] = env
    res = bundle.run(["cat", "/proc/self/environ"])
    assert res.stdout.split("\0")[:-1] == env


@pytest.mark.parametrize(("user", "env", "home"), [
    ({"uid": 0, "gid": 0}, [], "/root"),  # from the container's /etc/passwd
    ({"uid": 65534, "gid": 65534}, [], "/nonexistent"),
    ({"uid": 1000, "gid": 1000}, [], "/"),  # no entry
    ({"uid": 0, "gid": 0}, ["HOME="], "/root"),  # empty counts as unset (runc)
    ({"uid": 0, "gid": 0}, ["HOME=/mine"], "/mine"),
])
def test_home_from_the_containers_passwd(bundle, user, env, home):
    """runc: HOME, when the env has none, is the user's passwd entry, or "/"."""
    bundle.config["process"]["user"] = user
    bundle.config["process"]["env"] = ["PATH=/bin"] + env
    res = bundle.run(["cat", "/proc/self/environ"])
    assert res.returncode == 0, res.stderr
    got = res.stdout.split("\0")[:-1]
    assert [e for e in got if e.startswith("HOME")] == [f"HOME={home}"]
    assert got[0] == "PATH=/bin"


def test_home_with_a_passwd_that_is_a_fifo(bundle):
    """The container's /etc/passwd is the container's: a FIFO must not hang the init."""
    (bundle.rootfs / "etc" / "passwd").unlink()
    os.mkfifo(bundle.rootfs / "etc" / "passwd")
    bundle.config["process"]["env"] = ["PATH=/bin"]
    res = bundle.run(["sh", "-c", 'echo "$HOME"'], timeout=20)
    assert (res.returncode, res.stdout) == (0, "/\n"), res.stderr


def test_missing_cwd_is_created(bundle):
    bundle.config["root"]["readonly"] = False
    bundle.config["process"]["cwd"] = "/work/here"
    assert bundle.run(["pwd"]).stdout == "/work/here\n"


def test_a_cwd_that_cannot_be_made_is_one_line_in_runcs_case(bundle, tmp_path):
    """Under a read-only mount: the reason in lower case, as every other reason is."""
    (tmp_path / "ro").mkdir()
    bundle.config["mounts"].append({"destination": "/ro", "type": "bind",
                                    "source": str(tmp_path / "ro"), "options": ["rbind", "ro"]})
    bundle.config["process"]["cwd"] = "/ro/new"
    res = bundle.run(["pwd"])
    assert (res.returncode, res.stderr) == (1, "onggi: process.cwd /ro/new: read-only file "
                                               "system\n")
    assert not (tmp_path / "ro" / "new").exists()


def test_user_groups_and_umask(bundle):
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [5, 6],
                                        "umask": 0o027}
    res = bundle.sh("id -u; id -g; id -G; umask")
    assert res.stdout.split("\n")[:4] == ["1000", "1001", "1001 5 6", "0027"]


def test_rlimits(bundle):
    bundle.config["process"]["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 18446744073709551615},
    ]
    res = bundle.sh("grep -E 'open files|core file' /proc/self/limits")
    core, nofile = res.stdout.splitlines()
    assert core.split()[4:6] == ["0", "unlimited"]
    assert nofile.split()[3:5] == ["321", "654"]


def test_rlimit_above_the_hard_ceiling_fails_clearly(bundle):
    hard = int(open("/proc/self/limits").read().split("Max open files")[1].split()[1])
    bundle.config["process"]["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}]
    res = bundle.run(["true"])
    if os.geteuid() == 0 and "cap_sys_resource" in _bounding_names():
        pytest.skip("this machine may raise the hard limit")
    assert res.returncode != 0 and "setting rlimit RLIMIT_NOFILE" in res.stderr


def _bounding_names() -> set[str]:
    bnd = int(_status(open("/proc/self/status").read())["CapBnd"], 16)
    return {n.lower() for n, i in CAP_NUMBER.items() if bnd >> i & 1}


def test_all_five_capability_sets_for_a_non_root_user(bundle):
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    two = ["CAP_NET_BIND_SERVICE", "CAP_KILL"]
    bundle.config["process"]["capabilities"] = {
        "bounding": two + ["CAP_CHOWN"], "effective": two, "permitted": two,
        "inheritable": two, "ambient": two,
    }
    st = _status(bundle.run(["cat", "/proc/self/status"]).stdout)
    assert int(st["CapBnd"], 16) == _mask(*two, "CAP_CHOWN")
    for key in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(st[key], 16) == _mask(*two), key


def test_root_capabilities_follow_the_bounding_set(bundle):
    st = _status(bundle.run(["cat", "/proc/self/status"]).stdout)
    default = _mask("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")
    assert int(st["CapBnd"], 16) == default
    assert int(st["CapEff"], 16) == default and int(st["CapAmb"], 16) == 0


def test_no_new_privileges_and_oom_score_adj(bundle):
    bundle.config["process"]["oomScoreAdj"] = 123
    st = _status(bundle.run(["cat", "/proc/self/status"]).stdout)
    assert st["NoNewPrivs"] == "1"
    bundle.config["process"]["noNewPrivileges"] = False
    res = bundle.sh("grep NoNewPrivs /proc/self/status; cat /proc/self/oom_score_adj")
    assert res.stdout.split() == ["NoNewPrivs:", "0", "123"]


def test_signal_dispositions_and_mask_are_reset(bundle):
    """Python ignores SIGPIPE and SIGXFSZ; ignored dispositions would survive execve."""
    st = _status(bundle.run(["cat", "/proc/self/status"]).stdout)
    assert int(st["SigIgn"], 16) == 0 and int(st["SigBlk"], 16) == 0


def test_no_host_fd_leaks_in(bundle, tmp_path):
    leak = open(tmp_path / "host-secret", "w")
    os.set_inheritable(leak.fileno(), True)
    try:
        bundle.write(["ls", "/proc/self/fd"])
        res = subprocess.run(ONGGI + ["--root", str(bundle.root), "run", "-b", str(bundle.path),
                                      bundle.new_id()], capture_output=True, text=True,
                             close_fds=False, timeout=30)
    finally:
        leak.close()
    assert sorted(res.stdout.split()) == ["0", "1", "2", "3"]  # 3: ls's own dir fd


def test_preserve_fds(bundle, tmp_path):
    r, w = os.pipe()
    extra = open(tmp_path / "ignored", "w")  # fd above the preserved range: closed
    bundle.write(["sh", "-c", "echo through-fd3 >&3; ls /proc/self/fd"])
    try:
        res = subprocess.run(
            ONGGI + ["--root", str(bundle.root), "run", "--preserve-fds", "1", "-b",
                     str(bundle.path), bundle.new_id()],
            capture_output=True, text=True, close_fds=False, timeout=30,
            preexec_fn=lambda: (os.dup2(w, 3), os.dup2(extra.fileno(), 4)))
    finally:
        os.close(w)
        extra.close()
    assert os.read(r, 100) == b"through-fd3\n"
    os.close(r)
    assert sorted(res.stdout.split()) == ["0", "1", "2", "3", "4"], res.stderr  # 4: ls's


def test_listen_fds_are_passed_with_their_env(bundle):
    r, w = os.pipe()
    bundle.write(["sh", "-c", "echo $LISTEN_FDS $LISTEN_PID; echo sock >&3"])
    env = dict(os.environ, LISTEN_FDS="1")
    res = subprocess.run(ONGGI + ["--root", str(bundle.root), "run", "-b", str(bundle.path),
                                  bundle.new_id()], capture_output=True, text=True, env=env,
                         close_fds=False, preexec_fn=lambda: os.dup2(w, 3), timeout=30)
    os.close(w)
    assert res.stdout == "1 1\n", res.stderr
    assert os.read(r, 10) == b"sock\n"


def _console_listener(path: str):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    got: dict = {}

    def accept():
        conn, _ = srv.accept()
        msg, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        got["msg"], got["fd"] = msg, fds[0]
        conn.close()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    return srv, t, got


def test_console_socket_receives_the_pty_master(bundle, tmp_path):
    sock_path = str(tmp_path / "console.sock")
    srv, t, got = _console_listener(sock_path)
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["consoleSize"] = {"height": 33, "width": 101}
    cid = bundle.create(None, "--console-socket", sock_path,
                        args=["sh", "-c", "tty; stty size; echo $TERM; ls /proc/self/fd"])
    t.join(10)
    srv.close()
    master = got["fd"]
    bundle.onggi("start", cid, check=True)
    out = read_until_eof(master)
    os.close(master)
    lines = out.decode().replace("\r", "").split("\n")
    assert lines[0] == "/dev/pts/0"  # the container's own devpts instance
    assert lines[1] == "33 101"
    assert lines[2] == "xterm"
    assert sorted(lines[3].split()) == ["0", "1", "2", "3"]


def test_a_bound_dev_whose_ptmx_is_no_pty_multiplexer_is_refused(bundle, tmp_path):
    """With /dev bound from the image (no devices of ours), its ptmx is checked before the
    init takes a terminal from it, as exec checks it."""
    dev = tmp_path / "image-dev"
    for d in ("pts", "shm", "mqueue"):
        (dev / d).mkdir(parents=True)
    os.mknod(dev / "ptmx", 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
    mounts = bundle.config["mounts"]
    i = next(i for i, m in enumerate(mounts) if m["destination"] == "/dev")
    mounts[i] = {"destination": "/dev", "type": "bind", "source": str(dev),
                 "options": ["rbind"]}
    bundle.config["process"]["terminal"] = True
    sock_path = str(tmp_path / "console.sock")
    srv, _, got = _console_listener(sock_path)
    try:
        bundle.create(None, "--console-socket", sock_path, args=["true"], check=False)
    finally:
        srv.close()
    assert bundle.last_create.returncode != 0 and "fd" not in got
    assert bundle.last_create.stderr == ("onggi: process.terminal: the container's "
                                         "/dev/ptmx is not a pty multiplexer\n")
    assert os.listdir(bundle.root) == []


def test_terminal_without_console_socket_is_refused_for_create(bundle):
    bundle.config["process"]["terminal"] = True
    bundle.write()
    res = bundle.onggi("create", "-b", str(bundle.path), bundle.new_id())
    assert res.returncode != 0 and "--console-socket" in res.stderr
    assert os.listdir(bundle.root) == []


def _open_exe_with_caps(pid: int, caps: list[int]) -> bool:
    """Open /proc/<pid>/exe as root holding exactly the container's capabilities."""
    child = os.fork()
    if child == 0:
        try:
            others = [c for c in range(_prctl.CAP_LAST_CAP + 1) if c not in caps]
            _prctl.set_caps(caps, caps, [], others, others, list(range(_prctl.CAP_LAST_CAP + 1)))
            os.close(os.open(f"/proc/{pid}/exe", os.O_RDONLY))
            os._exit(0)
        except OSError:
            os._exit(1)
    return os.waitpid(child, 0)[1] == 0


def test_init_is_unreachable_through_proc_exe_until_exec(bundle):
    """CVE-2019-5736: while it waits for `start`, the init must not be dumpable, or a process
    with the container's uid and capabilities could open the runtime through /proc/pid/exe."""
    cid = bundle.create(args=["sleep", "100"])
    pid = bundle.state(cid)["pid"]
    caps = [CAP_NUMBER[c] for c in ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")]
    assert not _open_exe_with_caps(pid, caps)
    bundle.onggi("start", cid, check=True)
    time.sleep(0.2)
    assert _open_exe_with_caps(pid, caps)  # the user's program is an ordinary process


def test_foreground_run_with_a_terminal_relays_the_pty(bundle):
    """`run` with process.terminal and no --console-socket: onggi itself carries the pty."""
    import pty

    bundle.config["process"]["terminal"] = True
    bundle.write(["sh", "-c", "tty; read line; echo got:$line; exit 4"])
    master, slave = pty.openpty()
    p = subprocess.Popen(ONGGI + ["--root", str(bundle.root), "run", "-b", str(bundle.path),
                                  bundle.new_id()], stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    os.write(master, b"kimchi\n")
    out = read_until_eof(master, 15).decode(errors="replace").replace("\r", "")
    os.close(master)
    assert p.wait(15) == 4
    assert "/dev/pts/0\n" in out and "got:kimchi" in out, out


def test_ambient_without_inheritable_is_skipped_like_runc(bundle):
    """`runc spec` lists ambient capabilities but no inheritable set; runc still runs it."""
    bundle.config["process"]["capabilities"]["ambient"] = ["CAP_KILL"]
    res = bundle.run(["cat", "/proc/self/status"])
    assert res.returncode == 0, res.stderr
    assert int(_status(res.stdout)["CapAmb"], 16) == 0
