"""Opening the gRPC channel: address, TLS and the options a sampler needs."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import grpc
from qr_sampler import ConfigValidationError

from qr_source_grpc.settings import GrpcSourceSettings

# gRPC backs off up to two minutes between reconnects by default; after an outage the
# sampler would stay on the fallback that long after the server came back.
_RECONNECT_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def is_local(address: str) -> bool:
    """True for unix sockets and loopback hosts, where a key cannot be sniffed in transit."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a DNS name other than localhost
        return False


def _read(path: str, variable: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigValidationError(f"{variable}: cannot read {path!r}: {exc.strerror}") from None


def _credentials(settings: GrpcSourceSettings) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=_read(settings.tls_ca_file, "QR_GRPC_TLS_CA_FILE"),
        private_key=_read(settings.tls_key_file, "QR_GRPC_TLS_KEY_FILE"),
        certificate_chain=_read(settings.tls_cert_file, "QR_GRPC_TLS_CERT_FILE"),
    )


def open_channel(settings: GrpcSourceSettings) -> grpc.Channel:
    """A channel to ``QR_GRPC_SERVER_ADDRESS``, secure when ``QR_GRPC_TLS`` is on.

    Unreadable certificate files are a ``ConfigValidationError`` naming the variable.
    """
    if settings.tls:
        return grpc.secure_channel(
            settings.server_address, _credentials(settings), options=_RECONNECT_OPTIONS
        )
    return grpc.insecure_channel(settings.server_address, options=_RECONNECT_OPTIONS)
