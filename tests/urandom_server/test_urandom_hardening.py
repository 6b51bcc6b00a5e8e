"""The server under abuse: idle streams, huge sizes, strangers, eavesdroppers, shutdown."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from test_urandom_cli import _command, _Server

from qr_urandom_server import serve_in_background
from qr_urandom_server.launch import create_server
from qr_urandom_server.proto.qr_entropy.v1 import entropy_service_pb2 as pb2
from qr_urandom_server.proto.qr_entropy.v1 import entropy_service_pb2_grpc as pb2_grpc
from qr_urandom_server.security import (
    ApiKeyInterceptor,
    SecurityConfigError,
    _refusing_handler,
    load_api_key,
    server_credentials,
)

TIMEOUT = 10.0
KEY = "urandom-test-key-5c1e9a77d3"


def get(channel: grpc.Channel, n: int = 8, **kwargs: object) -> pb2.EntropyResponse:
    reply: pb2.EntropyResponse = pb2_grpc.EntropyServiceStub(channel).GetEntropy(
        pb2.EntropyRequest(bytes_needed=n, sequence_id=1), timeout=TIMEOUT, **kwargs
    )
    return reply


def health(channel: grpc.Channel, timeout: float = TIMEOUT) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="qr_entropy.EntropyService"), timeout=timeout
    )
    status: int = reply.status
    return status


class HeldStream:
    """A StreamEntropy call that sends one request, then stays open and silent."""

    def __init__(self, channel: grpc.Channel, **kwargs: object) -> None:
        self.release = threading.Event()
        self.call = pb2_grpc.EntropyServiceStub(channel).StreamEntropy(
            self._requests(), timeout=60, **kwargs
        )

    def _requests(self) -> Iterator[pb2.EntropyRequest]:
        yield pb2.EntropyRequest(bytes_needed=4, sequence_id=7)
        self.release.wait(60)

    def first(self) -> grpc.StatusCode | int:
        """The first reply's sequence_id, or the status that ended the stream."""
        try:
            return int(next(self.call).sequence_id)
        except grpc.RpcError as exc:
            return exc.code()

    def end(self) -> grpc.StatusCode:
        try:
            for _ in self.call:
                pass
        except grpc.RpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    def close(self) -> None:
        self.release.set()
        self.call.cancel()


# --- idle streams -------------------------------------------------------------------------


def test_idle_streams_leave_unary_calls_and_health_answering() -> None:
    with serve_in_background() as server, grpc.insecure_channel(server.address) as channel:
        streams: list[HeldStream] = []
        outcomes: list[grpc.StatusCode | int] = []
        try:
            for _ in range(2):
                more = [HeldStream(channel) for _ in range(32)]
                streams += more
                outcomes += [stream.first() for stream in more]
                assert len(get(channel, 32).data) == 32
                assert health(channel) == health_pb2.HealthCheckResponse.SERVING
            assert outcomes[:32] == [7] * 32
            # 48 of the 64 workers may hold streams; more are refused, not queued.
            assert outcomes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 16
        finally:
            for stream in streams:
                stream.close()
        # Closed streams free their places.
        again = HeldStream(channel)
        try:
            assert again.first() == 7
        finally:
            again.close()


