"""Typed messages on the sync socket between the parent (launch) and the child (init).

One SOCK_SEQPACKET datagram per message: JSON {"type": ..., fields...}; fds ride along as
SCM_RIGHTS. The child only ever sends with these helpers, so no import happens after fork.
"""

from __future__ import annotations

import json
import socket

USERNS_READY = "userns-ready"  # child -> parent: write my uid/gid maps now
MAPS_DONE = "maps-done"  # parent -> child: maps are written
INIT_PID = "init-pid"  # stage 1 -> parent: {"pid": host pid of the init}
CONSOLE = "console"  # init -> parent: the pty master rides along
CREATED = "created"  # init -> parent: set up, now blocked on the exec fifo
ERROR = "error"  # child -> parent: {"msg": one line}

_MAX = 65536


def send(sock: socket.socket, kind: str, fds: list[int] | None = None, **fields: object) -> None:
    data = json.dumps({"type": kind, **fields}).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def recv(sock: socket.socket) -> tuple[str, dict, list[int]]:
    """Next message; ("eof", {}, []) once every child holding the other end is gone."""
    data, fds, _flags, _addr = socket.recv_fds(sock, _MAX, 4)
    if not data:
        return "eof", {}, fds
    msg = json.loads(data)
    return msg.pop("type"), msg, fds


def expect(sock: socket.socket, kind: str) -> dict:
    got, fields, _ = recv(sock)
    if got != kind:
        raise RuntimeError(f"sync: expected {kind}, got {got}")
    return fields
