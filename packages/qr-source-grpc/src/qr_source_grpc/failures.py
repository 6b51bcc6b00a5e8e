"""What can go wrong in one RPC, sorted by what the source does about it.

Transport failures (the server is unreachable, slow, or the stream broke) are retried
and count toward the circuit breaker. Rejections and malformed replies come from a
server that is up but will not give usable bytes for this request: retrying cannot
help, so they fail the draw at once.
"""

from __future__ import annotations

import re

import grpc


class FetchError(Exception):
    """One attempt failed; the message names the likely cause."""


class TransportError(FetchError):
    """Retried up to QR_GRPC_RETRY_COUNT; feeds the circuit breaker."""


class DeadlineExceededError(TransportError):
    """No (complete) reply before the attempt's deadline, whichever of gRPC or the
    transport's own wait noticed first."""


class OutOfTimeError(FetchError):
    """The draw's own deadline passed before the exchange could start (the stream was
    busy with other draws); not retried and not held against the server."""


class ServerRejectedError(FetchError):
    """The server refused the call; not retried."""


class CapacityRefusedError(ServerRejectedError):
    """RESOURCE_EXHAUSTED: a quota or size limit, or a server that has as many streams
    open as it allows. On a stream, the source asks by a unary call instead."""


class MalformedReplyError(ServerRejectedError):
    """The reply does not carry random bytes in field 1; not retried."""


# Each hint names the setting a user would most likely have to fix.
_REJECTION_HINTS = {
    grpc.StatusCode.UNAUTHENTICATED: (
        "the server did not accept the credentials — check QR_GRPC_API_KEY and "
        "QR_GRPC_API_KEY_HEADER"
    ),
    grpc.StatusCode.PERMISSION_DENIED: (
        "the credentials may not call {method} — check QR_GRPC_API_KEY"
    ),
    grpc.StatusCode.INVALID_ARGUMENT: (
        "the server refused a request for {count} bytes — if it caps bytes per call, set "
        "QR_GRPC_MAX_BYTES_PER_REQUEST at or below that cap; its request message must carry "
        "the byte count in field 1"
    ),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (
        "a quota or message size limit was hit asking for {count} bytes — lower "
        "QR_GRPC_MAX_BYTES_PER_REQUEST or raise the server's quota"
    ),
    grpc.StatusCode.UNIMPLEMENTED: ("the server has no method {method} — check {setting}"),
}


# What gRPC's TLS layer reports when the other side answers in plaintext (or not in TLS).
_TLS_MISMATCH = re.compile(r"handshake failed|WRONG_VERSION_NUMBER|TSI_PROTOCOL_FAILURE", re.I)


def from_rpc_error(error: grpc.RpcError, *, method: str, setting: str, count: int) -> FetchError:
    """Sort a failed call into a rejection or a transport failure, with a readable message."""
    # Every RpcError raised by a call also implements grpc.Call, which has code/details.
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (error.details() if isinstance(error, grpc.Call) else None) or str(error)
    hint = _REJECTION_HINTS.get(code)
    if hint is not None:
        cause = hint.format(method=method, setting=setting, count=count)
        rejected = (
            CapacityRefusedError
            if code is grpc.StatusCode.RESOURCE_EXHAUSTED
            else ServerRejectedError
        )
        return rejected(f"{code.name}: {cause} (server: {details})")
    if code is grpc.StatusCode.UNAVAILABLE and _TLS_MISMATCH.search(details):
        return TransportError(
            f"{code.name} calling {method}: the TLS handshake failed; with QR_GRPC_TLS=true the "
            "server must speak TLS — if it serves plaintext, set QR_GRPC_TLS=false, otherwise "
            f"check QR_GRPC_TLS_CA_FILE (details: {details})"
        )
    failure = DeadlineExceededError if code == grpc.StatusCode.DEADLINE_EXCEEDED else TransportError
    return failure(f"{code.name} calling {method}: {details}")
