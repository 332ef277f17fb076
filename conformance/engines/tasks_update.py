"""containerd's Tasks/Update, which ctr 1.6 has no command for, as one raw gRPC call.

The request is encoded by hand (three protobuf fields) so that no generated stubs are
needed: UpdateTaskRequest{container_id=1, resources=2 (google.protobuf.Any)}, with the
resources as JSON under the type URL containerd registers for specs.LinuxResources."""

from __future__ import annotations

import json

LINUX_RESOURCES = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
METHOD = "/containerd.services.tasks.v1.Tasks/Update"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def encode_request(container_id: str, resources: dict) -> bytes:
    anyval = _field(1, LINUX_RESOURCES.encode()) + _field(2, json.dumps(resources).encode())
    return _field(1, container_id.encode()) + _field(2, anyval)


def update_task(socket: str, namespace: str, container_id: str, resources: dict) -> None:
    """Raises grpc.RpcError with containerd's message when the update fails."""
    import grpc  # test-only dependency (pyproject's `test` extra)

    with grpc.insecure_channel(f"unix://{socket}") as ch:
        call = ch.unary_unary(METHOD)  # bytes in, bytes out: no (de)serializers
        call(encode_request(container_id, resources), timeout=30,
             metadata=[("containerd-namespace", namespace)])
