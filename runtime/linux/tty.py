"""The container's terminal: a pty from the container's own devpts, and console sockets."""

from __future__ import annotations

import fcntl
import os
import stat
import struct
import termios

from runtime import messages

_TIOCSPTLCK = 0x40045431
_TIOCGPTPEER = 0x5441
_PTMX = os.makedev(5, 2)


def open_pty() -> tuple[int, int]:
    """(master, slave) from /dev/ptmx of the current root (the container's devpts). That
    node is the image's when the config binds /dev: it must be a pty multiplexer."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    st = os.fstat(master)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != _PTMX:
        os.close(master)
        raise RuntimeError("process.terminal: the container's /dev/ptmx is not a pty "
                           "multiplexer")
    fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))  # unlockpt
    # TIOCGPTPEER opens the peer through the master, never through a path in the container.
    slave = fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    return master, slave


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def copy_size(src: int, dst: int) -> None:
    """The window size of terminal `src` onto pty `dst` (SIGWINCH of a relay)."""
    if os.isatty(src):
        fcntl.ioctl(dst, termios.TIOCSWINSZ, fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8))


def make_controlling(slave: int) -> None:
    """Make the slave our stdio and controlling terminal (we are a session leader)."""
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    if slave > 2:
        os.close(slave)


def send_console(path: str, master: int) -> None:
    """Hand the pty master to the caller over --console-socket, named as runc names it."""
    messages.send_fd_to(path, b"/dev/ptmx", master)


def relay(master: int) -> None:
    """Foreground `run` with a terminal: copy our stdin to the pty and the pty to stdout
    until the container side closes (EIO once every slave fd is gone)."""
    import select
    import sys
    import tty as _tty

    saved = None
    stdin = sys.stdin.fileno()
    if os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        _tty.setraw(stdin, termios.TCSANOW)  # keep type-ahead (TCSAFLUSH would drop it)
        rows, cols = os.get_terminal_size(stdin)
        set_size(master, rows, cols)
    fds = [master, stdin]
    try:
        while True:
            try:
                ready, _, _ = select.select(fds, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    return
                os.write(sys.stdout.fileno(), data)
            if stdin in ready:
                data = os.read(stdin, 65536)
                if data:
                    os.write(master, data)
                else:
                    fds.remove(stdin)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        os.close(master)
