"""Typed messages on the sync socket between the parent (launch) and the child (init).

One SOCK_SEQPACKET datagram per message: JSON {"type": ..., fields...}; fds ride along as
SCM_RIGHTS. The child only ever sends with these helpers, so no import happens after fork.
"""

from __future__ import annotations

# _socket/_json, not socket/json: their Python layers import enum and re (~15 ms per create).
import _socket
import struct  # not array: importing array pulls in collections.abc

from runtime import fastjson

USERNS_READY = "userns-ready"  # child -> parent: write my uid/gid maps now
MAPS_DONE = "maps-done"  # parent -> child: maps are written
INIT_PID = "init-pid"  # stage 1 -> parent: {"pid": host pid of the init}
CONSOLE = "console"  # init -> parent: the pty master rides along
CREATED = "created"  # init -> parent: set up, now blocked on the exec fifo
ERROR = "error"  # child -> parent: {"msg": one line}
RUN_HOOKS = "run-hooks"  # init -> parent: mounts done; run prestart and createRuntime now
HOOKS_DONE = "hooks-done"  # parent -> init: they passed; go on

_MAX = 65536


def pair() -> tuple[_socket.socket, _socket.socket]:
    return _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)


def send(sock: _socket.socket, kind: str, fds: list[int] | None = None, **fields: object) -> None:
    data = fastjson.dumps({"type": kind, **fields}).encode()
    rights = (
        [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds else []
    )
    sock.sendmsg([data], rights)


def recv(sock: _socket.socket) -> tuple[str, dict, list[int]]:
    """Next message; ("eof", {}, []) once every child holding the other end is gone."""
    data, ancillary, _flags, _addr = sock.recvmsg(_MAX, _socket.CMSG_SPACE(4 * 4))
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += struct.unpack(f"{len(payload) // 4}i", payload[: len(payload) // 4 * 4])
    if not data:
        return "eof", {}, fds
    msg = fastjson.loads(data)
    return msg.pop("type"), msg, fds


def expect(sock: _socket.socket, kind: str) -> dict:
    got, fields, _ = recv(sock)
    if got != kind:
        raise RuntimeError(f"sync: expected {kind}, got {got}")
    return fields
