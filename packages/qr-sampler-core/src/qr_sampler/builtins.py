"""The default plugin: core's own components, registered like any third-party plugin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qr_sampler.entropy.amplification import UniformBitsAmplifier, ZScoreMeanAmplifier
from qr_sampler.entropy.prng import PRNGEntropySource, PRNGSettings
from qr_sampler.entropy.replay import ReplayEntropySource, ReplaySettings
from qr_sampler.entropy.system import SystemEntropySource
from qr_sampler.plugins.hookspecs import hookimpl
from qr_sampler.sampling.temperature import EntropyDependentTemperature, FixedTemperature


@hookimpl
def register_entropy_sources(register: Callable[..., None]) -> None:
    register("system", SystemEntropySource)
    register("replay", ReplayEntropySource, settings=(ReplaySettings,))
    register("prng", PRNGEntropySource, settings=(PRNGSettings,))


@hookimpl
def register_amplifiers(register: Callable[[str, Any], None]) -> None:
    register("zscore_mean", ZScoreMeanAmplifier())
    register("uniform_bits", UniformBitsAmplifier())


@hookimpl
def register_temperature_strategies(register: Callable[[str, Any], None]) -> None:
    register("fixed", FixedTemperature())
    register("edt", EntropyDependentTemperature())
