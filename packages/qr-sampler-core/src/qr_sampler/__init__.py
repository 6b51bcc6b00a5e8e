"""qr-sampler: every token chosen by bytes from an entropy source.

The names here are the surface a plugin author needs; importing this package
never imports torch or vLLM.
"""

from qr_sampler.entropy.base import DeviceWord, EntropySource
from qr_sampler.entropy.fallback import EntropyDraw, FallbackEntropySource
from qr_sampler.entropy.system import SystemEntropySource
from qr_sampler.errors import (
    ConfigValidationError,
    EntropyUnavailableError,
    PluginError,
    QRSamplerError,
)
from qr_sampler.plugins.hookspecs import hookimpl
from qr_sampler.settings.base import QRSettings, mask_secret
from qr_sampler.settings.config import QRSamplerConfig, SamplingOptions

__all__ = [
    "ConfigValidationError",
    "DeviceWord",
    "EntropyDraw",
    "EntropySource",
    "EntropyUnavailableError",
    "FallbackEntropySource",
    "PluginError",
    "QRSamplerConfig",
    "QRSamplerError",
    "QRSettings",
    "SamplingOptions",
    "SystemEntropySource",
    "hookimpl",
    "mask_secret",
]
