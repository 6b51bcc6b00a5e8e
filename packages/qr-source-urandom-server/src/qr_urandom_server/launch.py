"""Build and bind an entropy server, or run one for the length of a ``with`` block.

Programmatic API (also used by other packages' tests):

- :func:`create_server` builds a bound, not yet started
  :class:`~qr_urandom_server.server.EntropyServer`.
- :func:`serve_in_background` is a context manager that starts a server (by default on a
  free loopback port) and yields it running; its ``address`` attribute is the target a
  client dials.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc
from grpc_health.v1 import (  # type: ignore[import-untyped, unused-ignore]
    health,
    health_pb2,
    health_pb2_grpc,
)
from grpc_reflection.v1alpha import reflection  # type: ignore[import-untyped, unused-ignore]

from qr_urandom_server.addresses import is_unix_address, split_tcp
from qr_urandom_server.limits import (
    DEFAULT_MAX_BYTES_PER_REQUEST,
    DEFAULT_MAX_WORKERS,
    DEFAULT_STREAM_IDLE_TIMEOUT_S,
    default_max_streams,
)
from qr_urandom_server.security import ApiKeyInterceptor
from qr_urandom_server.server import EntropyServer
from qr_urandom_server.servicer import (
    DEFAULT_DEVICE_ID,
    SERVICE_NAME,
    ByteSupply,
    EntropyServicer,
)
from qr_urandom_server.streams import RpcTracker


class ServerBindError(RuntimeError):
    """The server could not listen on the requested address."""


def create_server(
    address: str = "127.0.0.1:0",
    *,
    max_bytes_per_request: int = DEFAULT_MAX_BYTES_PER_REQUEST,
    max_workers: int = DEFAULT_MAX_WORKERS,
    max_streams: int | None = None,
    stream_idle_timeout_s: float = DEFAULT_STREAM_IDLE_TIMEOUT_S,
    device_id: str = DEFAULT_DEVICE_ID,
    byte_supply: ByteSupply = os.urandom,
    enable_reflection: bool = True,
    enable_health: bool = True,
    api_key: str | None = None,
    api_key_header: str = "api-key",
    credentials: grpc.ServerCredentials | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> EntropyServer:
    """Build and bind (but do not start) an entropy server on ``address``.

    ``address`` is ``HOST:PORT`` (port 0 picks a free port) or ``unix:///path``. At most
    ``max_streams`` streams (default three quarters of ``max_workers``) are open at once, so the
    other workers stay free for unary calls and health; a stream with no request for
    ``stream_idle_timeout_s`` (0: never) is cancelled. With ``api_key``, every call but
    health's must carry it in the ``api_key_header`` metadata; with ``credentials``
    (:func:`qr_urandom_server.security.server_credentials`) the port speaks TLS. Raises
    :class:`ValueError` for bad arguments and :class:`ServerBindError` when the address
    cannot be bound (in use, permission denied, missing directory).
    """
    if max_workers < 1:
        raise ValueError(f"max_workers must be >= 1, got {max_workers}")
    if max_streams is None:
        max_streams = default_max_streams(max_workers)
    if not 0 <= max_streams < max_workers:
        raise ValueError(
            f"max_streams must be between 0 and max_workers - 1 ({max_workers - 1}), got "
            f"{max_streams}: each open stream holds a worker, and unary calls and health "
            "need at least one"
        )
    if not stream_idle_timeout_s >= 0:
        raise ValueError(f"stream_idle_timeout_s must be >= 0, got {stream_idle_timeout_s}")
    if not is_unix_address(address):
        split_tcp(address)  # a malformed address is a ValueError before anything is built
    interceptors: list[grpc.ServerInterceptor] = (
        [ApiKeyInterceptor(api_key, api_key_header)] if api_key else []
    )
    servicer = EntropyServicer(
        max_bytes_per_request=max_bytes_per_request,
        device_id=device_id,
        byte_supply=byte_supply,
        tracker=RpcTracker(max_streams, stream_idle_timeout_s),
    )
    executor = futures.ThreadPoolExecutor(
        max_workers=max_workers, thread_name_prefix="qr-urandom-server"
    )
    # Without this Linux lets a second server bind a port that is already in use.
    server_options = [("grpc.so_reuseport", 0), *options]
    server = grpc.server(executor, options=server_options, interceptors=interceptors)
    server.add_generic_rpc_handlers((servicer.rpc_handler(),))

    health_servicer = _add_health_and_reflection(
        server, enable_health=enable_health, enable_reflection=enable_reflection
    )

    try:
        port = (
            server.add_secure_port(address, credentials)
            if credentials is not None
            else server.add_insecure_port(address)
        )
    except RuntimeError as exc:  # recent grpcio raises; older releases returned 0
        port = 0
        cause: Exception | None = exc
    else:
        cause = None
    if port == 0:
        executor.shutdown(wait=False)
        raise ServerBindError(
            f"cannot listen on {address!r}: the address is in use, not permitted, "
            "or its directory does not exist (GRPC_VERBOSITY=debug shows gRPC's reason)"
        ) from cause
    if is_unix_address(address):
        port = 0
    where = str(port) if port else address
    # The host name tells replicas apart (in Kubernetes, the pod's name); the port,
    # servers that share a host.
    servicer.server_name = f"{device_id}@{socket.gethostname()}:{where}"
    return EntropyServer(
        server=server,
        executor=executor,
        servicer=servicer,
        health_servicer=health_servicer,
        bind_address=address,
        port=port,
        api_key_required=bool(api_key),
        tls=credentials is not None,
    )


def _add_health_and_reflection(
    server: grpc.Server, *, enable_health: bool, enable_reflection: bool
) -> Any:
    """Register the optional services; returns the health servicer (None without health)."""
    health_servicer = None
    # Reflection lists every service the server answers, so it is registered last.
    service_names = [SERVICE_NAME]
    if enable_health:
        health_servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        for name in ("", SERVICE_NAME):
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        service_names.append(health.SERVICE_NAME)
    if enable_reflection:
        service_names.append(reflection.SERVICE_NAME)
        reflection.enable_server_reflection(service_names, server)
    return health_servicer


@contextmanager
def serve_in_background(
    address: str = "127.0.0.1:0", *, grace: float | None = None, **options: Any
) -> Iterator[EntropyServer]:
    """Run a server on gRPC's own threads for the duration of the ``with`` block.

    ``options`` are :func:`create_server`'s. Yields the started :class:`EntropyServer`;
    dial ``server.address``. On exit the server stops (``grace`` seconds for RPCs in
    flight; default: cancel them at once). Calling ``server.stop()`` inside the block
    simulates a server that goes away mid-run.
    """
    entropy_server = create_server(address, **options)
    entropy_server.start()
    try:
        yield entropy_server
    finally:
        entropy_server.stop(grace)
