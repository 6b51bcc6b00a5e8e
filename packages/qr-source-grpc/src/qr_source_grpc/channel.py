"""Opening the gRPC channel: address, TLS and the options a sampler needs."""

from __future__ import annotations

import json
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


def service_config(settings: GrpcSourceSettings) -> str:
    """gRPC's own balancing over every server the target names: ``round_robin`` spreads
    calls over the connected ones, and with ``QR_GRPC_HEALTH_CHECK`` gRPC watches each
    server's standard health service (the server as a whole, service name "") and
    sends nothing to one that is not SERVING. gRPC treats a server without a health
    service as healthy, so third-party servers work unchanged."""
    config: dict[str, object] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if settings.health_check:
        config["healthCheckConfig"] = {"serviceName": ""}
    return json.dumps(config)


def open_channel(settings: GrpcSourceSettings) -> grpc.Channel:
    """A channel to ``QR_GRPC_SERVER_ADDRESS``, secure when ``QR_GRPC_TLS`` is on.

    Unreadable certificate files are a ``ConfigValidationError`` naming the variable.
    """
    options = (*_RECONNECT_OPTIONS, ("grpc.service_config", service_config(settings)))
    if settings.tls:
        return grpc.secure_channel(settings.server_address, _credentials(settings), options=options)
    return grpc.insecure_channel(settings.server_address, options=options)
