"""The generic messages against the protobuf runtime and the real protocols' classes."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest
from grpc_test_servers import field1_reply

from qr_source_grpc.failures import MalformedReplyError
from qr_source_grpc.wire import ReplyFields, Said, decode_reply, encode_request
from qr_urandom_server.proto.qr_entropy.v1.entropy_service_pb2 import (
    EntropyRequest,
    EntropyResponse,
)

# The stub generator is a repository tool, not part of the package: load it from the
# checkout. Its version pin and error paths are tested with the urandom server's stubs.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import regen_protos
from proto_stubs import catalog, on_disk

PROTOS = catalog.PACKAGES["qr-source-grpc"]

COUNTS = [1, 127, 128, 300, 20480, 1 << 20, 5_242_880, (1 << 31) - 1]


@pytest.mark.parametrize("count", COUNTS)
def test_request_encodes_like_qr_entropy(count: int) -> None:
    assert encode_request(count) == EntropyRequest(bytes_needed=count).SerializeToString()
    assert EntropyRequest.FromString(encode_request(count)).bytes_needed == count


def test_stream_request_carries_qr_entropy_sequence_id() -> None:
    request = EntropyRequest.FromString(encode_request(20480, 12))
    assert (request.bytes_needed, request.sequence_id) == (20480, 12)
    reply = EntropyResponse(
        data=b"abc", sequence_id=12, generation_timestamp_ns=1_700_000_000_000_000_000,
        device_id="dev",
    )  # fmt: skip
    assert decode_reply(reply.SerializeToString()) == (
        b"abc",
        Said(sequence_id=12, timestamp=1_700_000_000_000_000_000, device_id="dev"),
    )


FIREFLY = ReplyFields(sequence_id=0, timestamp=2, device_id=3)


def test_foreign_fields_are_read_by_the_numbers_configured(qrng_pb2: ModuleType) -> None:
    stamped = qrng_pb2.RandomResponse(data=b"abc", timestamp=1_700_000_000_000, device_id="ff-1")
    raw = stamped.SerializeToString()
    assert decode_reply(raw, FIREFLY) == (b"abc", Said(None, 1_700_000_000_000, "ff-1"))
    # Read by the reference numbers, qrng's fields mean other things: why the firefly-1
    # profile names its server's numbers.
    assert decode_reply(raw) == (b"abc", Said(1_700_000_000_000, "ff-1", None))
    # A string in field 2 is no echo at all.
    assert decode_reply(field1_reply(b"abc", b"\x12\x02id")) == (b"abc", Said())


def test_a_server_that_says_nothing_leaves_every_word_none(qrng_pb2: ModuleType) -> None:
    bare = qrng_pb2.RandomResponse(data=b"abc").SerializeToString()
    assert decode_reply(bare, FIREFLY) == (b"abc", Said())


def test_every_wire_type_gives_a_value_a_record_can_hold() -> None:
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp(seconds=3, nanos=5).SerializeToString()
    raw = (
        field1_reply(b"x")
        + b"\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"  # field 3 varint: int64 -1
        + b"\x22" + bytes([len(stamp)]) + stamp  # field 4: a google.protobuf.Timestamp
        + b"\x29" + (7).to_bytes(8, "little")  # field 5 fixed64
        + b"\x32\x02\xff\x00"  # field 6: bytes that are neither text nor a message
    )  # fmt: skip
    fields = {
        3: -1,
        4: 3_000_000_005,
        5: 7,
        6: "ff00",
    }
    for number, value in fields.items():
        assert decode_reply(raw, ReplyFields(0, number, 0))[1].timestamp == value


@pytest.mark.parametrize("count", COUNTS)
def test_request_encodes_like_qrng(count: int, qrng_pb2: ModuleType) -> None:
    assert encode_request(count) == qrng_pb2.RandomRequest(num_bytes=count).SerializeToString()
    assert qrng_pb2.RandomRequest.FromString(encode_request(count)).num_bytes == count


@pytest.mark.parametrize("data", [b"\x00", bytes(range(256)), b"\xff" * 20480])
def test_reply_decodes_qr_entropy_and_skips_its_other_fields(data: bytes) -> None:
    reply = EntropyResponse(
        data=data, sequence_id=7, generation_timestamp_ns=1_700_000_000, device_id="dev"
    )
    assert decode_reply(reply.SerializeToString())[0] == data


def test_reply_decodes_qrng(qrng_pb2: ModuleType) -> None:
    reply = qrng_pb2.RandomResponse(data=b"quantum", timestamp=5, device_id="firefly-1")
    assert decode_reply(reply.SerializeToString())[0] == b"quantum"


def test_hand_encoded_reply_matches_protobuf() -> None:
    assert field1_reply(b"abc") == EntropyResponse(data=b"abc").SerializeToString()


def test_unknown_fields_of_every_wire_type_are_skipped() -> None:
    unknown = (
        b"\x10\x96\x01"  # field 2 varint
        b"\x19"
        + b"\x00" * 8  # field 3 fixed64
        + b"\x22\x02hi"  # field 4 length-delimited
        + b"\x2d"
        + b"\x00" * 4  # field 5 fixed32
        + b"\xa8\x06\x01"  # field 101 varint
    )
    assert decode_reply(unknown + field1_reply(b"bytes") + unknown)[0] == b"bytes"


@pytest.mark.parametrize(
    "reply",
    [
        b"",  # nothing at all
        EntropyResponse(sequence_id=3, device_id="x").SerializeToString(),  # no field 1
        field1_reply(b""),  # field 1 present but empty: proto3 cannot tell it from absent
        b"\x08\x05",  # field 1 as a varint, not bytes
    ],
)
def test_reply_without_bytes_in_field_1_is_an_error(reply: bytes) -> None:
    with pytest.raises(MalformedReplyError, match="no bytes in field 1"):
        decode_reply(reply)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x0a\xff\xff\xff\xff\x0f",  # length far beyond the message
        b"\x0a\x05ab",  # truncated field
        b"\x07",  # wire type 7 does not exist
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # an endless varint tag
    ],
)
def test_garbage_is_an_error(garbage: bytes) -> None:
    with pytest.raises(MalformedReplyError, match="not a protobuf message"):
        decode_reply(garbage)


def test_committed_stubs_are_current() -> None:
    stale = on_disk.stale_files([PROTOS])
    assert stale == [], f"{stale} are stale; run: python tools/regen_protos.py qr-source-grpc"


def test_regen_detects_and_repairs_stale_stubs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--out", str(tmp_path), PROTOS.name]
    assert regen_protos.main(["--check", *argv]) == 1  # stubs missing
    assert "regenerate with: python tools/regen_protos.py qr-source-grpc" in capsys.readouterr().err

    assert regen_protos.main(argv) == 0
    assert regen_protos.main(["--check", *argv]) == 0

    key = PROTOS.outputs()[0]
    stub = tmp_path / key
    stub.write_text(stub.read_text() + "# edited\n")
    assert on_disk.stale_files([PROTOS], tmp_path) == [key]
