"""The ``qr_entropy.EntropyService`` servicer: answers each request with bytes from a supply.

The bytes come from a *byte supply*, a callable ``n -> bytes`` (``os.urandom`` by default).
The servicer sends whatever the supply returns, unchecked, so a test can build a server that
answers short, long or garbage replies, or is slow, by passing its own supply.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator

import grpc

from qr_urandom_server.limits import (
    DEFAULT_MAX_BYTES_PER_REQUEST,
    DEFAULT_MAX_WORKERS,
    DEFAULT_STREAM_IDLE_TIMEOUT_S,
    default_max_streams,
    validate_max_bytes_per_request,
)
from qr_urandom_server.proto.qr_entropy.v1.entropy_service_pb2 import (
    EntropyRequest,
    EntropyResponse,
)
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
#: Default ``device_id`` put in every response.
DEFAULT_DEVICE_ID = "urandom"
#: Initial-metadata key under which the server names itself on every entropy RPC, so a
#: client balancing over several servers can record which one answered (gRPC gives
#: clients no peer address).
SERVER_NAME_METADATA = "qr-entropy-server"


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
        self.max_bytes_per_request = validate_max_bytes_per_request(max_bytes_per_request)
        self.device_id = device_id
        #: Sent as ``SERVER_NAME_METADATA``; set once the server knows its port.
        self.server_name: str | None = None
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
            self._name_self(context)
            return self._respond(request, context)

    def _name_self(self, context: grpc.ServicerContext) -> None:
        if self.server_name is not None:
            context.send_initial_metadata(((SERVER_NAME_METADATA, self.server_name),))

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
            self._name_self(context)
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
