"""Builds the configured source, wrapped in the configured fallback."""

from __future__ import annotations

from qr_sampler.config import QRSamplerConfig
from qr_sampler.entropy.base import EntropySource
from qr_sampler.entropy.fallback import FallbackEntropySource
from qr_sampler.entropy.health import HealthCutoffs, HealthTests
from qr_sampler.entropy.system import SystemEntropySource
from qr_sampler.errors import ConfigValidationError
from qr_sampler.plugins import Registry, get_registry


def build_entropy_source(
    config: QRSamplerConfig, registry: Registry | None = None, name: str | None = None
) -> FallbackEntropySource:
    """A new instance of source ``name`` (default ``QR_ENTROPY_SOURCE_TYPE``) behind
    ``QR_FALLBACK_MODE``, health-tested unless ``QR_HEALTH_TESTS=off``."""
    registry = registry if registry is not None else get_registry()
    what = "QR_ENTROPY_SOURCE_TYPE=" if name is None else "QR_ARMS source "
    name = name if name is not None else config.entropy_source_type
    component = registry.entropy_sources.get(name)
    if component is None:
        installed = ", ".join(sorted(registry.entropy_sources)) or "none"
        broken = "".join(
            f"; plugin {failure.plugin!r} failed to load: {failure.error}"
            for failure in registry.failures
        )
        raise ConfigValidationError(
            f"{what}{name!r} is not an installed entropy source "
            f"(installed: {installed}); install the package that provides it, "
            f"e.g. qr-source-grpc for 'quantum_grpc'{broken}"
        )
    primary: EntropySource = component.value()
    fallback = SystemEntropySource() if config.fallback_mode == "system" else None
    health = (
        HealthTests(HealthCutoffs.for_min_entropy(config.health_min_entropy))
        if config.health_tests
        else None
    )
    return FallbackEntropySource(primary, fallback, health)
