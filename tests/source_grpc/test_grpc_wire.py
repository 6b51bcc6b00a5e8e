"""The generic messages against the protobuf runtime and the real protocols' classes."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest
from grpc_test_servers import field1_reply

from qr_source_grpc.failures import MalformedReplyError
from qr_source_grpc.wire import decode_reply, decode_sequenced_reply, encode_request
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
    reply = EntropyResponse(data=b"abc", sequence_id=12, device_id="dev")
    assert decode_sequenced_reply(reply.SerializeToString()) == (b"abc", 12)


def test_foreign_field_2_is_read_as_it_comes(qrng_pb2: ModuleType) -> None:
    # qrng puts a timestamp in field 2; a string there would not be an integer at all.
    stamped = qrng_pb2.RandomResponse(data=b"abc", timestamp=1_700_000_000_000)
    assert decode_sequenced_reply(stamped.SerializeToString()) == (b"abc", 1_700_000_000_000)
    assert decode_sequenced_reply(field1_reply(b"abc", b"\x12\x02id")) == (b"abc", 0)


@pytest.mark.parametrize("count", COUNTS)
def test_request_encodes_like_qrng(count: int, qrng_pb2: ModuleType) -> None:
    assert encode_request(count) == qrng_pb2.RandomRequest(num_bytes=count).SerializeToString()
    assert qrng_pb2.RandomRequest.FromString(encode_request(count)).num_bytes == count


@pytest.mark.parametrize("data", [b"\x00", bytes(range(256)), b"\xff" * 20480])
def test_reply_decodes_qr_entropy_and_skips_its_other_fields(data: bytes) -> None:
    reply = EntropyResponse(
        data=data, sequence_id=7, generation_timestamp_ns=1_700_000_000, device_id="dev"
    )
    assert decode_reply(reply.SerializeToString()) == data


def test_reply_decodes_qrng(qrng_pb2: ModuleType) -> None:
    reply = qrng_pb2.RandomResponse(data=b"quantum", timestamp=5, device_id="firefly-1")
    assert decode_reply(reply.SerializeToString()) == b"quantum"


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
    assert decode_reply(unknown + field1_reply(b"bytes") + unknown) == b"bytes"


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
