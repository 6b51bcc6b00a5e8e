"""Builds the configured source, wrapped in the configured fallback."""

from __future__ import annotations

from qr_sampler.config import QRSamplerConfig
from qr_sampler.entropy.base import EntropySource
from qr_sampler.entropy.fallback import FallbackEntropySource
from qr_sampler.entropy.system import SystemEntropySource
from qr_sampler.errors import ConfigValidationError
from qr_sampler.plugins import Registry, get_registry


def build_entropy_source(
    config: QRSamplerConfig, registry: Registry | None = None
) -> FallbackEntropySource:
    """The source named by ``QR_ENTROPY_SOURCE_TYPE`` behind ``QR_FALLBACK_MODE``."""
    registry = registry if registry is not None else get_registry()
    name = config.entropy_source_type
    component = registry.entropy_sources.get(name)
    if component is None:
        installed = ", ".join(sorted(registry.entropy_sources)) or "none"
        broken = "".join(
            f"; plugin {failure.plugin!r} failed to load: {failure.error}"
            for failure in registry.failures
        )
        raise ConfigValidationError(
            f"QR_ENTROPY_SOURCE_TYPE={name!r} is not an installed entropy source "
            f"(installed: {installed}); install the package that provides it, "
            f"e.g. qr-source-grpc for 'quantum_grpc'{broken}"
        )
    primary: EntropySource = component.value()
    fallback = SystemEntropySource() if config.fallback_mode == "system" else None
    return FallbackEntropySource(primary, fallback, strict_wait_s=config.strict_wait_s)
