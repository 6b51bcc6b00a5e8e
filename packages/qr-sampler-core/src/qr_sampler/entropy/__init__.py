"""Entropy sources: the ABC, the built-in ``system`` source and the fallback wrapper."""

from qr_sampler.entropy.base import EntropySource
from qr_sampler.entropy.fallback import EntropyDraw, FallbackEntropySource
from qr_sampler.entropy.system import SystemEntropySource

__all__ = ["EntropyDraw", "EntropySource", "FallbackEntropySource", "SystemEntropySource"]
