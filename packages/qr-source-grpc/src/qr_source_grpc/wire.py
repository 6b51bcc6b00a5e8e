"""Encode requests and decode replies with the protobuf runtime.

Calls go out with raw bytes (no gRPC serializers) so that a reply which does not parse
fails here, with a message, instead of as an opaque INTERNAL status inside gRPC.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from google.protobuf.unknown_fields import UnknownFieldSet

from qr_source_grpc.failures import MalformedReplyError
from qr_source_grpc.proto.generic_entropy_pb2 import ByteCountRequest, BytesResponse


def encode_request(count: int, sequence_id: int = 0) -> bytes:
    """A request message with the byte count in field 1 and, if not zero, the sequence id
    in field 2."""
    return ByteCountRequest(count=count, sequence_id=sequence_id).SerializeToString()


class ReplyFields(NamedTuple):
    """Which response fields carry what a server says about its bytes (0: none).
    ``QR_GRPC_*_FIELD``; the defaults are ``qr_entropy.EntropyResponse``'s."""

    sequence_id: int = 2
    timestamp: int = 3
    device_id: int = 4


class Said(NamedTuple):
    """What one reply says about its bytes; None where it says nothing."""

    sequence_id: int | None = None
    timestamp: int | str | None = None
    device_id: str | None = None


REFERENCE_FIELDS = ReplyFields()


def decode_reply(raw: bytes, fields: ReplyFields = REFERENCE_FIELDS) -> tuple[bytes, Said]:
    """The bytes in field 1 of a reply, and what its other fields say by ``fields``.

    proto3 cannot tell an absent field 1 from an empty one, and an empty reply to a
    request for bytes is no use either way, so both are "no field 1". A field whose
    value is zero or empty was not sent (proto3 leaves defaults off the wire).
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
    values = _field_values(reply)
    sequence_id = values.get(fields.sequence_id)
    device_id = values.get(fields.device_id)
    return reply.data, Said(
        sequence_id if isinstance(sequence_id, int) else None,
        values.get(fields.timestamp),
        None if device_id is None else str(device_id),
    )


def _field_values(reply: BytesResponse) -> dict[int, int | str]:
    """Every field of a reply but the bytes, by number. Field 2 parses as the message's
    own integer when it is one; any other field or wire type the runtime keeps as unknown."""
    values: dict[int, int | str] = {}
    if reply.sequence_id:
        values[2] = reply.sequence_id
    unknown = UnknownFieldSet(reply)
    for index in range(len(unknown)):
        field = unknown[index]
        values.setdefault(int(field.field_number), _plain(int(field.wire_type), field.data))
    return values


_LENGTH_DELIMITED = 2
_INT64_WRAP = 1 << 64


def _plain(wire_type: int, data: Any) -> int | str:
    """An unknown field's value as a record can hold it: an integer as the signed int64
    it most likely is, text as text, a ``google.protobuf.Timestamp`` as nanoseconds,
    other bytes as hex."""
    if wire_type != _LENGTH_DELIMITED:
        value: int = int(data)
        return value - _INT64_WRAP if value >= _INT64_WRAP // 2 else value
    raw: bytes = bytes(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text.isprintable() and text:
        return text
    try:
        stamp = Timestamp.FromString(raw)
    except DecodeError:
        return raw.hex()
    return int(stamp.seconds) * 1_000_000_000 + int(stamp.nanos)
