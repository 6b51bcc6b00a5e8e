"""Builds the configured source, wrapped in the configured fallback."""

from __future__ import annotations

from qr_sampler.config import QRSamplerConfig
from qr_sampler.entropy.base import EntropySource
from qr_sampler.entropy.fallback import FallbackEntropySource
from qr_sampler.entropy.system import SystemEntropySource
from qr_sampler.errors import ConfigValidationError
from qr_sampler.plugins import Registry, get_registry
from qr_sampler.registered import missing_source


def build_entropy_source(
    config: QRSamplerConfig, registry: Registry | None = None
) -> FallbackEntropySource:
    """The source named by ``QR_ENTROPY_SOURCE_TYPE`` behind ``QR_FALLBACK_MODE``."""
    registry = registry if registry is not None else get_registry()
    name = config.entropy_source_type
    component = registry.entropy_sources.get(name)
    if component is None:
        raise ConfigValidationError(missing_source(name, registry))
    primary: EntropySource = component.value()
    fallback = SystemEntropySource() if config.fallback_mode == "system" else None
    return FallbackEntropySource(primary, fallback, strict_wait_s=config.strict_wait_s)
