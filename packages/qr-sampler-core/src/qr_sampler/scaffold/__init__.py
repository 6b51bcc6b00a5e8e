"""Generates the package skeleton behind ``qr-sampler source new``."""

from qr_sampler.scaffold.source_package import SourceNames, create_source_package

__all__ = ["SourceNames", "create_source_package"]
