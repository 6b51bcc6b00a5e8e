"""QR_GRPC_* and QR_CB_*: names, defaults, validation, and building from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from qr_sampler import ConfigValidationError
from qr_source_grpc import CircuitBreakerSettings, GrpcEntropySource, GrpcSourceSettings
from qr_source_grpc.targets import is_local

SECRET = "sk-settings-0123456789-KEY"


def test_env_names_are_the_contract() -> None:
    assert set(GrpcSourceSettings.env_names()) == {
        "QR_GRPC_SERVER_ADDRESS",
        "QR_GRPC_TIMEOUT_MS",
        "QR_GRPC_RETRY_COUNT",
        "QR_GRPC_MODE",
        "QR_GRPC_METHOD_PATH",
        "QR_GRPC_STREAM_METHOD_PATH",
        "QR_GRPC_API_KEY",
        "QR_GRPC_API_KEY_HEADER",
        "QR_GRPC_TLS",
        "QR_GRPC_TLS_CA_FILE",
        "QR_GRPC_TLS_CERT_FILE",
        "QR_GRPC_TLS_KEY_FILE",
        "QR_GRPC_MAX_BYTES_PER_REQUEST",
        "QR_GRPC_HEALTH_CHECK",
        "QR_GRPC_SEQUENCE_ID_FIELD",
        "QR_GRPC_TIMESTAMP_FIELD",
        "QR_GRPC_DEVICE_ID_FIELD",
    }
    assert set(CircuitBreakerSettings.env_names()) == {
        "QR_CB_WINDOW_SIZE",
        "QR_CB_MIN_TIMEOUT_MS",
        "QR_CB_TIMEOUT_MULTIPLIER",
        "QR_CB_RECOVERY_WINDOW_S",
        "QR_CB_MAX_CONSECUTIVE_FAILURES",
    }


def test_defaults() -> None:
    grpc_settings = GrpcSourceSettings.load()
    assert grpc_settings.server_address == "localhost:50051"
    assert grpc_settings.timeout_ms == 5000
    assert grpc_settings.retry_count == 2
    assert grpc_settings.mode == "unary"
    assert grpc_settings.method_path == "/qr_entropy.EntropyService/GetEntropy"
    assert grpc_settings.stream_method_path == "/qr_entropy.EntropyService/StreamEntropy"
    assert grpc_settings.api_key == ""
    assert grpc_settings.api_key_header == "api-key"
    assert grpc_settings.tls is False
    assert grpc_settings.max_bytes_per_request == 1 << 20
    breaker = CircuitBreakerSettings.load()
    assert breaker.window_size == 100
    assert breaker.min_timeout_ms == 50.0
    assert breaker.timeout_multiplier == 1.5
    assert breaker.recovery_window_s == 10.0
    assert breaker.max_consecutive_failures == 3


def test_dotenv_file_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "profile.env"
    env_file.write_text(
        "QR_GRPC_SERVER_ADDRESS=10.0.0.115:50051\n"
        "QR_GRPC_METHOD_PATH=/qrng.QuantumRNG/GetRandomBytes\n"
        "QR_GRPC_STREAM_METHOD_PATH=\n"
        "QR_CB_WINDOW_SIZE=7\n"
    )
    monkeypatch.setenv("QR_ENV_FILE", str(env_file))
    monkeypatch.setenv("QR_GRPC_SERVER_ADDRESS", "unix:///run/qrng.sock")
    loaded = GrpcSourceSettings.load()
    assert loaded.server_address == "unix:///run/qrng.sock"
    assert loaded.method_path == "/qrng.QuantumRNG/GetRandomBytes"
    assert loaded.stream_method_path == ""
    assert CircuitBreakerSettings.load().window_size == 7


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("QR_GRPC_SERVER_ADDRESS", "localhost", "host:port or unix"),
        ("QR_GRPC_SERVER_ADDRESS", "host:99999", "host:port or unix"),
        ("QR_GRPC_MODE", "streaming", "QR_GRPC_MODE"),
        ("QR_GRPC_TIMEOUT_MS", "0", "QR_GRPC_TIMEOUT_MS"),
        ("QR_GRPC_RETRY_COUNT", "-1", "QR_GRPC_RETRY_COUNT"),
        ("QR_GRPC_METHOD_PATH", "qrng.QuantumRNG/GetRandomBytes", "/package.Service/Method"),
        ("QR_GRPC_METHOD_PATH", "", "/package.Service/Method"),
        ("QR_GRPC_STREAM_METHOD_PATH", "/only-one-part", "/package.Service/Method"),
        ("QR_GRPC_API_KEY_HEADER", "Api-Key", "lowercase gRPC metadata key"),
        ("QR_GRPC_API_KEY_HEADER", "grpc-key", "lowercase gRPC metadata key"),
        ("QR_GRPC_API_KEY_HEADER", "key-bin", "lowercase gRPC metadata key"),
        ("QR_GRPC_MAX_BYTES_PER_REQUEST", "0", "QR_GRPC_MAX_BYTES_PER_REQUEST"),
        ("QR_GRPC_MAX_BYTES_PER_REQUEST", str(4 * 1024 * 1024), "QR_GRPC_MAX_BYTES_PER_REQUEST"),
        ("QR_GRPC_TLS_CA_FILE", "/etc/ca.pem", "QR_GRPC_TLS is false"),
    ],
)
def test_bad_values_are_config_errors(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigValidationError, match=message):
        GrpcSourceSettings.load()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("QR_CB_WINDOW_SIZE", "0"),
        ("QR_CB_MIN_TIMEOUT_MS", "0"),
        ("QR_CB_TIMEOUT_MULTIPLIER", "0.5"),
        ("QR_CB_RECOVERY_WINDOW_S", "-1"),
        ("QR_CB_MAX_CONSECUTIVE_FAILURES", "0"),
    ],
)
def test_bad_breaker_values_are_config_errors(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigValidationError, match=variable):
        CircuitBreakerSettings.load()


def test_mutual_tls_needs_both_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QR_GRPC_TLS", "true")
    monkeypatch.setenv("QR_GRPC_TLS_CERT_FILE", "/etc/client.pem")
    with pytest.raises(ConfigValidationError, match="both QR_GRPC_TLS_CERT_FILE and"):
        GrpcSourceSettings.load()


@pytest.mark.parametrize("mode", ["server_streaming", "bidi_streaming"])
def test_streaming_mode_without_stream_path_fails_when_the_source_is_built(
    monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv("QR_GRPC_MODE", mode)
    monkeypatch.setenv("QR_GRPC_STREAM_METHOD_PATH", "")
    with pytest.raises(ConfigValidationError, match="needs QR_GRPC_STREAM_METHOD_PATH"):
        GrpcEntropySource()


def test_unary_mode_with_streaming_disabled_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QR_GRPC_STREAM_METHOD_PATH", "")
    with GrpcEntropySource() as source:
        assert source.health_check()["stream_method_path"] == ""


@pytest.mark.parametrize("key", [f" {SECRET}", f"{SECRET}\n", f"{SECRET}\u00e9"])
def test_unsendable_key_is_rejected_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv("QR_GRPC_API_KEY", key)
    with pytest.raises(ConfigValidationError, match="QR_GRPC_API_KEY") as caught:
        GrpcSourceSettings.load()
    assert SECRET not in str(caught.value)


def test_settings_built_directly_never_echo_the_key() -> None:
    with pytest.raises(ValueError, match="validation error") as caught:
        GrpcSourceSettings(api_key=f" {SECRET}")
    assert SECRET[:6] not in str(caught.value)
    assert SECRET[:6] not in repr(caught.value)


def test_key_is_masked_in_repr_and_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QR_GRPC_API_KEY", SECRET)
    loaded = GrpcSourceSettings.load()
    assert loaded.api_key == SECRET
    assert SECRET not in repr(loaded)
    assert SECRET not in str(loaded)
    assert loaded.redacted()["api_key"] == "****-KEY"


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("unix:///tmp/x.sock", True),
        ("localhost:50051", True),
        ("127.0.0.1:50051", True),
        ("127.8.9.1:1", True),
        ("[::1]:50051", True),
        ("10.0.0.115:50051", False),
        ("qrng.example.org:443", False),
        ("[2001:db8::1]:50051", False),
        ("unixbox.example.org:50051", False),  # a host name, not the unix: scheme
        ("unix-abstract:qrng", True),
    ],
)
def test_which_addresses_count_as_local(address: str, local: bool) -> None:
    assert is_local(address) is local


@pytest.mark.parametrize(
    "address",
    [
        "ipv4:10.0.0.7:50051,10.0.0.8:50051",
        "ipv4:127.0.0.1:50051",
        "ipv6:[::1]:50051,[2001:db8::1]:50052",
        "dns:///entropy:50051",
        "dns://10.0.0.2:53/entropy.qrng.svc:50051",
        "dns:entropy:50051",
        "unix:///run/qrng.sock",
    ],
)
def test_grpc_target_syntax_is_accepted(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    monkeypatch.setenv("QR_GRPC_SERVER_ADDRESS", address)
    assert GrpcSourceSettings.load().server_address == address


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("ipv4:10.0.0.7:50051,entropy:50051", "IPV4 addresses only.*dns:///name:port"),
        ("ipv6:10.0.0.7:50051", "IPV6 addresses only"),
        ("ipv4:10.0.0.7", "not host:port"),
        ("dns:///entropy", "not host:port"),
        ("https://entropy:50051", "no https:// scheme.*QR_GRPC_TLS=true"),
    ],
)
def test_malformed_targets_say_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch, address: str, message: str
) -> None:
    monkeypatch.setenv("QR_GRPC_SERVER_ADDRESS", address)
    with pytest.raises(ConfigValidationError, match=message):
        GrpcSourceSettings.load()


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("ipv4:127.0.0.1:1,127.0.0.2:2", True),
        ("ipv4:127.0.0.1:1,10.0.0.8:2", False),
        ("dns:///localhost:50051", True),
        ("dns:///entropy:50051", False),
        ("not an address", False),
    ],
)
def test_a_list_is_local_only_when_every_server_is(address: str, local: bool) -> None:
    assert is_local(address) is local


@pytest.mark.parametrize(("name", "value"), [("TIMESTAMP", "1"), ("DEVICE_ID", "-2")])
def test_a_reply_field_must_not_be_the_bytes_nor_negative(name: str, value: str) -> None:
    with pytest.raises(ConfigValidationError, match=f"QR_GRPC_{name}_FIELD"):
        GrpcSourceSettings.from_assignments({f"QR_GRPC_{name}_FIELD": value})
