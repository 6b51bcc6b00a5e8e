"""Exceptions a user or plugin author may catch."""

from __future__ import annotations


class QRSamplerError(Exception):
    """Base class of every error qr-sampler raises on purpose."""


class ConfigValidationError(QRSamplerError, ValueError):
    """A setting or a per-request ``qr_*`` value is unknown or invalid.

    It is a ``ValueError`` so that vLLM's ``validate_params`` hook turns it into
    an HTTP 400 for the request instead of an engine failure.
    """


class EntropyUnavailableError(QRSamplerError):
    """A source could not deliver the bytes asked for; the only trigger of fallback."""

    #: Why, in a word or two; token records drawn from the fallback carry it.
    reason = "source unavailable"


class HealthTestError(EntropyUnavailableError):
    """Delivered bytes failed a continuous health test; the draw is not used."""

    reason = "health test"


class PluginError(QRSamplerError):
    """A plugin failed to load (under ``QR_STRICT_PLUGINS``) or clashed with another."""
