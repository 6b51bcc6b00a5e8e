"""Settings whose value must be a name some plugin registered, checked before vLLM serves."""

from __future__ import annotations

import os
from collections.abc import Mapping

from qr_sampler.plugins.registry import (
    CORE_DISTRIBUTION,
    LOAD_PLUGINS_VARIABLE,
    Registry,
    excluded_plugins,
)
from qr_sampler.settings.arm_spec import parse_arms
from qr_sampler.settings.config import QRSamplerConfig, too_few_bytes
from qr_sampler.settings.names import comma_list, did_you_mean


def unknown_name(variable: str, value: str, known: Mapping[str, object], what: str) -> str:
    """The message for a setting naming nothing registered, with a did-you-mean."""
    listed = ", ".join(sorted(known)) or "none"
    state = what.split()[1]
    return f"{variable}={value!r} is not {what}{did_you_mean(value, known)} ({state}: {listed})"


def unregistered_names(config: QRSamplerConfig, registry: Registry) -> list[str]:
    """One message per setting that names no registered source, amplifier or strategy."""
    sources = [("QR_ENTROPY_SOURCE_TYPE", config.entropy_source_type)]
    sources += [("QR_ARMS source", source) for _, source in parse_arms(config.arms)]
    problems = [
        missing_source(name, registry, variable)
        for variable, name in sources
        if name not in registry.entropy_sources
    ]
    return problems + unregistered_strategies(config, registry)


def unregistered_strategies(config: QRSamplerConfig, registry: Registry) -> list[str]:
    """Amplifier and temperature strategy names that no plugin registered."""
    problems = []
    for variable, value, known, what in (
        (
            "QR_SIGNAL_AMPLIFIER_TYPE",
            config.signal_amplifier_type,
            registry.amplifiers,
            "amplifier",
        ),
        (
            "QR_TEMPERATURE_STRATEGY",
            config.temperature_strategy,
            registry.temperature_strategies,
            "temperature strategy",
        ),
    ):
        if value not in known:
            problems.append(unknown_name(variable, value, known, f"a registered {what}"))
    problem = too_few_bytes(config, registry.amplifiers, "QR_")
    return [*problems, problem] if problem else problems


#: Set by the vLLM plugin in the process that starts the workers (``qr_sampler.engine.
#: ray_env``): ``source=distribution version`` for every installed third-party source, so
#: a worker on a node without one can name the package it lacks.
SOURCE_PACKAGES_VARIABLE = "QR_SOURCE_PACKAGES"


def source_packages(registry: Registry) -> str:
    """``SOURCE_PACKAGES_VARIABLE``'s value for the sources installed here."""
    return ",".join(
        f"{name}={component.provider.distribution} {component.provider.version or ''}".strip()
        for name, component in sorted(registry.entropy_sources.items())
        if component.provider.distribution not in (None, CORE_DISTRIBUTION)
    )


def _driver_package(name: str) -> str | None:
    for entry in os.environ.get(SOURCE_PACKAGES_VARIABLE, "").split(","):
        source, _, package = entry.partition("=")
        if source == name and package:
            return package
    return None


def missing_source(name: str, registry: Registry, variable: str = "QR_ENTROPY_SOURCE_TYPE") -> str:
    """Why ``variable=name`` names no installed source, and what to do about it."""
    message = unknown_name(variable, name, registry.entropy_sources, "an installed entropy source")
    package = _driver_package(name)
    if package is not None:
        distribution, _, version = package.partition(" ")
        pinned = f"{distribution}=={version}" if version else distribution
        return (
            f"{message}; the process that started this worker has it from the package "
            f"{package}: install it on this node too (pip install '{pinned}'), as on every "
            "node that runs vLLM workers"
        )
    excluded = excluded_plugins()
    if excluded is not None and excluded[1]:
        written, left_out = excluded
        plugins = ", ".join(
            f"{point.name} ({point.dist.name})" if point.dist else point.name for point in left_out
        )
        hints = "".join(
            did_you_mean(part, [point.name for point in left_out]) for part in comma_list(written)
        )
        message += (
            f"; {LOAD_PLUGINS_VARIABLE}={written!r} leaves out the installed plugin(s) "
            f"{plugins}{hints}: list the one that provides it, or unset {LOAD_PLUGINS_VARIABLE}"
        )
    elif not did_you_mean(name, registry.entropy_sources):
        message += (
            "; install the package that provides it, e.g. qr-source-grpc for 'quantum_grpc', "
            "qr-source-http for 'http', qr-source-device for 'device'"
        )
    message += "".join(
        f"; plugin {failure.plugin!r} failed to load: {failure.error}"
        for failure in registry.failures
    )
    return message
