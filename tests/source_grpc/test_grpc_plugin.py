"""Installing the package is all it takes: the entry point registers ``quantum_grpc``."""

from __future__ import annotations

import pytest

from qr_sampler import FallbackEntropySource, QRSamplerConfig
from qr_sampler.entropy.factory import build_entropy_source
from qr_sampler.plugins.registry import load_registry
from qr_source_grpc import CircuitBreakerSettings, GrpcEntropySource, GrpcSourceSettings
from qr_urandom_server.server import EntropyServer


def test_registered_by_the_installed_distribution() -> None:
    component = load_registry().entropy_sources["quantum_grpc"]
    assert component.provider.distribution == "qr-source-grpc"
    assert component.provider.plugin == "quantum_grpc"
    assert component.value is GrpcEntropySource
    assert component.settings == (GrpcSourceSettings, CircuitBreakerSettings)


def test_core_builds_it_from_the_environment(
    urandom_server: EntropyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", "quantum_grpc")
    monkeypatch.setenv("QR_GRPC_SERVER_ADDRESS", urandom_server.address)
    monkeypatch.setenv("QR_GRPC_MODE", "bidi_streaming")
    with build_entropy_source(QRSamplerConfig.load()) as source:
        assert isinstance(source, FallbackEntropySource)
        assert isinstance(source.primary, GrpcEntropySource)
        draw = source.draw(20480)
        assert (len(draw.data), draw.source, draw.fallback) == (20480, "quantum_grpc", False)
        assert source.health_check()["primary"]["mode"] == "bidi_streaming"
