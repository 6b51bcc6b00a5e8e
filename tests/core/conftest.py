"""Shared fixtures for the core tests: a clean environment and real, installed plugins."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qr_sampler.plugins.registry import get_registry

# A plugin module that provides one entropy source; ``{name}`` is its entry point name.
SOURCE_PLUGIN = """
from qr_sampler import EntropySource, hookimpl
from qr_sampler.entropy.base import check_byte_count


class ConstantSource(EntropySource):
    name = "{name}"

    def get_random_bytes(self, n):
        check_byte_count(n)
        return bytes([7]) * n


@hookimpl
def register_entropy_sources(register):
    register("{name}", ConstantSource)
"""

# A plugin whose import fails, as one with a missing native dependency would.
BROKEN_PLUGIN = """
raise ImportError("libacme.so.3: cannot open shared object file")
"""

# A source whose settings hold a secret, read from QR_VAULT_* like a real remote source.
SECRET_PLUGIN = """
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from qr_sampler import EntropySource, QRSettings, hookimpl


class VaultSettings(QRSettings):
    model_config = SettingsConfigDict(env_prefix="QR_VAULT_")
    secret_fields = frozenset({{"api_key", "pin"}})

    address: str = "127.0.0.1:50051"
    api_key: str = ""
    pin: int = Field(0, ge=0)


class VaultSource(EntropySource):
    name = "{name}"

    def __init__(self):
        self.settings = VaultSettings.load()

    def get_random_bytes(self, n):
        return bytes(n)


@hookimpl
def register_entropy_sources(register):
    register("{name}", VaultSource, settings=(VaultSettings,))
"""

# A source that is installed but whose server is down.
UNAVAILABLE_PLUGIN = """
from qr_sampler import EntropySource, EntropyUnavailableError, hookimpl


class DownSource(EntropySource):
    name = "{name}"

    def get_random_bytes(self, n):
        raise EntropyUnavailableError("connection refused by 10.0.0.9:50051")


@hookimpl
def register_entropy_sources(register):
    register("{name}", DownSource)
"""

PLUGIN_TEMPLATES = {
    "source": SOURCE_PLUGIN,
    "broken": BROKEN_PLUGIN,
    "secret": SECRET_PLUGIN,
    "unavailable": UNAVAILABLE_PLUGIN,
}

InstallPlugin = Callable[..., Path]


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No ``QR_*`` variable, no stray ``.env`` and no cached registry leak into a test."""
    for name in list(os.environ):
        if name.startswith("QR_"):
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    get_registry.cache_clear()
    yield
    get_registry.cache_clear()


@pytest.fixture
def plugin_site(tmp_path: Path) -> Path:
    """A directory that is searched for distributions once a plugin is installed there."""
    site = tmp_path / "site"
    site.mkdir()
    return site


@pytest.fixture
def install_plugin(
    plugin_site: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> InstallPlugin:
    """Install a real distribution with a ``qr_sampler`` entry point into ``plugin_site``.

    ``install_plugin("acme", "source")`` writes module ``qr_test_plugin_acme`` (a
    template of ``PLUGIN_TEMPLATES`` formatted with ``name``, or literal ``code=``),
    a ``qr-acme-1.2.3.dist-info`` whose ``entry_points.txt`` names it, and puts the
    directory on ``sys.path``.
    """
    state = {"on_path": False}

    def install(
        name: str,
        kind: str = "source",
        *,
        code: str | None = None,
        distribution: str | None = None,
        version: str = "1.2.3",
        attribute: str | None = None,
    ) -> Path:
        module = f"qr_test_plugin_{name}"
        dist = distribution or f"qr-{name}"
        (plugin_site / f"{module}.py").write_text(
            textwrap.dedent(code) if code is not None else PLUGIN_TEMPLATES[kind].format(name=name),
            encoding="utf-8",
        )
        info = plugin_site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
        )
        target = f"{module}:{attribute}" if attribute else module
        (info / "entry_points.txt").write_text(
            f"[qr_sampler]\n{name} = {target}\n", encoding="utf-8"
        )
        request.addfinalizer(lambda: sys.modules.pop(module, None))
        if not state["on_path"]:
            monkeypatch.syspath_prepend(str(plugin_site))
            state["on_path"] = True
        importlib.invalidate_caches()
        get_registry.cache_clear()
        return plugin_site

    return install
