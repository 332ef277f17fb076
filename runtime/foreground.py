"""`run`: create + start, then (unless --detach) wait, forward signals and delete.

onggi becomes a child subreaper first, so the init (a grandchild, orphaned when the
middle process exits) is reparented to us and we can wait for it.
"""

from __future__ import annotations

import _signal as signal  # the enum-free core of `signal` (see container.py)
import os

from runtime import faults
from runtime.linux import syscalls

TYPE_CHECKING = False  # not typing's: importing typing costs exec ~3 ms (re, enum)
if TYPE_CHECKING:
    from runtime import launch
    from runtime.spec import Config

FORWARDED = (
    signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
    signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT, signal.SIGTSTP, signal.SIGALRM,
)


def run(cfg: Config, data: bytes, opts: launch.CreateOptions, *, detach: bool,
        keep: bool) -> int:
    from runtime import container, launch  # here: exec uses forward_to/wait only

    proc = cfg.process
    relay = None
    if proc is not None and proc.terminal and opts.console_socket is None:
        if detach:
            from runtime.errors import OnggiError

            raise OnggiError("process.terminal with --detach needs --console-socket")
        relay = _ConsoleRelay()
        opts.console_socket = relay.path
    if not detach:
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
        # Hold signals until the init's pid is known; then they are forwarded, not lost.
        signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        st = launch.create(cfg, data, opts)
    except BaseException:
        if relay:
            relay.close()
        raise
    if not detach:
        forward_to(st.pid)
    master = relay.accept() if relay else None
    try:
        container.start(opts.root, opts.cid)
    except BaseException:
        container.delete(opts.root, opts.cid, force=True)
        raise
    if detach:
        return 0
    faults.point("run:started")
    code = wait(st.pid, master)
    faults.point("run:exited")
    if not keep:
        container.delete(opts.root, opts.cid, force=True)
    return code


def forward_to(pid: int, resize=None) -> None:
    """Forward FORWARDED to `pid` from now on (and release those held so far). With a pty
    relay, `resize` copies our terminal's size to it on SIGWINCH instead: the kernel then
    tells the pty's foreground process group."""

    def forward(sig: int, _frame: object) -> None:
        if sig == signal.SIGWINCH and resize is not None:
            try:
                resize()
            except OSError:
                pass
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)


def wait(pid: int, master: int | None) -> int:
    """Reap until the init exits (signals are forwarded meanwhile); its code, or 128+N."""
    if master is not None:
        from runtime.linux import tty

        tty.relay(master)
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255  # lost our child: nothing left to wait for
        if got == pid:
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.WEXITSTATUS(status)


class _ConsoleRelay:
    """A private console socket for a foreground tty container (runc does the same)."""

    def __init__(self) -> None:
        import socket
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="onggi-tty-")
        self.path = os.path.join(self.dir, "console.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)

    def accept(self) -> int:
        import socket

        conn, _ = self.sock.accept()
        with conn:
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        self.close()
        return fds[0]

    def close(self) -> None:
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)