def test_refused_stream_says_why() -> None:
    with (
        serve_in_background(max_workers=2, max_streams=1) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        held = HeldStream(channel)
        assert held.first() == 7
        refused = HeldStream(channel)
        try:
            with pytest.raises(grpc.RpcError) as caught:
                next(refused.call)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "1 streams open" in caught.value.details()
        finally:
            held.close()
            refused.close()


def test_an_idle_stream_is_cancelled_and_a_busy_one_is_not() -> None:
    with (
        serve_in_background(stream_idle_timeout_s=1.0) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        idle = HeldStream(channel)
        busy_ok = threading.Event()

        def keep_busy() -> None:
            stop = time.monotonic() + 3.0

            def requests() -> Iterator[pb2.EntropyRequest]:
                while time.monotonic() < stop:
                    yield pb2.EntropyRequest(bytes_needed=4)

            replies = pb2_grpc.EntropyServiceStub(channel).StreamEntropy(requests(), timeout=60)
            if sum(1 for _ in replies) > 0:
                busy_ok.set()

        busy = threading.Thread(target=keep_busy)
        busy.start()
        try:
            assert idle.first() == 7
            assert idle.end() == grpc.StatusCode.CANCELLED
        finally:
            idle.close()
            busy.join(30)
        assert busy_ok.is_set()
        assert len(get(channel).data) == 8


def test_stream_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_streams"):
        create_server(max_workers=4, max_streams=4)
    with pytest.raises(ValueError, match="stream_idle_timeout_s"):
        create_server(stream_idle_timeout_s=-1.0)


# --- sizes beyond int32 -------------------------------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@pytest.mark.parametrize("count", [2**32 + 16, 2**31, 2**63 - 1])
def test_a_count_beyond_int32_is_refused_not_wrapped(count: int) -> None:
    with serve_in_background() as server, grpc.insecure_channel(server.address) as channel:
        # Field 1 as a raw varint, as a client that declares it uint64 would send it.
        raw = channel.unary_unary("/qr_entropy.EntropyService/GetEntropy")
        with pytest.raises(grpc.RpcError) as caught:
            raw(b"\x08" + varint(count), timeout=TIMEOUT)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"bytes_needed={count}" in caught.value.details()


# --- API key ------------------------------------------------------------------------------


@pytest.fixture
def keyed_channel() -> Iterator[grpc.Channel]:
    with (
        serve_in_background(api_key=KEY, api_key_header="X-QR-Key") as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        yield channel


@pytest.mark.parametrize(
    "metadata", [None, [("x-qr-key", "wrong")], [("api-key", KEY)]], ids=["none", "wrong", "other"]
)
def test_calls_without_the_key_are_unauthenticated(
    keyed_channel: grpc.Channel, metadata: list[tuple[str, str]] | None
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        get(keyed_channel, metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "'x-qr-key'" in caught.value.details()
    assert KEY not in caught.value.details()
    stream = HeldStream(keyed_channel, metadata=metadata)
    try:
        assert stream.first() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        stream.close()
    with pytest.raises(grpc.RpcError):
        ProtoReflectionDescriptorDatabase(keyed_channel).get_services()


def test_calls_with_the_key_are_served_and_health_needs_none(keyed_channel: grpc.Channel) -> None:
    metadata = [("x-qr-key", KEY)]
    assert len(get(keyed_channel, 16, metadata=metadata).data) == 16
    stream = HeldStream(keyed_channel, metadata=metadata)
    try:
        assert stream.first() == 7
    finally:
        stream.close()
    assert health(keyed_channel) == health_pb2.HealthCheckResponse.SERVING


def test_the_interceptor_never_shows_the_key() -> None:
    assert KEY not in repr(ApiKeyInterceptor(KEY))
    with pytest.raises(ValueError, match="metadata key"):
        ApiKeyInterceptor(KEY, "grpc-key")


def test_the_key_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    variable = "QR_URANDOM_SERVER_API_KEY"
    key_file = tmp_path / "key"
    key_file.write_text(f"  {KEY}\n")
    assert load_api_key(None, {}) is None
    assert load_api_key(None, {variable: f"{KEY}\n"}) == KEY
    assert load_api_key(str(key_file), {}) == KEY
    with pytest.raises(SecurityConfigError, match="use one of them"):
        load_api_key(str(key_file), {variable: KEY})
    key_file.write_text("\n")
    with pytest.raises(SecurityConfigError, match="is empty"):
        load_api_key(str(key_file), {})
    with pytest.raises(SecurityConfigError, match="cannot read"):
        load_api_key(str(tmp_path / "absent"), {})


def test_a_refused_call_keeps_the_shape_of_the_method() -> None:
    def behaviour(request: object, context: object) -> None:
        return None

    for make in (
        grpc.unary_unary_rpc_method_handler,
        grpc.unary_stream_rpc_method_handler,
        grpc.stream_unary_rpc_method_handler,
        grpc.stream_stream_rpc_method_handler,
    ):
        like = make(behaviour)
        refusing = _refusing_handler(like, "api-key")
        assert (refusing.request_streaming, refusing.response_streaming) == (
            like.request_streaming,
            like.response_streaming,
        )
        assert (
            refusing.unary_unary
            or refusing.unary_stream
            or refusing.stream_unary
            or (refusing.stream_stream)
        )


# --- TLS ----------------------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _issue(
    name: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey]
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer[0])
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throw-away CA that signs a server certificate for localhost and a client one."""
    folder = tmp_path_factory.mktemp("pki")

    def save(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qr test CA")])
    ca = (
        _issue("qr test CA", ca_key, (ca_name, ca_key))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    save(folder / "ca", ca, ca_key)
    for role, names in (
        ("server", [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        ("client", [x509.DNSName("qr-client")]),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            _issue(role, key, (ca_name, ca_key))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        save(folder / role, cert, key)
    return Pki(
        ca=folder / "ca.crt",
        server_cert=folder / "server.crt",
        server_key=folder / "server.key",
        client_cert=folder / "client.crt",
        client_key=folder / "client.key",
    )


def tls_channel(target: str, pki: Pki, client_cert: bool) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=pki.client_key.read_bytes() if client_cert else None,
        certificate_chain=pki.client_cert.read_bytes() if client_cert else None,
    )
    return grpc.secure_channel(target, credentials)


def test_tls_serves_tls_clients_only(pki: Pki) -> None:
    credentials = server_credentials(str(pki.server_cert), str(pki.server_key))
    with serve_in_background(credentials=credentials) as server:
        with tls_channel(server.address, pki, client_cert=False) as channel:
            assert len(get(channel).data) == 8
        with grpc.insecure_channel(server.address) as plain, pytest.raises(grpc.RpcError) as caught:
            get(plain)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_needs_a_client_certificate(pki: Pki) -> None:
    credentials = server_credentials(str(pki.server_cert), str(pki.server_key), str(pki.ca))
    with serve_in_background(credentials=credentials) as server:
        with tls_channel(server.address, pki, client_cert=True) as channel:
            assert len(get(channel).data) == 8
        with (
            tls_channel(server.address, pki, client_cert=False) as stranger,
            pytest.raises(grpc.RpcError) as caught,
        ):
            get(stranger)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_an_unreadable_tls_file_is_a_clear_error(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--tls-key-file") as caught:
        server_credentials(str(pki.server_cert), str(tmp_path / "missing.key"))
    assert "No such file" in str(caught.value)


def test_an_open_network_address_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="qr_urandom_server"):
        with serve_in_background("0.0.0.0:0"):
            pass
        assert "without an API key or TLS" in caplog.text
        caplog.clear()
        with serve_in_background("127.0.0.1:0", api_key=KEY):
            pass
    assert caplog.text == ""


# --- the command line: key and TLS files, real signals ------------------------------------


def test_cli_takes_the_key_from_the_environment(spawn_server: SpawnServer) -> None:
    server = spawn_server(["--address", "127.0.0.1:0"], {"QR_URANDOM_SERVER_API_KEY": KEY})
    target = server.wait_listening()
    with grpc.insecure_channel(target) as channel:
        assert len(get(channel, metadata=[("api-key", KEY)]).data) == 8
        with pytest.raises(grpc.RpcError) as caught:
            get(channel)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert KEY.encode() not in Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
    code, stderr = server.stop(signal.SIGTERM)
    assert code == 0
    assert KEY not in stderr


def test_cli_takes_the_key_and_tls_from_files(
    spawn_server: SpawnServer, pki: Pki, tmp_path: Path
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    server = spawn_server(
        [
            "--address",
            "127.0.0.1:0",
            "--api-key-file",
            str(key_file),
            "--api-key-header",
            "x-qr-key",
            "--tls-cert-file",
            str(pki.server_cert),
            "--tls-key-file",
            str(pki.server_key),
        ]
    )
    target = server.wait_listening()
    with tls_channel(target, pki, client_cert=False) as channel:
        assert len(get(channel, metadata=[("x-qr-key", KEY)]).data) == 8
    code, _ = server.stop(signal.SIGTERM)
    assert code == 0


@pytest.mark.parametrize(
    ("argv", "env", "code", "message"),
    [
        (["--api-key", KEY], {}, 2, "not taken on the command line"),
        (["--api-key-file", "/nonexistent/key"], {}, 1, "cannot read --api-key-file"),
        (["--api-key-file", "/dev/null"], {}, 1, "is empty"),
        (["--api-key-file", "/dev/null"], {"QR_URANDOM_SERVER_API_KEY": KEY}, 1, "use one"),
        (["--tls-cert-file", "/x.crt"], {}, 2, "needs both"),
        (["--tls-client-ca-file", "/ca.crt"], {}, 2, "--tls-client-ca-file needs"),
        (["--workers", "4", "--max-streams", "4"], {}, 2, "max_streams"),
    ],
)
def test_cli_refuses_unusable_security_settings(
    argv: list[str], env: dict[str, str], code: int, message: str
) -> None:
    done = subprocess.run(
        [*_command(), "--address", "127.0.0.1:0", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )
    assert done.returncode == code
    assert message in done.stderr
    assert KEY not in done.stderr + done.stdout


def test_sigterm_grace_reports_not_serving_and_stays_reachable(
    spawn_server: SpawnServer, tmp_path: Path
) -> None:
    target = f"unix://{tmp_path / 'grace.sock'}"
    server = spawn_server(["--address", target, "--grace-period", "60"])
    assert server.wait_listening() == target
    with grpc.insecure_channel(target) as channel:
        stream = HeldStream(channel)  # an RPC in flight keeps the grace period going
        assert stream.first() == 7
        server.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while health(channel) == health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline, "health never turned NOT_SERVING"
            time.sleep(0.1)
        assert health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert len(get(channel).data) == 8  # draws in the grace period are still answered
        started = time.monotonic()
        stream.close()  # the last RPC in flight ends: no reason to wait out the 60 s
        assert server.proc.wait(timeout=40) == 0
    assert time.monotonic() - started < 40


# --- helpers for subprocess servers -------------------------------------------------------


class SpawnServer:
    def __init__(self) -> None:
        self.started: list[_Server] = []

    def __call__(self, argv: list[str], env: dict[str, str] | None = None) -> _Server:
        server = _Server(argv, {**os.environ, **(env or {})})
        self.started.append(server)
        return server


@pytest.fixture
def spawn_server() -> Iterator[SpawnServer]:
    spawner = SpawnServer()
    yield spawner
    for server in spawner.started:
        if server.proc.poll() is None:
            server.proc.kill()
        server.proc.wait(timeout=TIMEOUT)
        for stream in (server.proc.stdout, server.proc.stderr):
            if stream is not None:
                stream.close()
