"""Who may draw: an optional API key in call metadata, and TLS (optionally mutual).

Without either, anyone who can reach the server's address can draw bytes from it.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

#: Environment variable the command line reads the API key from.
API_KEY_VARIABLE = "QR_URANDOM_SERVER_API_KEY"
#: Metadata key the API key travels in, as qr-source-grpc sends it by default.
DEFAULT_API_KEY_HEADER = "api-key"
#: Health stays open to anyone, so that orchestrators can probe without the key.
_OPEN_PREFIX = "/grpc.health.v1.Health/"


class SecurityConfigError(ValueError):
    """An API key or TLS file that cannot be used; the message never holds the key."""


def load_api_key(key_file: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The key from ``--api-key-file`` or ``$QR_URANDOM_SERVER_API_KEY``; None for no key."""
    from_env = (os.environ if environ is None else environ).get(API_KEY_VARIABLE, "")
    if key_file and from_env:
        raise SecurityConfigError(
            f"both --api-key-file and ${API_KEY_VARIABLE} are set; use one of them"
        )
    if not key_file:
        return from_env.strip() or None
    try:
        key = Path(key_file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecurityConfigError(f"cannot read --api-key-file {key_file!r}: {exc}") from None
    if not key:
        raise SecurityConfigError(f"--api-key-file {key_file!r} is empty")
    return key


def check_header(header: str) -> str:
    """gRPC metadata keys are lower-case ASCII; a ``-bin`` suffix would mean binary."""
    name = header.strip().lower()
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")
    if not name or not set(name) <= allowed or name.endswith("-bin") or name.startswith("grpc-"):
        raise SecurityConfigError(
            f"--api-key-header {header!r} is not a usable gRPC metadata key "
            "(lower-case letters, digits, '-', '_', '.'; not grpc-*, not *-bin)"
        )
    return name


class ApiKeyInterceptor(grpc.ServerInterceptor):
    """Refuses every call but health's unless its metadata carries the key.

    A refused call gets ``UNAUTHENTICATED``; the message names the header, never a key.
    """

    def __init__(self, key: str, header: str = DEFAULT_API_KEY_HEADER) -> None:
        self._key = key.encode()
        self.header = check_header(header)

    def __repr__(self) -> str:
        return f"ApiKeyInterceptor(header={self.header!r})"

    def _authorized(self, metadata: Any) -> bool:
        for name, value in metadata or ():
            if name == self.header:
                sent = value.encode() if isinstance(value, str) else bytes(value)
                return hmac.compare_digest(sent, self._key)
        return False

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if (
            handler is None
            or handler_call_details.method.startswith(_OPEN_PREFIX)
            or self._authorized(handler_call_details.invocation_metadata)
        ):
            return handler
        return _refusing_handler(handler, self.header)


def _refusing_handler(
    like: grpc.RpcMethodHandler[Any, Any], header: str
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape as ``like`` that answers ``UNAUTHENTICATED``."""

    def refuse(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            f"this server needs its API key in the {header!r} call metadata",
        )

    if like.request_streaming and like.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if like.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if like.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


def server_credentials(
    cert_file: str, key_file: str, client_ca_file: str | None = None
) -> grpc.ServerCredentials:
    """TLS from PEM files; with ``client_ca_file``, clients must show a certificate it signed."""

    def read(flag: str, path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise SecurityConfigError(f"cannot read {flag} {path!r}: {exc.strerror}") from None

    chain = read("--tls-cert-file", cert_file)
    private_key = read("--tls-key-file", key_file)
    roots = read("--tls-client-ca-file", client_ca_file) if client_ca_file else None
    return grpc.ssl_server_credentials(
        [(private_key, chain)], root_certificates=roots, require_client_auth=roots is not None
    )
