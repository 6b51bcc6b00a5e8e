"""Encode requests and decode replies with the protobuf runtime.

Calls go out with raw bytes (no gRPC serializers) so that a reply which does not parse
fails here, with a message, instead of as an opaque INTERNAL status inside gRPC.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from qr_source_grpc.failures import MalformedReplyError
from qr_source_grpc.proto.generic_entropy_pb2 import ByteCountRequest, BytesResponse


def encode_request(count: int, sequence_id: int = 0) -> bytes:
    """A request message with the byte count in field 1 and, if not zero, the sequence id
    in field 2."""
    return ByteCountRequest(count=count, sequence_id=sequence_id).SerializeToString()


def decode_reply(raw: bytes) -> bytes:
    """The bytes in field 1 of a reply; other fields are skipped."""
    return decode_sequenced_reply(raw)[0]


def decode_sequenced_reply(raw: bytes) -> tuple[bytes, int]:
    """The bytes in field 1 of a reply and the integer in field 2 (0 when absent or not an
    integer); other fields are skipped.

    proto3 cannot tell an absent field 1 from an empty one, and an empty reply to a
    request for bytes is no use either way, so both are "no field 1".
    """
    try:
        reply = BytesResponse.FromString(raw)
    except DecodeError as exc:
        raise MalformedReplyError(
            f"the reply ({len(raw)} bytes) is not a protobuf message ({exc}) — the "
            "method must answer with the random bytes in field 1"
        ) from None
    if not reply.data:
        raise MalformedReplyError(
            "the reply has no bytes in field 1 — the server's response message must carry "
            "the random bytes as field 1 (type bytes)"
        )
    return reply.data, reply.sequence_id
