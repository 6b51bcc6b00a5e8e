"""``QR_GRPC_*`` and ``QR_CB_*``: what the source reads from the environment."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import SettingsConfigDict
from qr_sampler import QRSettings
from qr_sampler.settings.base import sendable_secret

from qr_source_grpc.targets import target_hosts

Mode = Literal["unary", "server_streaming", "bidi_streaming"]

# gRPC refuses to receive messages over 4 MiB by default; the headroom keeps a reply's
# other fields (timestamps, device ids) from pushing a full chunk over that limit.
GRPC_DEFAULT_MESSAGE_LIMIT = 4 * 1024 * 1024
MAX_CHUNK_BYTES = GRPC_DEFAULT_MESSAGE_LIMIT - 64 * 1024
#: Protobuf's largest field number.
MAX_FIELD_NUMBER = (1 << 29) - 1

_METHOD_PATH = re.compile(r"/[A-Za-z_][\w.]*/[A-Za-z_]\w*")
# gRPC metadata keys are lowercase; "-bin" keys carry binary values and "grpc-" is reserved.
_METADATA_KEY = re.compile(r"(?!grpc-)[0-9a-z_.-]+(?<!-bin)")


class GrpcSourceSettings(QRSettings):
    """Where the server is, how to call it, and how to authenticate."""

    # pydantic's own error text quotes the start of a rejected value, and of every input
    # when a check across fields fails: the key must not show up there.
    model_config = SettingsConfigDict(env_prefix="QR_GRPC_", hide_input_in_errors=True)
    secret_fields: ClassVar[frozenset[str]] = frozenset({"api_key"})

    server_address: str = Field(
        default="localhost:50051",
        description="host:port, several servers (ipv4:A:PORT,B:PORT or dns:///name:port) "
        "or unix:///path/to/socket",
    )
    timeout_ms: float = Field(
        default=5000, gt=0, description="Longest wait for one RPC; caps the adaptive deadline"
    )
    retry_count: int = Field(default=2, ge=0, description="Retries after a transport failure")
    mode: Mode = Field(default="unary", description="unary, server_streaming or bidi_streaming")
    method_path: str = Field(
        default="/qr_entropy.EntropyService/GetEntropy",
        description="Unary method, /package.Service/Method",
    )
    stream_method_path: str = Field(
        default="/qr_entropy.EntropyService/StreamEntropy",
        description="Streaming method; empty disables the streaming modes",
    )
    # repr=False: pydantic's repr would otherwise print the key.
    api_key: str = Field(
        default="", repr=False, description="Sent as call metadata; empty = no auth"
    )
    api_key_header: str = Field(
        default="api-key", description="Metadata key that carries the API key"
    )
    tls: bool = Field(
        default=False, description="Use TLS (the system roots unless a CA file is set)"
    )
    tls_ca_file: str = Field(default="", description="PEM roots that sign the server's certificate")
    tls_cert_file: str = Field(default="", description="PEM client certificate, for mutual TLS")
    tls_key_file: str = Field(default="", description="PEM client private key, for mutual TLS")
    health_check: bool = Field(
        default=True,
        description="Send calls only to servers whose gRPC health service says SERVING",
    )
    # Which response fields say what about the bytes, by number, as method paths name
    # the methods (0: the protocol has no such field). Defaults: qr_entropy's response.
    sequence_id_field: int = Field(
        default=2,
        ge=0,
        le=MAX_FIELD_NUMBER,
        description="Response field echoing the request number",
    )
    timestamp_field: int = Field(
        default=3, ge=0, le=MAX_FIELD_NUMBER, description="Response field with the bytes' timestamp"
    )
    device_id_field: int = Field(
        default=4, ge=0, le=MAX_FIELD_NUMBER, description="Response field naming the device"
    )
    max_bytes_per_request: int = Field(
        default=1 << 20, ge=1, le=MAX_CHUNK_BYTES, description="Larger draws are split into chunks"
    )

    @field_validator("server_address")
    @classmethod
    def _address_form(cls, value: str) -> str:
        target_hosts(value)
        return value

    @field_validator("method_path", "stream_method_path")
    @classmethod
    def _method_form(cls, value: str, info: ValidationInfo) -> str:
        # Only the stream path may be empty (streaming off); the mode check is below.
        if value == "" and info.field_name == "stream_method_path":
            return value
        if not _METHOD_PATH.fullmatch(value):
            raise ValueError("must look like /package.Service/Method")
        return value

    _key_sendable = field_validator("api_key")(staticmethod(sendable_secret))

    @field_validator("api_key_header")
    @classmethod
    def _header_form(cls, value: str) -> str:
        if not _METADATA_KEY.fullmatch(value):
            raise ValueError(
                "must be a lowercase gRPC metadata key (a-z, 0-9, '-', '_', '.'), "
                "not starting with 'grpc-' nor ending with '-bin'"
            )
        return value

    @field_validator("sequence_id_field", "timestamp_field", "device_id_field")
    @classmethod
    def _not_the_bytes(cls, value: int) -> int:
        if value == 1:
            raise ValueError("field 1 carries the random bytes; name another field, or 0 for none")
        return value

    @model_validator(mode="after")
    def _streaming_has_path(self) -> GrpcSourceSettings:
        if self.mode != "unary" and not self.stream_method_path:
            raise ValueError(
                f"QR_GRPC_MODE={self.mode} needs QR_GRPC_STREAM_METHOD_PATH, which is empty; "
                "set the stream method or use QR_GRPC_MODE=unary"
            )
        return self

    @model_validator(mode="after")
    def _tls_files_consistent(self) -> GrpcSourceSettings:
        if (self.tls_ca_file or self.tls_cert_file or self.tls_key_file) and not self.tls:
            raise ValueError("QR_GRPC_TLS_*_FILE is set but QR_GRPC_TLS is false")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("mutual TLS needs both QR_GRPC_TLS_CERT_FILE and QR_GRPC_TLS_KEY_FILE")
        return self


class CircuitBreakerSettings(QRSettings):
    """The adaptive deadline and the breaker in front of the server."""

    model_config = SettingsConfigDict(env_prefix="QR_CB_")

    window_size: int = Field(default=100, ge=1, description="Latencies kept for the rolling p99")
    min_timeout_ms: float = Field(
        default=50.0, gt=0, description="Floor of the adaptive deadline (also >= 5% of the timeout)"
    )
    timeout_multiplier: float = Field(default=1.5, ge=1, description="Deadline = p99 x this")
    recovery_window_s: float = Field(default=10.0, ge=0, description="Open time before a probe")
    max_consecutive_failures: int = Field(
        default=3, ge=1, description="Transport failures in a row that open the breaker"
    )
