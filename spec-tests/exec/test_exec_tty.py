"""A terminal for exec: a new pty from the container's devpts, its master through
--console-socket (what conmon and the shim do) or relayed by a foreground `exec -t`."""

from __future__ import annotations

import json
import os
import pty
import socket
import subprocess
import time

import pytest
from exec_harness import ex, start
from harness import ONGGI, read_until_eof


@pytest.fixture
def running(bundle) -> str:
    return start(bundle)


class ConsoleSocket:
    def __init__(self, path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.sock.settimeout(20)

    def master(self) -> int:
        conn, _ = self.sock.accept()
        with conn:
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        return fds[0]

    def close(self) -> None:
        self.sock.close()


def _talk(master: int, text: bytes) -> str:
    os.write(master, text)
    try:
        return read_until_eof(master, 10).decode(errors="replace")
    finally:
        os.close(master)


def test_console_socket_gets_a_pty_of_the_containers_devpts(bundle, running, tmp_path):
    cs = ConsoleSocket(tmp_path / "console.sock")
    try:
        res = ex(bundle, "-d", "-t", "--console-socket", cs.path, running,
                 "sh", "-c", 'tty; read line; echo "got $line"; '
                             'stat -c %d "$(tty)" /dev/pts/ptmx')
        assert res.returncode == 0, res.stderr
        out = _talk(cs.master(), b"hello\n")
    finally:
        cs.close()
    lines = [x for x in out.replace("\r", "").split("\n") if x]
    assert lines[0].startswith("/dev/pts/") and "got hello" in lines
    # the pty is on the container's own devpts, not the host's
    pts_dev, ptmx_dev = lines[-2:]
    assert pts_dev == ptmx_dev and int(pts_dev) != os.stat("/dev/pts").st_dev


def test_process_file_with_terminal_and_console_size(bundle, running, tmp_path):
    """containerd's shape: terminal in process.json, no -t, a console socket."""
    proc = {"terminal": True, "consoleSize": {"height": 33, "width": 111},
            "user": {"uid": 0, "gid": 0}, "args": ["sh", "-c", "stty size; tty"],
            "env": ["PATH=/bin:/usr/bin"], "cwd": "/", "noNewPrivileges": True}
    (tmp_path / "p.json").write_text(json.dumps(proc))
    cs = ConsoleSocket(tmp_path / "console.sock")
    try:
        res = ex(bundle, "--process", str(tmp_path / "p.json"), "-d", "--console-socket",
                 cs.path, running)
        assert res.returncode == 0, res.stderr
        out = _talk(cs.master(), b"")
    finally:
        cs.close()
    assert out.replace("\r", "").split("\n")[0] == "33 111"


def test_pty_is_the_users_and_no_host_file_is_chowned(bundle, running, tmp_path):
    """runc chowns the process's stdio to --user; onggi only its own pty (on the
    container's devpts), never a host file handed in as stdio, nor the host's /dev/null."""
    null_before = os.stat("/dev/null")
    host_out = tmp_path / "host-out"
    cs = ConsoleSocket(tmp_path / "console.sock")
    try:
        res = ex(bundle, "-d", "-t", "-u", "1000", "--console-socket", cs.path, running,
                 "sh", "-c", "stat -c %u $(tty)")
        assert res.returncode == 0, res.stderr
        out = _talk(cs.master(), b"")
    finally:
        cs.close()
    assert out.strip() == "1000"
    with open(host_out, "w") as f:
        res = bundle.onggi("exec", "-d", "-u", "1000", running, "sh", "-c", "echo x",
                           stdin=subprocess.DEVNULL, stdout=f, stderr=f, capture_output=False)
    assert res.returncode == 0
    time.sleep(0.3)
    st = os.stat(host_out)
    assert (st.st_uid, st.st_gid) == (0, 0) and host_out.read_text() == "x\n"
    res = bundle.onggi("exec", "-u", "1000", running, "true", stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       capture_output=False)
    assert res.returncode == 0
    after = os.stat("/dev/null")
    assert (after.st_uid, after.st_gid, after.st_mode) == (
        null_before.st_uid, null_before.st_gid, null_before.st_mode)


def test_foreground_tty_relays_through_our_terminal(bundle, running):
    """`exec -t` without a console socket, from a terminal (a pty here), as a user types."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(ONGGI[0], ONGGI + ["--root", str(bundle.root), "exec", "-t", running, "sh", "-c",
                                    'tty; read line; echo "got $line"; exit 5'])
    try:
        time.sleep(0.5)
        os.write(fd, b"typed\n")
        out = read_until_eof(fd, 10).decode(errors="replace").replace("\r", "")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 5
    lines = out.split("\n")
    assert lines[0].startswith("/dev/pts/") and "got typed" in lines
