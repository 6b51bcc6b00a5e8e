"""Plugin discovery through real ``qr_sampler`` entry points of installed distributions."""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from qr_sampler import PluginError, SystemEntropySource
from qr_sampler.entropy.amplification import ZScoreMeanAmplifier
from qr_sampler.plugins.registry import Provider, get_registry, load_registry
from qr_sampler.sampling.temperature import EntropyDependentTemperature, FixedTemperature

InstallPlugin = Callable[..., Path]

CORE = Provider(
    "qr_sampler.builtins", "qr-sampler-core", importlib.metadata.version("qr-sampler-core")
)

CLASHING_PLUGIN = """
from qr_sampler import EntropySource, hookimpl


class Twin(EntropySource):
    name = "twin"

    def get_random_bytes(self, n):
        return bytes(n)


@hookimpl
def register_entropy_sources(register):
    register("{name}", Twin)
"""

RAISING_HOOK_PLUGIN = """
from qr_sampler import hookimpl
from qr_sampler.sampling.temperature import FixedTemperature


@hookimpl
def register_entropy_sources(register):
    raise RuntimeError("could not reach the license server")


@hookimpl
def register_temperature_strategies(register):
    register("cold", FixedTemperature())
"""

OBJECT_PLUGIN = """
from qr_sampler import hookimpl
from qr_sampler.sampling.temperature import FixedTemperature


class Plugin:
    @hookimpl
    def register_temperature_strategies(self, register):
        register("frozen", FixedTemperature())


plugin = Plugin()
"""


def test_builtins_are_registered_as_a_plugin_of_core() -> None:
    registry = load_registry()
    system = registry.entropy_sources["system"]
    assert system.value is SystemEntropySource
    assert system.provider == CORE
    assert isinstance(registry.amplifiers["zscore_mean"].value, ZScoreMeanAmplifier)
    assert isinstance(registry.temperature_strategies["fixed"].value, FixedTemperature)
    assert isinstance(registry.temperature_strategies["edt"].value, EntropyDependentTemperature)
    every = [
        *registry.entropy_sources.values(),
        *registry.amplifiers.values(),
        *registry.temperature_strategies.values(),
    ]
    assert {component.provider for component in every} == {CORE}
    assert registry.failures == []


def test_registry_is_loaded_once_per_process() -> None:
    assert get_registry() is get_registry()
    first = get_registry()
    get_registry.cache_clear()
    assert get_registry() is not first


def test_third_party_source_is_registered_and_attributed(install_plugin: InstallPlugin) -> None:
    install_plugin("acme", "source", distribution="qr-source-acme", version="2.5.0")
    registry = load_registry()
    acme = registry.entropy_sources["acme"]
    assert acme.provider == Provider("acme", "qr-source-acme", "2.5.0")
    with acme.value() as source:
        assert source.get_random_bytes(5) == b"\x07" * 5
    assert registry.entropy_sources["system"].provider == CORE
    assert registry.failures == []


def test_source_settings_travel_with_the_registration(install_plugin: InstallPlugin) -> None:
    install_plugin("vault", "secret")
    component = load_registry().entropy_sources["vault"]
    (settings,) = component.settings
    assert settings.__name__ == "VaultSettings"
    assert "QR_VAULT_API_KEY" in settings.env_names()


def test_entry_point_may_name_an_object(install_plugin: InstallPlugin) -> None:
    install_plugin("obj", code=OBJECT_PLUGIN, attribute="plugin")
    registry = load_registry()
    assert registry.temperature_strategies["frozen"].provider.plugin == "obj"


