"""The ``qr_sampler`` entry point: installing the package is all it takes."""

from __future__ import annotations

from collections.abc import Callable

from qr_sampler import hookimpl

from qr_source_grpc.settings import CircuitBreakerSettings, GrpcSourceSettings
from qr_source_grpc.source import GrpcEntropySource


@hookimpl
def register_entropy_sources(register: Callable[..., None]) -> None:
    register(
        GrpcEntropySource.name,
        GrpcEntropySource,
        settings=(GrpcSourceSettings, CircuitBreakerSettings),
    )
