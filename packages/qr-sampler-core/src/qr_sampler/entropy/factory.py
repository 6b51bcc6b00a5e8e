"""Builds the configured source, wrapped in the configured fallback."""

from __future__ import annotations

from qr_sampler.entropy.base import EntropySource
from qr_sampler.entropy.fallback import FallbackEntropySource
from qr_sampler.entropy.health import HealthCutoffs, HealthTests
from qr_sampler.entropy.system import SystemEntropySource
from qr_sampler.errors import ConfigValidationError
from qr_sampler.plugins.registered import missing_source
from qr_sampler.plugins.registry import Registry, get_registry
from qr_sampler.settings.config import QRSamplerConfig


def build_entropy_source(
    config: QRSamplerConfig, registry: Registry | None = None, name: str | None = None
) -> FallbackEntropySource:
    """A new instance of source ``name`` (default ``QR_ENTROPY_SOURCE_TYPE``) behind
    ``QR_FALLBACK_MODE``, health-tested unless ``QR_HEALTH_TESTS=off``."""
    registry = registry if registry is not None else get_registry()
    variable = "QR_ENTROPY_SOURCE_TYPE" if name is None else "QR_ARMS source"
    name = name if name is not None else config.entropy_source_type
    component = registry.entropy_sources.get(name)
    if component is None:
        raise ConfigValidationError(missing_source(name, registry, variable))
    primary: EntropySource = component.value()
    fallback = SystemEntropySource() if config.fallback_mode == "system" else None
    health = (
        HealthTests(HealthCutoffs.for_min_entropy(config.health_min_entropy))
        if config.health_tests
        else None
    )
    return FallbackEntropySource(primary, fallback, health, config.strict_wait_s)
