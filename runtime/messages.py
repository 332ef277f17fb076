"""Typed messages on the sync socket between the parent (launch) and the child (init).

One SOCK_SEQPACKET datagram per message: JSON {"type": ..., fields...}; fds ride along as
SCM_RIGHTS. The child only ever sends with these helpers, so no import happens after fork.

`create` always walks the same steps, in this order (P: parent, C: stage 1, I: the init):
  P -> C  CGROUP_JOIN     {"tasks": [file, ...]}: the cgroups are made; stage 1 moves itself
                          into the v1 ones, writing "0" to each `tasks` file (the others, and
                          everything on other drivers, the parent joined it to already)
  C -> P  CGROUP_JOINED   {"failed": [file, ...]}: those it could not write; only when some
                          failed does it wait for
  P -> C  CGROUP_DONE     the parent moved it in by pid instead (or skipped them, as apply
                          does). Stage 1 is now in its cgroups: before it unshares a cgroup
                          namespace or runs anything of the container's
  C -> P  ID_MAPS         {"write": bool}: write my uid/gid maps now (when I made a user ns)
  P -> C  MAPS_DONE
  C -> P  INIT_PID        {"pid": host pid of the init}; stage 1 then exits
  P -> I  MOUNT_SOURCE    (only in a new user namespace with bind mounts) {"index": i}, the
                          bind's tree rides along, one message per bind, then
  P -> I  MOUNT_SOURCES_DONE
  I -> P  MOUNTS_DONE     the config's mounts are made, pivot_root is next
  P -> I  PARENT_READY    resources set, prestart and createRuntime hooks passed
  I -> P  CONSOLE         (only with process.terminal) the pty master rides along
  I -> P  SECCOMP         (only with linux.seccomp.listenerPath) the notify fd rides along,
                          sent right after the filter is loaded
  P -> I  SECCOMP_DONE    the seccomp agent has the fd (a notified syscall can be answered)
  I -> P  CREATED         set up; the user process is next once `start` opens the fifo
  P -> I  STATE_SAVED     state.json is on disk: the init may now block on the exec fifo
Any child step may instead send ERROR {"step", "errno", "msg"}; EOF means the child died.
EOF on the child's side means the runtime died: the child exits, so no init outlives a
`create` that did not finish (only state.json makes a container findable by the verbs).

`exec` walks fewer (P: parent, G: the process, its child, born in the container's pid
namespace when it has one, and in its cgroup2 dir: clone3, see cgroups/exec_join.Plan):
  G -> P  NS_JOINED       {"failed": [file, ...]}: G is in the container's namespaces and
                          root, and, first thing after the fork, wrote "0" to each v1
                          `tasks` file it was given, but for these
  P -> G  CGROUP_JOINED   P wrote G's pid where G could not: G is in the container's
                          cgroups; only now does it go on
  G -> P  CONSOLE         (only with process.terminal) the pty master rides along
  G -> P  EXECVE          set up, execve next
  EOF                     G exec'd: its end of the socket is close-on-exec. EOF without
                          EXECVE: G died on the way; ERROR after it: execve failed
"""

from __future__ import annotations

# _socket/_json, not socket/json: their Python layers import enum and re (~15 ms per create).
import _socket
import os
import struct  # not array: importing array pulls in collections.abc

from runtime import fastjson
from runtime.errors import OnggiError, reason

CGROUP_JOIN = "cgroup-join"
CGROUP_JOINED = "cgroup-joined"
CGROUP_DONE = "cgroup-done"
ID_MAPS = "id-maps"
MAPS_DONE = "maps-done"
INIT_PID = "init-pid"
MOUNTS_DONE = "mounts-done"
MOUNT_SOURCE = "mount-source"
MOUNT_SOURCES_DONE = "mount-sources-done"
PARENT_READY = "parent-ready"
CONSOLE = "console"
SECCOMP = "seccomp"
SECCOMP_DONE = "seccomp-done"
CREATED = "created"
EXECVE = "execve"
NS_JOINED = "ns-joined"
STATE_SAVED = "state-saved"
ERROR = "error"
EOF = "eof"

_MAX = 65536


class Gone(OnggiError):
    """EOF: the other side exited (or was killed) before the protocol ended."""

    def __init__(self) -> None:
        super().__init__("container init exited before it was ready")


