"""A second real protocol, qrng.QuantumRNG with an api-key, reached by configuration only;
the key shows up on the wire and nowhere else."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from grpc_test_servers import raw_server

from qr_sampler import EntropyUnavailableError
from qr_source_grpc import GrpcEntropySource

KEY = "qrng-key-0123456789-abcdef-RIGHT"
WRONG_KEY = "qrng-key-9876543210-fedcba-WRONG"
METHOD = "/qrng.QuantumRNG/GetRandomBytes"


@pytest.fixture
def qrng_server(qrng_pb2: ModuleType) -> Iterator[str]:
    """Answers RandomRequest with RandomResponse when the api-key is right.

    On a wrong key it echoes what it got, as careless servers do, so the tests can check
    that the client scrubs it.
    """

    def get_random_bytes(request: bytes, context: grpc.ServicerContext) -> bytes:
        sent = dict(context.invocation_metadata()).get("api-key")
        if sent is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing api-key")
        if sent != KEY:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"invalid api-key {sent!r}")
        wanted = qrng_pb2.RandomRequest.FromString(request).num_bytes
        reply = qrng_pb2.RandomResponse(
            data=os.urandom(wanted), timestamp=1_700_000_000, device_id="firefly-1"
        )
        return bytes(reply.SerializeToString())

    with raw_server(unary={METHOD: get_random_bytes}) as address:
        yield address


@pytest.fixture
def profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qrng_server: str) -> Path:
    """A deployment profile for the qrng server, like deployments/firefly-1/.env."""
    env_file = tmp_path / ".env"
    env_file.write_text(
        "QR_ENTROPY_SOURCE_TYPE=quantum_grpc\n"
        f"QR_GRPC_SERVER_ADDRESS={qrng_server}\n"
        f"QR_GRPC_METHOD_PATH={METHOD}\n"
        "QR_GRPC_STREAM_METHOD_PATH=\n"
        "QR_GRPC_MODE=unary\n"
        "QR_GRPC_API_KEY_HEADER=api-key\n"
        f"QR_GRPC_API_KEY={KEY}\n"
    )
    monkeypatch.setenv("QR_ENV_FILE", str(env_file))
    return env_file


def test_right_key_works_with_configuration_only(profile: Path) -> None:
    with GrpcEntropySource() as source:
        assert len(source.get_random_bytes(20480)) == 20480
        assert len(source.get_random_bytes(3 << 20)) == 3 << 20
        assert source.health_check()["authenticated"] is True


@pytest.mark.parametrize(("key", "reason"), [(WRONG_KEY, "invalid api-key"), ("", "missing")])
def test_wrong_or_missing_key_is_a_clear_error(
    profile: Path, monkeypatch: pytest.MonkeyPatch, key: str, reason: str
) -> None:
    monkeypatch.setenv("QR_GRPC_API_KEY", key)
    with GrpcEntropySource() as source, pytest.raises(EntropyUnavailableError) as caught:
        source.get_random_bytes(8)
    message = str(caught.value)
    assert "UNAUTHENTICATED" in message
    assert "check QR_GRPC_API_KEY and QR_GRPC_API_KEY_HEADER" in message
    assert reason in message
    if key:
        assert key not in message
        assert "****RONG" in message  # the masked hint tells which key was used
    assert caught.value.__cause__ is None


def test_key_never_leaks(
    profile: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with GrpcEntropySource() as source:
        source.get_random_bytes(64)
        seen += [repr(source), json.dumps(source.health_check())]
        seen += [repr(source._settings), str(source._settings)]
    monkeypatch.setenv("QR_GRPC_API_KEY", WRONG_KEY)  # the server echoes it back
    _collect_failures(seen)
    monkeypatch.setenv("QR_GRPC_SERVER_ADDRESS", "10.255.255.1:50051")  # warns: plaintext
    monkeypatch.setenv("QR_GRPC_TIMEOUT_MS", "100")
    _collect_failures(seen)
    seen.append(caplog.text)
    seen.append(capsys.readouterr().err)
    for text in seen:
        assert KEY not in text
        assert WRONG_KEY not in text


def _collect_failures(seen: list[str]) -> None:
    with GrpcEntropySource() as source:
        for _ in range(2):
            with pytest.raises(EntropyUnavailableError) as caught:
                source.get_random_bytes(8)
            seen.append(str(caught.value))
        seen += [repr(source), json.dumps(source.health_check())]


def test_key_never_leaks_from_the_config_cli(
    profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = pytest.importorskip("qr_sampler.cli.main")
    for argv in (["config"], ["config", "--json"], ["config", "--env-file", str(profile)]):
        cli.main(argv)
        output = capsys.readouterr()
        assert "QR_GRPC_API_KEY" in output.out
        assert KEY not in output.out + output.err
        assert "****IGHT" in output.out


def test_plaintext_key_to_a_remote_host_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("QR_GRPC_SERVER_ADDRESS", "10.255.255.1:50051")
    monkeypatch.setenv("QR_GRPC_API_KEY", KEY)
    monkeypatch.setenv("QR_GRPC_TIMEOUT_MS", "100")
    monkeypatch.setenv("QR_GRPC_RETRY_COUNT", "0")
    caplog.set_level(logging.DEBUG, logger="qr_source_grpc")
    with GrpcEntropySource() as source:
        for _ in range(2):
            with pytest.raises(EntropyUnavailableError):
                source.get_random_bytes(8)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "plaintext" in warnings[0].getMessage()
    assert KEY not in caplog.text


@pytest.mark.parametrize(
    ("address", "tls", "key"),
    [
        ("127.0.0.1:50051", False, KEY),  # loopback
        ("unix:///run/qrng.sock", False, KEY),  # a socket never leaves the host
        ("10.255.255.1:50051", True, KEY),  # encrypted
        ("10.255.255.1:50051", False, ""),  # nothing to protect
    ],
)
def test_no_warning_when_the_key_is_safe(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    address: str,
    tls: bool,
    key: str,
) -> None:
    monkeypatch.setenv("QR_GRPC_SERVER_ADDRESS", address)
    monkeypatch.setenv("QR_GRPC_TLS", str(tls))
    monkeypatch.setenv("QR_GRPC_API_KEY", key)
    caplog.set_level(logging.WARNING, logger="qr_source_grpc")
    GrpcEntropySource().close()
    assert caplog.records == []
