"""The hooks a qr-sampler plugin may implement.

Plugins are found through the ``qr_sampler`` entry point group; each hook receives
a ``register`` callback and calls it once per component it provides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT_NAME = "qr_sampler"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_entropy_sources(register: Callable[..., None]) -> None:
    """Register sources: ``register(name, factory, settings=(SettingsClass, ...))``."""


@hookspec
def register_amplifiers(register: Callable[[str, Any], None]) -> None:
    """Register signal amplifiers (bytes to u): ``register(name, amplifier)``."""


@hookspec
def register_temperature_strategies(register: Callable[[str, Any], None]) -> None:
    """Register temperature strategies: ``register(name, strategy)``."""
