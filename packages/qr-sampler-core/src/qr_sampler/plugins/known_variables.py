"""Which ``QR_*`` variables exist: core's, every installed source's, and the process-level ones.

Used to catch typos in the environment and in profile files before they silently
fall back to defaults.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dotenv import dotenv_values

from qr_sampler.plugins.registered import SOURCE_PACKAGES_VARIABLE
from qr_sampler.plugins.registry import LOAD_PLUGINS_VARIABLE, STRICT_PLUGINS_VARIABLE, Registry
from qr_sampler.settings.base import DEPLOYMENTS_VARIABLE, ENV_FILE_VARIABLE, QRSettings
from qr_sampler.settings.config import QRSamplerConfig

PREFIX = "QR_"
PROCESS_VARIABLES = {
    ENV_FILE_VARIABLE: "core (process)",
    LOAD_PLUGINS_VARIABLE: "core (process)",
    STRICT_PLUGINS_VARIABLE: "core (process)",
    DEPLOYMENTS_VARIABLE: "core (qr-sampler profile)",
    SOURCE_PACKAGES_VARIABLE: "core (set by the vLLM plugin for Ray workers)",
}


@dataclass(frozen=True)
class UnknownVariable:
    name: str
    origin: str
    suggestion: str | None

    def message(self) -> str:
        hint = f"; did you mean {self.suggestion}?" if self.suggestion else ""
        return f"unknown variable {self.name} ({self.origin}){hint}"


def settings_classes(registry: Registry) -> dict[str, list[type[QRSettings]]]:
    """Settings classes by owner: ``core`` first, then each source by name."""
    owners: dict[str, list[type[QRSettings]]] = {"core": [QRSamplerConfig]}
    for name, component in sorted(registry.entropy_sources.items()):
        if component.settings:
            owners[name] = list(component.settings)
    return owners


def known_variables(registry: Registry) -> dict[str, str]:
    """Every ``QR_*`` name something installed reads, mapped to its owner."""
    known = dict(PROCESS_VARIABLES)
    for owner, classes in settings_classes(registry).items():
        for settings in classes:
            known.update(dict.fromkeys(settings.env_names(), owner))
    return known


def secret_variables(registry: Registry) -> set[str]:
    """Names of the variables that hold secrets, in core or any installed source."""
    return {
        name
        for classes in settings_classes(registry).values()
        for settings in classes
        for name, field in settings.env_names().items()
        if field in settings.secret_fields
    }


def read_env_file(path: str) -> dict[str, str]:
    """A dotenv file's assignments (values of bare names become empty strings)."""
    return {key: value or "" for key, value in dotenv_values(path).items()}


def unknown_variables(
    sources: Iterable[tuple[str, Iterable[str]]], known: Mapping[str, str]
) -> list[UnknownVariable]:
    """``QR_*`` names from each (origin, names) pair that nothing installed reads."""
    unknown = []
    for origin, names in sources:
        for name in sorted(names):
            if name.startswith(PREFIX) and name not in known:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
                suggestion = close[0] if close and _same_owner(name, close[0], known) else None
                unknown.append(UnknownVariable(name, origin, suggestion))
    return unknown


def _same_owner(name: str, match: str, known: Mapping[str, str]) -> bool:
    """Whether ``match`` can be what ``name`` meant: a source's names start with its own
    word (QR_GRPC_...), and QR_GRPC_API_KEY is another source's setting, not a typo of
    QR_MYSOURCE_API_KEY. Core's names have no such word."""
    if known[match].startswith("core"):
        return True
    word, match_word = (n[len(PREFIX) :].split("_", 1)[0] for n in (name, match))
    return difflib.SequenceMatcher(None, word, match_word).ratio() >= 0.75


def environment_names() -> list[str]:
    return [name for name in os.environ if name.startswith(PREFIX)]


def unknown_in_effect(registry: Registry, env_file: str) -> list[UnknownVariable]:
    """Unknown ``QR_*`` names in the process environment and in the dotenv file in use."""
    origins: list[tuple[str, Iterable[str]]] = [("environment", environment_names())]
    if os.path.isfile(env_file):
        origins.append((env_file, list(read_env_file(env_file))))
    return unknown_variables(origins, known_variables(registry))


def process_settings() -> dict[str, str]:
    """The process-level variables as set (empty when unset), for ``qr-sampler config``."""
    return {name: os.environ.get(name, "") for name in PROCESS_VARIABLES}
