"""qr-urandom-server against real gRPC servers (TCP loopback and unix sockets), no mocks."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

import qr_urandom_server
from qr_urandom_server.addresses import dial_address
from qr_urandom_server.launch import ServerBindError, create_server, serve_in_background
from qr_urandom_server.limits import DEFAULT_MAX_BYTES_PER_REQUEST
from qr_urandom_server.proto.qr_entropy.v1 import entropy_service_pb2 as pb2
from qr_urandom_server.proto.qr_entropy.v1 import entropy_service_pb2_grpc as pb2_grpc
from qr_urandom_server.server import EntropyServer
from qr_urandom_server.servicer import (
    GET_ENTROPY_METHOD_PATH,
    SERVER_NAME_METADATA,
    SERVICE_NAME,
    STREAM_ENTROPY_METHOD_PATH,
    EntropyServicer,
)

TIMEOUT = 5.0
CAP = 4096


@pytest.fixture
def tcp_server() -> Iterator[EntropyServer]:
    with serve_in_background(
        "127.0.0.1:0", max_bytes_per_request=CAP, device_id="test-dev"
    ) as server:
        yield server


@pytest.fixture
def unix_server(tmp_path: Path) -> Iterator[EntropyServer]:
    with serve_in_background(
        f"unix://{tmp_path / 'entropy.sock'}", max_bytes_per_request=CAP, device_id="test-dev"
    ) as server:
        yield server


@pytest.fixture(params=["tcp", "unix"])
def any_server(request: pytest.FixtureRequest) -> EntropyServer:
    name = "tcp_server" if request.param == "tcp" else "unix_server"
    server: EntropyServer = request.getfixturevalue(name)
    return server


@pytest.fixture
def channel(any_server: EntropyServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(any_server.address) as ch:
        yield ch


def _get(channel: grpc.Channel, n: int, seq: int = 0) -> pb2.EntropyResponse:
    stub = pb2_grpc.EntropyServiceStub(channel)
    response: pb2.EntropyResponse = stub.GetEntropy(
        pb2.EntropyRequest(bytes_needed=n, sequence_id=seq), timeout=TIMEOUT
    )
    return response


# --- happy path ---------------------------------------------------------------------------


def test_unary_returns_requested_bytes_and_metadata(channel: grpc.Channel) -> None:
    before = time.time_ns()
    response = _get(channel, 32, seq=41)
    after = time.time_ns()
    assert len(response.data) == 32
    assert response.sequence_id == 41
    assert response.device_id == "test-dev"
    assert before <= response.generation_timestamp_ns <= after


def test_unary_bytes_differ_between_calls(channel: grpc.Channel) -> None:
    assert _get(channel, 64).data != _get(channel, 64).data


def test_unary_accepts_exactly_the_cap(channel: grpc.Channel) -> None:
    assert len(_get(channel, CAP).data) == CAP


def test_bidi_answers_each_request_in_order(channel: grpc.Channel) -> None:
    stub = pb2_grpc.EntropyServiceStub(channel)
    sizes = [1, 16, 100, CAP, 7]
    requests = [
        pb2.EntropyRequest(bytes_needed=n, sequence_id=1000 + i) for i, n in enumerate(sizes)
    ]
    responses = list(stub.StreamEntropy(iter(requests), timeout=TIMEOUT))
    assert [r.sequence_id for r in responses] == [1000 + i for i in range(len(sizes))]
    assert [len(r.data) for r in responses] == sizes
    assert all(r.device_id == "test-dev" for r in responses)


def test_bidi_interleaved_request_response(channel: grpc.Channel) -> None:
    """One response per request as it arrives, not only after the client half-closes."""
    stub = pb2_grpc.EntropyServiceStub(channel)
    outbox: list[pb2.EntropyRequest | None] = []
    ready = threading.Condition()

    def requests() -> Iterator[pb2.EntropyRequest]:
        while True:
            with ready:
                ready.wait_for(lambda: bool(outbox), timeout=TIMEOUT)
                item = outbox.pop(0)
            if item is None:
                return
            yield item

    call = stub.StreamEntropy(requests(), timeout=TIMEOUT)
    for seq in range(3):
        with ready:
            outbox.append(pb2.EntropyRequest(bytes_needed=8, sequence_id=seq))
            ready.notify()
        response = next(call)
        assert response.sequence_id == seq
        assert len(response.data) == 8
    with ready:
        outbox.append(None)
        ready.notify()
    assert list(call) == []


def test_bidi_empty_stream_ends_ok(channel: grpc.Channel) -> None:
    stub = pb2_grpc.EntropyServiceStub(channel)
    call = stub.StreamEntropy(iter(()), timeout=TIMEOUT)
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK


def test_default_cap_is_one_mib() -> None:
    assert DEFAULT_MAX_BYTES_PER_REQUEST == 1 << 20
    with (
        serve_in_background() as server,
        grpc.insecure_channel(
            server.address, options=[("grpc.max_receive_message_length", 2 << 20)]
        ) as ch,
    ):
        assert len(_get(ch, 1 << 20).data) == 1 << 20
        with pytest.raises(grpc.RpcError) as err:
            _get(ch, (1 << 20) + 1)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- size validation ----------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -1, -(2**31), CAP + 1, 2**31 - 1])
def test_unary_bad_sizes_are_invalid_argument(channel: grpc.Channel, n: int) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _get(channel, n)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = err.value.details()
    assert str(n) in details
    if n > 0:
        assert f"cap of {CAP} bytes" in details
    else:
        assert "positive" in details


@pytest.mark.parametrize("n", [0, -5, CAP + 1])
def test_bidi_bad_size_ends_stream_with_invalid_argument(channel: grpc.Channel, n: int) -> None:
    stub = pb2_grpc.EntropyServiceStub(channel)
    requests = [
        pb2.EntropyRequest(bytes_needed=8, sequence_id=1),
        pb2.EntropyRequest(bytes_needed=n, sequence_id=2),
        pb2.EntropyRequest(bytes_needed=8, sequence_id=3),
    ]
    call = stub.StreamEntropy(iter(requests), timeout=TIMEOUT)
    first = next(call)
    assert first.sequence_id == 1
    with pytest.raises(grpc.RpcError) as err:
        next(call)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(n) in err.value.details()


def test_empty_request_message_is_invalid_argument(channel: grpc.Channel) -> None:
    """An empty message means bytes_needed = 0 on the wire."""
    call = channel.unary_unary(GET_ENTROPY_METHOD_PATH)
    with pytest.raises(grpc.RpcError) as err:
        call(b"", timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- standard protobuf on the wire -------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field1_bytes(message: bytes) -> bytes:
    """Hand-rolled scan for field 1 (length-delimited) in a protobuf message."""
    i = 0
    while i < len(message):
        key, i = _read_varint(message, i)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, i = _read_varint(message, i)
        elif wire_type == 2:
            length, i = _read_varint(message, i)
            if field == 1:
                return message[i : i + length]
            i += length
        else:
            raise AssertionError(f"unexpected wire type {wire_type}")
    raise AssertionError("field 1 not found")


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, i


def test_wire_format_is_standard_protobuf(channel: grpc.Channel) -> None:
    # Hand-encoded EntropyRequest{bytes_needed=300, sequence_id=9}: field 1 varint, field 2 varint.
    raw_request = b"\x08" + _varint(300) + b"\x10" + _varint(9)
    assert raw_request == pb2.EntropyRequest(bytes_needed=300, sequence_id=9).SerializeToString()

    raw_call = channel.unary_unary(GET_ENTROPY_METHOD_PATH)  # identity (de)serializers
    raw_response = raw_call(raw_request, timeout=TIMEOUT)
    assert isinstance(raw_response, bytes)

    decoded = pb2.EntropyResponse.FromString(raw_response)
    assert len(decoded.data) == 300
    assert decoded.sequence_id == 9
    assert decoded.device_id == "test-dev"
    # A generic client that only knows "field 1 = data" reads the same bytes.
    assert _field1_bytes(raw_response) == decoded.data


def test_wire_format_raw_bidi_stream(channel: grpc.Channel) -> None:
    raw_stream = channel.stream_stream(STREAM_ENTROPY_METHOD_PATH)
    requests = [b"\x08" + _varint(n) for n in (5, 200)]
    replies = list(raw_stream(iter(requests), timeout=TIMEOUT))
    assert [len(_field1_bytes(r)) for r in replies] == [5, 200]


def test_method_paths_match_the_proto_descriptor() -> None:
    service = pb2.DESCRIPTOR.services_by_name["EntropyService"]
    assert service.full_name == SERVICE_NAME == "qr_entropy.EntropyService"
    assert pb2.DESCRIPTOR.name == "qr_entropy/v1/entropy_service.proto"
    get, stream = service.methods_by_name["GetEntropy"], service.methods_by_name["StreamEntropy"]
    assert f"/{service.full_name}/{get.name}" == GET_ENTROPY_METHOD_PATH
    assert f"/{service.full_name}/{stream.name}" == STREAM_ENTROPY_METHOD_PATH
    assert not get.client_streaming
    assert not get.server_streaming
    assert stream.client_streaming
    assert stream.server_streaming
    fields = {f.name: (f.number, f.type) for f in pb2.EntropyRequest.DESCRIPTOR.fields}
    assert fields["bytes_needed"][0] == 1
    assert fields["sequence_id"][0] == 2
    numbers = {f.name: f.number for f in pb2.EntropyResponse.DESCRIPTOR.fields}
    assert numbers == {
        "data": 1,
        "sequence_id": 2,
        "generation_timestamp_ns": 3,
        "device_id": 4,
    }


# --- reflection and health ----------------------------------------------------------------


def test_reflection_lists_and_describes_the_service(channel: grpc.Channel) -> None:
    database = ProtoReflectionDescriptorDatabase(channel)
    services = database.get_services()
    assert SERVICE_NAME in services
    assert "grpc.health.v1.Health" in services

    pool = descriptor_pool.DescriptorPool(database)
    service = pool.FindServiceByName(SERVICE_NAME)
    assert service.file.name == "qr_entropy/v1/entropy_service.proto"
    assert {m.name for m in service.methods} == {"GetEntropy", "StreamEntropy"}
    request = pool.FindMessageTypeByName("qr_entropy.EntropyRequest")
    assert [(f.name, f.number) for f in request.fields] == [
        ("bytes_needed", 1),
        ("sequence_id", 2),
    ]


@pytest.mark.parametrize("service", ["", SERVICE_NAME])
def test_health_is_serving(channel: grpc.Channel, service: str) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_health_unknown_service_is_not_found(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.Check(health_pb2.HealthCheckRequest(service="nope.Nope"), timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_and_health_can_be_disabled() -> None:
    with (
        serve_in_background(enable_reflection=False, enable_health=False) as server,
        grpc.insecure_channel(server.address) as ch,
    ):
        assert len(_get(ch, 4).data) == 4
        with pytest.raises(grpc.RpcError) as err:
            health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT
            )
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError):
            ProtoReflectionDescriptorDatabase(ch).get_services()


# --- injectable byte supply (for other packages' fault tests) -----------------------------


def test_short_supply_is_sent_unchecked() -> None:
    with (
        serve_in_background(byte_supply=lambda n: b"\xab" * (n // 2)) as server,
        grpc.insecure_channel(server.address) as ch,
    ):
        assert _get(ch, 10).data == b"\xab" * 5


def test_supply_sees_requested_size_and_bytearray_is_accepted() -> None:
    seen: list[int] = []

    def supply(n: int) -> bytes:
        seen.append(n)
        return bytearray(range(n))  # type: ignore[return-value]

    with (
        serve_in_background(byte_supply=supply) as server,
        grpc.insecure_channel(server.address) as ch,
    ):
        assert _get(ch, 5).data == b"\x00\x01\x02\x03\x04"
    assert seen == [5]


def test_failing_supply_is_unavailable() -> None:
    def broken(n: int) -> bytes:
        raise OSError("device unplugged")

    with (
        serve_in_background(byte_supply=broken) as server,
        grpc.insecure_channel(server.address) as ch,
    ):
        with pytest.raises(grpc.RpcError) as err:
            _get(ch, 8)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "device unplugged" not in err.value.details()


# --- lifecycle, API and argument validation -----------------------------------------------


def test_unix_server_port_is_zero_and_address_is_target(tmp_path: Path) -> None:
    target = f"unix://{tmp_path / 's.sock'}"
    entropy_server = create_server(target)
    assert entropy_server.port == 0
    assert entropy_server.address == target
    entropy_server.stop(None)


def test_entropy_server_context_manager_and_repr() -> None:
    entropy_server = create_server("127.0.0.1:0")
    assert repr(entropy_server) == f"EntropyServer(address={entropy_server.address!r})"
    with entropy_server as running, grpc.insecure_channel(running.address) as ch:
        assert running is entropy_server
        assert len(_get(ch, 3).data) == 3
    assert entropy_server.wait_for_termination(timeout=0.1) is False


def test_stop_mid_run_makes_clients_unavailable() -> None:
    with serve_in_background() as server, grpc.insecure_channel(server.address) as ch:
        assert len(_get(ch, 8).data) == 8
        server.stop()
        server.stop()  # idempotent
        with pytest.raises(grpc.RpcError) as err:
            _get(ch, 8)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_port_in_use_raises_server_bind_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ServerBindError, match=f"127.0.0.1:{port}"):
            create_server(f"127.0.0.1:{port}")


def test_unix_socket_in_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(ServerBindError):
        create_server(f"unix://{tmp_path / 'missing' / 's.sock'}")


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1:http", "127.0.0.1:70000", ""])
def test_malformed_address_is_value_error(address: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        create_server(address)


@pytest.mark.parametrize("cap", [0, -1, 2**31])
def test_bad_cap_is_value_error(cap: int) -> None:
    with pytest.raises(ValueError, match="max_bytes_per_request"):
        create_server(max_bytes_per_request=cap)


@pytest.mark.parametrize("cap", [1.5, "10", True])
def test_non_int_cap_is_type_error(cap: object) -> None:
    with pytest.raises(TypeError, match="max_bytes_per_request"):
        EntropyServicer(max_bytes_per_request=cap)  # type: ignore[arg-type]


def test_bad_worker_count_is_value_error() -> None:
    with pytest.raises(ValueError, match="max_workers"):
        create_server(max_workers=0)


@pytest.mark.parametrize(
    ("bind", "port", "expected"),
    [
        ("127.0.0.1:0", 4321, "127.0.0.1:4321"),
        ("0.0.0.0:50051", 50051, "127.0.0.1:50051"),
        ("[::]:0", 99, "[::1]:99"),
        ("[::1]:0", 99, "[::1]:99"),
        (":0", 7, "127.0.0.1:7"),
        ("localhost:0", 5, "localhost:5"),
        ("unix:///tmp/x.sock", 0, "unix:///tmp/x.sock"),
        ("unix-abstract:qr", 0, "unix-abstract:qr"),
    ],
)
def test_dial_address(bind: str, port: int, expected: str) -> None:
    assert dial_address(bind, port) == expected


def test_package_exports_lazily() -> None:
    assert qr_urandom_server.serve_in_background is serve_in_background
    assert qr_urandom_server.SERVICE_NAME == SERVICE_NAME
    assert isinstance(qr_urandom_server.__version__, str)
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = qr_urandom_server.no_such_name


def test_every_entropy_call_names_the_server_in_its_initial_metadata(
    tcp_server: EntropyServer, unix_server: EntropyServer
) -> None:
    port = tcp_server.address.rpartition(":")[2]
    assert tcp_server.servicer.server_name == f"test-dev@{socket.gethostname()}:{port}"
    assert unix_server.servicer.server_name == (
        f"test-dev@{socket.gethostname()}:{unix_server.address}"
    )
    with grpc.insecure_channel(tcp_server.address) as channel:
        stub = pb2_grpc.EntropyServiceStub(channel)
        _, unary = stub.GetEntropy.with_call(pb2.EntropyRequest(bytes_needed=4), timeout=TIMEOUT)
        stream = stub.StreamEntropy(iter([pb2.EntropyRequest(bytes_needed=4)]), timeout=TIMEOUT)
        assert len(next(stream).data) == 4
        for call in (unary, stream):
            named = dict(call.initial_metadata())
            assert named[SERVER_NAME_METADATA] == tcp_server.servicer.server_name