class ChildError(OnggiError):
    """A step of the child failed: the step's name, the errno (None when not a syscall's)
    and a one-line message."""

    def __init__(self, step: str, errno: int | None, msg: str) -> None:
        super().__init__(msg)
        self.step = step
        self.errno = errno


def pair() -> tuple[_socket.socket, _socket.socket]:
    return _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)


def send(sock: _socket.socket, kind: str, fds: list[int] | None = None, **fields: object) -> None:
    data = fastjson.dumps({"type": kind, **fields}).encode()
    rights = (
        [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds else []
    )
    try:
        sock.sendmsg([data], rights)
    except (BrokenPipeError, ConnectionResetError):
        raise Gone() from None  # the other side died: say so, not "broken pipe"


def send_error(sock: _socket.socket, step: str, errno: int | None, msg: str) -> None:
    send(sock, ERROR, step=step, errno=errno, msg=msg)


def report(sock: _socket.socket, step: str, e: BaseException) -> bool:
    """A child's failure to the parent: ERROR (step, errno, one line). False when it could
    not go (the socket is closed: the init after `created`), so the caller may say it
    elsewhere; True too when the parent is gone (EOF): then there is no one to tell."""
    if isinstance(e, Gone):
        return True
    try:
        send_error(sock, step, e.errno if isinstance(e, OSError) else None, one_line(e))
    except Gone:
        return True
    except BaseException:  # noqa: BLE001 - a closed socket, whatever its error
        return False
    return True


def hand_over_notify(sock: _socket.socket, fd: int) -> None:
    """A child's seccomp notify fd to the parent, for the agent at listenerPath; returns
    once the agent has it, so that a notified syscall can be answered."""
    send(sock, SECCOMP, fds=[fd])
    expect(sock, SECCOMP_DONE)


def one_line(e: BaseException) -> str:
    """A child's error as one line. OSError's own str() reads "[Errno 1] ...": give the
    op, the path and the reason."""
    if isinstance(e, OSError) and e.strerror:
        if e.filename is None:
            return reason(e)
        if ":" in e.strerror:  # syscalls' errors already name the op
            return f"{reason(e)} ({e.filename})"
        return f"{e.filename}: {reason(e)}"
    return str(e) or type(e).__name__


def dial(path: str) -> _socket.socket:
    """A stream connection to the unix socket at `path` (a --console-socket, a seccomp
    agent's listenerPath); OSError when it cannot be made."""
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(path)
    except BaseException:
        s.close()
        raise
    return s


def send_fd(sock: _socket.socket, data: bytes, fd: int) -> None:
    """`data` with `fd` riding along (SCM_RIGHTS), in one message."""
    sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", fd))])


def send_fd_to(path: str, data: bytes, fd: int) -> None:
    """send_fd over a new connection to `path`, closed after."""
    s = dial(path)
    try:
        send_fd(s, data, fd)
    finally:
        s.close()


def recv(sock: _socket.socket) -> tuple[str, dict, list[int]]:
    """Next message; (EOF, {}, []) once every child holding the other end is gone."""
    try:
        data, ancillary, _flags, _addr = sock.recvmsg(_MAX, _socket.CMSG_SPACE(4 * 4))
    except ConnectionResetError:  # the other side died with our last message unread
        return EOF, {}, []
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += struct.unpack(f"{len(payload) // 4}i", payload[: len(payload) // 4 * 4])
    if not data:
        return EOF, {}, fds
    msg = fastjson.loads(data)
    return msg.pop("type"), msg, fds


def expect(sock: _socket.socket, *kinds: str) -> tuple[str, dict, list[int]]:
    """The next message, which must be one of `kinds`. A child's ERROR raises ChildError;
    EOF or anything else raises OnggiError (the child died or broke the protocol)."""
    got, fields, fds = recv(sock)
    if got in kinds:
        return got, fields, fds
    for fd in fds:
        os.close(fd)
    if got == ERROR:
        raise ChildError(fields.get("step", "?"), fields.get("errno"), fields.get("msg", "?"))
    if got == EOF:
        raise Gone()
    raise OnggiError(f"sync: expected {' or '.join(kinds)}, got {got}")
