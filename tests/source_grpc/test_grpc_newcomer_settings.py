"""Settings a newcomer gets wrong, refused when the source is built, with a hint."""

from __future__ import annotations

import pytest
from grpc_test_servers import SourceFactory

from qr_sampler import ConfigValidationError, EntropyUnavailableError
from qr_source_grpc import GrpcSourceSettings
from qr_urandom_server.server import EntropyServer


@pytest.mark.parametrize(
    ("address", "hint"),
    [
        ("http://localhost:50051", "takes no http:// scheme: write localhost:50051"),
        ("grpc://10.0.0.115:50051/", "takes no grpc:// scheme: write 10.0.0.115:50051"),
        (
            "https://qrng.example.org:443",
            "takes no https:// scheme: write qrng.example.org:443 and set QR_GRPC_TLS=true",
        ),
    ],
)
def test_a_url_scheme_in_the_address_is_refused_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, address: str, hint: str
) -> None:
    monkeypatch.setenv("QR_GRPC_SERVER_ADDRESS", address)
    with pytest.raises(ConfigValidationError) as caught:
        GrpcSourceSettings.load()
    assert str(caught.value).startswith("QR_GRPC_SERVER_ADDRESS: ")
    assert hint in str(caught.value)


def test_unix_socket_addresses_still_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QR_GRPC_SERVER_ADDRESS", "unix:///run/qrng.sock")
    assert GrpcSourceSettings.load().server_address == "unix:///run/qrng.sock"


@pytest.mark.parametrize("placeholder", ["<your-api-key>", "...", "YOUR_API_KEY", "changeme"])
def test_the_template_placeholder_is_not_sent_as_a_key(
    monkeypatch: pytest.MonkeyPatch, placeholder: str
) -> None:
    monkeypatch.setenv("QR_GRPC_API_KEY", placeholder)
    with pytest.raises(ConfigValidationError) as caught:
        GrpcSourceSettings.load()
    message = str(caught.value)
    assert f"QR_GRPC_API_KEY is the placeholder {placeholder!r}, not a key" in message
    assert "QR_GRPC_API_KEY=..." in message


def test_a_real_looking_key_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QR_GRPC_API_KEY", "f1r3fly-9c2e7a41b0d85f36")
    assert GrpcSourceSettings.load().api_key == "f1r3fly-9c2e7a41b0d85f36"


@pytest.mark.parametrize("transport_address", ["tcp"], indirect=True)
def test_tls_against_a_plaintext_server_says_so(
    urandom_server: EntropyServer, make_source: SourceFactory
) -> None:
    source = make_source(urandom_server.address, tls=True, retry_count=0)
    with pytest.raises(EntropyUnavailableError) as caught:
        source.get_random_bytes(16)
    message = str(caught.value)
    assert "the TLS handshake failed" in message
    assert "if it serves plaintext, set QR_GRPC_TLS=false" in message