def test_plugin_that_fails_to_import_is_reported_and_skipped(
    install_plugin: InstallPlugin, caplog: pytest.LogCaptureFixture
) -> None:
    install_plugin("broken", "broken", distribution="qr-source-broken", version="0.3.1")
    install_plugin("acme", "source")
    with caplog.at_level(logging.WARNING, logger="qr_sampler.plugins.registry"):
        registry = load_registry()
    (failure,) = registry.failures
    assert failure.plugin == "broken"
    assert (failure.distribution, failure.version) == ("qr-source-broken", "0.3.1")
    assert failure.error.startswith("ImportError")
    assert "libacme.so.3" in failure.error
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'broken'" in warnings[0]
    assert "qr-source-broken 0.3.1" in warnings[0]
    assert "libacme.so.3" in warnings[0]
    # the rest keeps working
    assert {"system", "acme"} <= set(registry.entropy_sources)
    assert "broken" not in registry.entropy_sources


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_strict_plugins_makes_a_broken_plugin_fatal(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    install_plugin("broken", "broken", distribution="qr-source-broken", version="0.3.1")
    monkeypatch.setenv("QR_STRICT_PLUGINS", value)
    with pytest.raises(PluginError, match=r"'broken' from qr-source-broken 0\.3\.1") as caught:
        load_registry()
    assert "libacme.so.3" in str(caught.value)


def test_strict_plugins_off_values(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin("broken", "broken")
    monkeypatch.setenv("QR_STRICT_PLUGINS", "0")
    assert [f.plugin for f in load_registry().failures] == ["broken"]


def test_load_plugins_is_an_allow_list(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin("alpha", "source")
    install_plugin("beta", "source")
    install_plugin("broken", "broken")
    monkeypatch.setenv("QR_LOAD_PLUGINS", " alpha , ")
    registry = load_registry()
    assert set(registry.entropy_sources) == {"system", "prng", "replay", "alpha"}
    assert registry.failures == []  # an excluded plugin is never imported


def test_empty_load_plugins_keeps_only_the_builtins(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin("alpha", "source")
    monkeypatch.setenv("QR_LOAD_PLUGINS", "")
    registry = load_registry()
    assert set(registry.entropy_sources) == {"system", "prng", "replay"}
    assert set(registry.amplifiers) == {"uniform_bits", "zscore_mean"}
    assert set(registry.temperature_strategies) == {"fixed", "edt"}


def test_unset_load_plugins_loads_every_plugin(install_plugin: InstallPlugin) -> None:
    install_plugin("alpha", "source")
    install_plugin("beta", "source")
    assert set(load_registry().entropy_sources) == {"system", "prng", "replay", "alpha", "beta"}


def test_two_plugins_registering_one_name_is_an_error_naming_both(
    install_plugin: InstallPlugin,
) -> None:
    install_plugin("first", code=CLASHING_PLUGIN.format(name="twin"))
    install_plugin("second", code=CLASHING_PLUGIN.format(name="twin"))
    with pytest.raises(PluginError, match="'twin'") as caught:
        load_registry()
    assert "'first'" in str(caught.value)
    assert "'second'" in str(caught.value)
    assert "QR_LOAD_PLUGINS" in str(caught.value)


def test_plugin_cannot_take_over_a_builtin_name(install_plugin: InstallPlugin) -> None:
    install_plugin("impostor", code=CLASHING_PLUGIN.format(name="system"))
    with pytest.raises(PluginError, match=r"'qr_sampler\.builtins'") as caught:
        load_registry()
    assert "'impostor'" in str(caught.value)


def test_clash_is_resolved_by_the_allow_list(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin("first", code=CLASHING_PLUGIN.format(name="twin"))
    install_plugin("second", code=CLASHING_PLUGIN.format(name="twin"))
    monkeypatch.setenv("QR_LOAD_PLUGINS", "second")
    assert load_registry().entropy_sources["twin"].provider.plugin == "second"


def test_a_raising_hook_is_reported_not_fatal(
    install_plugin: InstallPlugin, caplog: pytest.LogCaptureFixture
) -> None:
    install_plugin("flaky", code=RAISING_HOOK_PLUGIN, distribution="qr-flaky", version="1.0")
    with caplog.at_level(logging.WARNING, logger="qr_sampler.plugins.registry"):
        registry = load_registry()
    (failure,) = registry.failures
    assert (failure.plugin, failure.distribution, failure.version) == ("flaky", "qr-flaky", "1.0")
    assert "RuntimeError: could not reach the license server" in failure.error
    assert any("'flaky'" in r.getMessage() for r in caplog.records)
    # its other hook, and everyone else's, still ran
    assert registry.temperature_strategies["cold"].provider.plugin == "flaky"
    assert "system" in registry.entropy_sources


def test_a_raising_hook_is_fatal_under_strict(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin("flaky", code=RAISING_HOOK_PLUGIN)
    monkeypatch.setenv("QR_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="license server"):
        load_registry()
