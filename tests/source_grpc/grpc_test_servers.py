"""Small real gRPC servers for the qr-source-grpc tests.

Handlers take and return raw bytes, so a test decides exactly what goes on the wire:
short replies, garbage, stalls, rejections. Every server listens on 127.0.0.1:0 or a
unix socket and is stopped without grace when its ``with`` block ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc

from qr_source_grpc import GrpcEntropySource

# Builds a GrpcEntropySource from keyword settings (the ``make_source`` fixture).
SourceFactory = Callable[..., GrpcEntropySource]
UnaryBehaviour = Callable[[bytes, grpc.ServicerContext], bytes]
StreamBehaviour = Callable[[Iterator[bytes], grpc.ServicerContext], Iterator[bytes]]


class CallCounter:
    """Counts RPCs that reached a handler, from the server's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def hit(self) -> None:
        with self._lock:
            self.count += 1


def _handler(
    method_path: str, behaviour: UnaryBehaviour | StreamBehaviour, streaming: bool
) -> grpc.GenericRpcHandler:
    service, _, method = method_path.strip("/").partition("/")
    make = (
        grpc.stream_stream_rpc_method_handler if streaming else grpc.unary_unary_rpc_method_handler
    )
    return grpc.method_handlers_generic_handler(service, {method: make(behaviour)})


@contextmanager
def raw_server(
    unary: dict[str, UnaryBehaviour] | None = None,
    streams: dict[str, StreamBehaviour] | None = None,
    *,
    address: str = "127.0.0.1:0",
    credentials: grpc.ServerCredentials | None = None,
) -> Iterator[str]:
    """Serve raw-bytes handlers; yields the address a client dials."""
    handlers = [_handler(path, fn, False) for path, fn in (unary or {}).items()]
    handlers += [_handler(path, fn, True) for path, fn in (streams or {}).items()]
    executor = futures.ThreadPoolExecutor(max_workers=8)
    server = grpc.server(executor, handlers=handlers, options=[("grpc.so_reuseport", 0)])
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    server.start()
    try:
        yield address if address.startswith("unix:") else f"127.0.0.1:{port}"
    finally:
        server.stop(None).wait(5)
        executor.shutdown(wait=False, cancel_futures=True)


def field1_reply(data: bytes, extra: bytes = b"") -> bytes:
    """A reply message with ``data`` as field 1, encoded by hand, plus raw extra fields."""
    return b"\x0a" + _varint(len(data)) + data + extra


def varint_field(number: int, value: int) -> bytes:
    """One varint field, encoded by hand (for ``field1_reply``'s ``extra``)."""
    return _varint(number << 3) + _varint(value)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def requested_count(request: bytes) -> int:
    """Field 1 of a request, decoded by hand so the servers do not share the client's code."""
    return request_fields(request)[1]


def request_fields(request: bytes) -> dict[int, int]:
    """The varint fields of a request by number (a request carries nothing else)."""
    fields = {}
    position = 0
    while position < len(request):
        key, position = _read_varint(request, position)
        assert key & 7 == 0, f"field {key >> 3} is not a varint"
        fields[key >> 3], position = _read_varint(request, position)
    return fields


def _read_varint(buffer: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        assert position < len(buffer), "truncated varint"
        byte = buffer[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position
