"""The ``qr_entropy.EntropyService`` servicer and helpers to build and run a server.

Programmatic API (also used by other packages' tests):

- :func:`create_server` builds a bound, not yet started :class:`EntropyServer`.
- :func:`serve_in_background` is a context manager that starts a server (by default on a
  free loopback port) and yields the running :class:`EntropyServer`; its ``address``
  attribute is the target a client dials.

The bytes come from a *byte supply*, a callable ``n -> bytes`` (``os.urandom`` by default).
The server sends whatever the supply returns, unchecked, so a test can build a server that
answers short, long or garbage replies, or is slow, by passing its own supply.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
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

from qr_urandom_server.proto.qr_entropy.v1.entropy_service_pb2 import (
    EntropyRequest,
    EntropyResponse,
)
from qr_urandom_server.security import ApiKeyInterceptor
from qr_urandom_server.streams import RpcTracker

logger = logging.getLogger(__name__)

#: A callable that returns ``n`` random bytes (the server does not check what it returns).
ByteSupply = Callable[[int], bytes]

#: Fully-qualified gRPC service name (proto package ``qr_entropy``).
SERVICE_NAME = "qr_entropy.EntropyService"
#: Full method path of the unary RPC.
GET_ENTROPY_METHOD_PATH = f"/{SERVICE_NAME}/GetEntropy"
#: Full method path of the bidirectional streaming RPC.
STREAM_ENTROPY_METHOD_PATH = f"/{SERVICE_NAME}/StreamEntropy"

#: Default per-request cap on ``bytes_needed`` (1 MiB).
DEFAULT_MAX_BYTES_PER_REQUEST = 1 << 20
#: Default size of the worker thread pool (each open stream holds one worker).
DEFAULT_MAX_WORKERS = 32
#: Seconds a stream may wait for its next request before the server cancels it.
DEFAULT_STREAM_IDLE_TIMEOUT_S = 300.0
#: Default ``device_id`` put in every response.
DEFAULT_DEVICE_ID = "urandom"

_INT32_MAX = (1 << 31) - 1  # the largest cap: one message must stay well under 2 GiB
_UNIX_PREFIXES = ("unix:", "unix-abstract:")
_WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "": "127.0.0.1"}  # noqa: S104


class ServerBindError(RuntimeError):
    """The server could not listen on the requested address."""


def default_max_streams(max_workers: int) -> int:
    """Three quarters of the workers: the rest (at least one) stay for unary calls and health."""
    return max_workers - max(1, max_workers // 4)


def _validate_cap(max_bytes_per_request: int) -> int:
    if isinstance(max_bytes_per_request, bool) or not isinstance(max_bytes_per_request, int):
        raise TypeError(
            f"max_bytes_per_request must be an int, got {type(max_bytes_per_request).__name__}"
        )
    if not 1 <= max_bytes_per_request <= _INT32_MAX:
        raise ValueError(
            f"max_bytes_per_request must be between 1 and {_INT32_MAX}, got {max_bytes_per_request}"
        )
    return max_bytes_per_request


class EntropyServicer:
    """Implements ``GetEntropy`` (unary) and ``StreamEntropy`` (bidi) of the reference proto.

    ``bytes_needed`` must be in ``1..max_bytes_per_request``; anything else is answered with
    ``INVALID_ARGUMENT``. On a stream an invalid request ends the whole stream with that
    status (gRPC has no per-message status). Each response echoes the request's
    ``sequence_id`` and carries ``generation_timestamp_ns`` (wall clock, ns since the epoch,
    taken when the bytes were drawn) and ``device_id``. An exception from the byte supply is
    answered with ``UNAVAILABLE``. ``tracker`` caps open streams (``RESOURCE_EXHAUSTED``
    beyond it) and cancels idle ones.
    """

    def __init__(
        self,
        *,
        max_bytes_per_request: int = DEFAULT_MAX_BYTES_PER_REQUEST,
        device_id: str = DEFAULT_DEVICE_ID,
        byte_supply: ByteSupply = os.urandom,
        tracker: RpcTracker | None = None,
    ) -> None:
        self.max_bytes_per_request = _validate_cap(max_bytes_per_request)
        self.device_id = device_id
        self._byte_supply = byte_supply
        self.tracker = tracker or RpcTracker(
            default_max_streams(DEFAULT_MAX_WORKERS), DEFAULT_STREAM_IDLE_TIMEOUT_S
        )

    def _respond(self, request: EntropyRequest, context: grpc.ServicerContext) -> EntropyResponse:
        n = request.bytes_needed
        if n <= 0:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"bytes_needed must be a positive number of bytes, got {n}",
            )
        if n > self.max_bytes_per_request:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"bytes_needed={n} exceeds this server's per-request cap of "
                f"{self.max_bytes_per_request} bytes; ask for at most "
                f"{self.max_bytes_per_request} bytes per request",
            )
        try:
            data = bytes(self._byte_supply(n))
        except Exception:
            logger.exception("byte supply failed for bytes_needed=%d", n)
            context.abort(grpc.StatusCode.UNAVAILABLE, "entropy supply failed")
        return EntropyResponse(
            data=data,
            sequence_id=request.sequence_id,
            generation_timestamp_ns=time.time_ns(),
            device_id=self.device_id,
        )

    def GetEntropy(self, request: EntropyRequest, context: grpc.ServicerContext) -> EntropyResponse:
        """Answer one request with ``bytes_needed`` bytes."""
        logger.debug(
            "GetEntropy bytes_needed=%d sequence_id=%d peer=%s",
            request.bytes_needed,
            request.sequence_id,
            context.peer(),
        )
        with self.tracker.rpc():
            return self._respond(request, context)

    def StreamEntropy(
        self, request_iterator: Iterator[EntropyRequest], context: grpc.ServicerContext
    ) -> Iterator[EntropyResponse]:
        """Answer every request on the stream with exactly one response, in order."""
        with self.tracker.rpc(), self.tracker.stream(context) as stream:
            if stream is None:
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"this server already has {self.tracker.max_streams} streams open, its "
                    "limit; close one, use GetEntropy, or retry later",
                )
            logger.debug("StreamEntropy opened by %s", context.peer())
            try:
                for request in request_iterator:
                    stream.touch()
                    logger.debug(
                        "StreamEntropy bytes_needed=%d sequence_id=%d",
                        request.bytes_needed,
                        request.sequence_id,
                    )
                    yield self._respond(request, context)
                    stream.touch()
            except grpc.RpcError:
                if not stream.timed_out:
                    raise
                return  # cancelled for idleness: nothing left to tell the client
            logger.debug("StreamEntropy closed by %s", context.peer())

    def rpc_handler(self) -> grpc.GenericRpcHandler:
        """A generic handler that serves this servicer as ``qr_entropy.EntropyService``."""
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "GetEntropy": grpc.unary_unary_rpc_method_handler(
                    self.GetEntropy,
                    request_deserializer=EntropyRequest.FromString,
                    response_serializer=EntropyResponse.SerializeToString,
                ),
                "StreamEntropy": grpc.stream_stream_rpc_method_handler(
                    self.StreamEntropy,
                    request_deserializer=EntropyRequest.FromString,
                    response_serializer=EntropyResponse.SerializeToString,
                ),
            },
        )


def is_unix_address(address: str) -> bool:
    """True for ``unix:`` / ``unix-abstract:`` targets."""
    return address.startswith(_UNIX_PREFIXES)


def _local_only(bind_address: str) -> bool:
    """True for a unix socket or a loopback address: no other host can connect."""
    if is_unix_address(bind_address):
        return True
    host = _split_tcp(bind_address)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def _split_tcp(address: str) -> tuple[str, int]:
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"address must be HOST:PORT or unix:///path/to/socket, got {address!r}")
    return host, int(port_text)


def dial_address(bind_address: str, bound_port: int) -> str:
    """The target a local client dials to reach a server bound to ``bind_address``.

    The port is replaced by the one actually bound (so ``127.0.0.1:0`` becomes
    ``127.0.0.1:43121``) and a wildcard host by loopback. Unix targets are returned as is.
    """
    if is_unix_address(bind_address):
        return bind_address
    host, _ = _split_tcp(bind_address)
    host = _WILDCARD_HOSTS.get(host, host)
    return f"{host}:{bound_port}"


class EntropyServer:
    """A bound ``grpc.Server`` serving ``qr_entropy.EntropyService`` plus health/reflection.

    ``port`` is the bound TCP port (0 for unix sockets); ``address`` is the target a local
    client dials. Use as a context manager (start on enter, stop on exit) or call
    :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        *,
        server: grpc.Server,
        executor: futures.ThreadPoolExecutor,
        servicer: EntropyServicer,
        health_servicer: Any,
        bind_address: str,
        port: int,
        api_key_required: bool = False,
        tls: bool = False,
    ) -> None:
        self.server = server
        self.servicer = servicer
        self.health_servicer = health_servicer
        self.bind_address = bind_address
        self.port = port
        self.address = dial_address(bind_address, port)
        self._executor = executor
        self._stopped = False
        self.api_key_required = api_key_required
        self.tls = tls

    def start(self) -> None:
        """Start serving (returns immediately)."""
        self.server.start()
        logger.info(
            "serving %s on %s (max_bytes_per_request=%d, device_id=%r)",
            SERVICE_NAME,
            self.address,
            self.servicer.max_bytes_per_request,
            self.servicer.device_id,
        )
        if not (self.api_key_required and self.tls) and not _local_only(self.bind_address):
            logger.warning(
                "%s is reachable from the network without %s: anyone who can reach it can "
                "%s. Set an API key and TLS, or listen on 127.0.0.1 or a unix socket",
                self.bind_address,
                " or ".join(
                    name
                    for name, on in (("an API key", self.api_key_required), ("TLS", self.tls))
                    if not on
                ),
                "draw bytes from it" if not self.api_key_required else "read the bytes it sends",
            )

    def stop(self, grace: float | None = None) -> None:
        """Stop serving and block until done.

        Health turns NOT_SERVING first. For up to ``grace`` seconds the server then goes on
        answering, health included, until no entropy RPC is in flight; what is still open
        after that is cancelled (``None`` or 0: at once). :meth:`abort` cuts it short.
        """
        if self._stopped:
            return
        self._stopped = True
        if self.health_servicer is not None:
            self.health_servicer.enter_graceful_shutdown()
        if grace:
            self.servicer.tracker.wait_until_done(grace)
        self.servicer.tracker.close()
        self.server.stop(None).wait()
        self._executor.shutdown(wait=False)
        logger.info("stopped serving on %s", self.address)

    def abort(self) -> None:
        """Cancel every RPC at once, also during a graceful :meth:`stop` in another frame."""
        self.servicer.tracker.close()
        self.server.stop(None)

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Block until the server stops or ``timeout`` passes; True if it timed out."""
        timed_out: bool = self.server.wait_for_termination(timeout)
        return timed_out

    def __enter__(self) -> EntropyServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop(None)

    def __repr__(self) -> str:
        return f"EntropyServer(address={self.address!r})"


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
        _split_tcp(address)
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

    health_servicer = None
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
