"""One pluggy ``PluginManager``: built-ins and third-party plugins register alike.

``QR_LOAD_PLUGINS`` (comma-separated entry point names) is an allow-list for
third-party plugins; empty loads none. A plugin that fails to import is reported
and skipped, or is fatal under ``QR_STRICT_PLUGINS=1``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from qr_sampler.errors import PluginError
from qr_sampler.plugins import hookspecs
from qr_sampler.settings.names import comma_list

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "qr_sampler"
CORE_DISTRIBUTION = "qr-sampler-core"
BUILTIN_PLUGIN = "qr_sampler.builtins"
LOAD_PLUGINS_VARIABLE = "QR_LOAD_PLUGINS"
STRICT_PLUGINS_VARIABLE = "QR_STRICT_PLUGINS"


@dataclass(frozen=True)
class Provider:
    """The plugin, and the distribution it ships in, behind a registered component."""

    plugin: str
    distribution: str | None
    version: str | None


@dataclass(frozen=True)
class Component:
    """A registered source factory, amplifier or temperature strategy."""

    name: str
    value: Any
    provider: Provider
    settings: tuple[type[Any], ...] = ()


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded, kept so ``qr-sampler sources`` can show it."""

    plugin: str
    distribution: str | None
    version: str | None
    error: str


@dataclass
class Registry:
    """Everything the loaded plugins registered, by kind and name."""

    entropy_sources: dict[str, Component] = field(default_factory=dict)
    amplifiers: dict[str, Component] = field(default_factory=dict)
    temperature_strategies: dict[str, Component] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _allowed_plugins() -> set[str] | None:
    raw = os.environ.get(LOAD_PLUGINS_VARIABLE)
    if raw is None:
        return None
    return set(comma_list(raw))


def _strict() -> bool:
    return os.environ.get(STRICT_PLUGINS_VARIABLE, "").strip().lower() in {"1", "true", "yes"}


def _entry_points() -> Iterator[importlib.metadata.EntryPoint]:
    yield from importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def excluded_plugins() -> tuple[str, list[importlib.metadata.EntryPoint]] | None:
    """``QR_LOAD_PLUGINS`` as written and the installed plugins it leaves out, if it is set."""
    allowed = _allowed_plugins()
    if allowed is None:
        return None
    raw = os.environ.get(LOAD_PLUGINS_VARIABLE, "")
    return raw, [point for point in _entry_points() if point.name not in allowed]


def build_plugin_manager(registry: Registry) -> tuple[pluggy.PluginManager, dict[str, Provider]]:
    """Register the built-ins, then every allowed entry point that imports cleanly."""
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    providers = {
        BUILTIN_PLUGIN: Provider(
            BUILTIN_PLUGIN, CORE_DISTRIBUTION, installed_version(CORE_DISTRIBUTION)
        )
    }
    # By name, as an entry point is loaded: the built-ins sit above the layers
    # whose components they register, and the registry sits below them.
    manager.register(importlib.import_module(BUILTIN_PLUGIN), name=BUILTIN_PLUGIN)
    allowed = _allowed_plugins()
    for entry_point in _entry_points():
        if allowed is not None and entry_point.name not in allowed:
            continue
        dist = entry_point.dist
        provider = Provider(
            entry_point.name, dist.name if dist else None, dist.version if dist else None
        )
        if entry_point.name in providers:
            first = providers[entry_point.name]
            _report_failure(
                registry,
                provider,
                PluginError(
                    f"entry point name {entry_point.name!r} is already taken by "
                    f"{first.distribution or first.plugin}"
                ),
            )
            continue
        try:
            plugin: ModuleType | object = entry_point.load()
            manager.register(plugin, name=entry_point.name)
        except Exception as exc:  # any import-time failure of foreign code
            _report_failure(registry, provider, exc)
            continue
        providers[entry_point.name] = provider
    return manager, providers


def _report_failure(registry: Registry, provider: Provider, exc: BaseException) -> None:
    where = f"plugin {provider.plugin!r}" + (
        f" from {provider.distribution} {provider.version}" if provider.distribution else ""
    )
    message = f"{type(exc).__name__}: {exc}"
    if _strict():
        raise PluginError(f"{where} failed to load: {message}") from exc
    logger.warning("%s failed to load and is skipped: %s", where, message)
    registry.failures.append(
        PluginFailure(provider.plugin, provider.distribution, provider.version, message)
    )


def load_registry() -> Registry:
    """Load plugins and collect what each registers, attributing every name to its plugin."""
    registry = Registry()
    manager, providers = build_plugin_manager(registry)
    kinds: list[tuple[str, dict[str, Component]]] = [
        ("register_entropy_sources", registry.entropy_sources),
        ("register_amplifiers", registry.amplifiers),
        ("register_temperature_strategies", registry.temperature_strategies),
    ]
    for hook_name, table in kinds:
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
            provider = providers[impl.plugin_name]
            try:
                impl.function(register=_registrar(table, provider))
            except PluginError:
                raise
            except Exception as exc:  # a plugin's hook failing must not take core down
                _report_failure(registry, provider, exc)
    return registry


def _registrar(table: dict[str, Component], provider: Provider) -> Callable[..., None]:
    def register(name: str, value: Any, *, settings: tuple[type[Any], ...] = ()) -> None:
        if name in table:
            other = table[name].provider.plugin
            raise PluginError(
                f"{name!r} is registered by both plugin {other!r} and plugin "
                f"{provider.plugin!r}; uninstall one or exclude it with {LOAD_PLUGINS_VARIABLE}"
            )
        table[name] = Component(name, value, provider, tuple(settings))

    return register


@functools.cache
def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    return load_registry()
