"""What ``qr-sampler profile check`` finds wrong with a profile before an image is built."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from qr_sampler.errors import ConfigValidationError, QRSamplerError
from qr_sampler.plugins.known_variables import (
    known_variables,
    read_env_file,
    secret_variables,
    unknown_variables,
)
from qr_sampler.plugins.registered import unregistered_strategies
from qr_sampler.plugins.registry import Registry
from qr_sampler.profiles.catalog import (
    PROFILE_VARIABLE,
    Profile,
    core_sources,
    is_installed,
    provided_sources,
    requirement_package,
)
from qr_sampler.settings.base import QRSettings, is_placeholder
from qr_sampler.settings.config import QRSamplerConfig
from qr_sampler.settings.names import did_you_mean


@dataclass
class Findings:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_profile(profile: Profile, registry: Registry) -> Findings:
    path = str(profile.env_file)
    values = read_env_file(path)
    found = Findings()
    unknown = unknown_variables([(path, values)], known_variables(registry))
    missing = _uninstalled_sources(profile) if unknown else []
    if missing:
        # Said first and once: names no typo explains are the missing package's settings.
        unexplained = [variable.name for variable in unknown if variable.suggestion is None]
        found.errors.append(_missing_packages(profile, missing, unexplained))
        unknown = [variable for variable in unknown if variable.suggestion is not None]
    found.errors += [variable.message() for variable in unknown]
    placeholders = _placeholder_secrets(values, registry)
    found.warnings += [
        f"{name} in {path} is the placeholder {values[name]!r}: give the real key at run "
        f"time ({name}=... docker compose ...), or the source refuses to start"
        for name in placeholders
    ]
    # A committed profile keeps a placeholder where the key goes: check the rest as if unset.
    values = {name: "" if name in placeholders else value for name, value in values.items()}
    try:
        config = QRSamplerConfig.from_assignments(values)
    except ConfigValidationError as exc:
        found.errors.append(f"core: {exc}")
    else:
        found.errors += unregistered_strategies(config, registry)
        found.errors += _unprovided_source(profile, config.entropy_source_type, registry)
    for name, component in sorted(registry.entropy_sources.items()):
        for settings in component.settings:
            try:
                settings.from_assignments(values)
            except ConfigValidationError as exc:
                found.errors.append(f"{name}: {exc}")
    found.errors += _wrong_profile_name(profile, values.get(PROFILE_VARIABLE))
    found.warnings += _published_secrets(profile, values, registry)
    if (profile.k8s_overlay / OVERLAY_SETTINGS).is_file():
        _check_overlay(profile.k8s_overlay, registry, found)
    return found


#: An overlay's ConfigMap source, and its Secret's (not committed; see deployments/k8s).
OVERLAY_SETTINGS = "settings.env"
OVERLAY_SECRETS = "secrets.env"


def _check_overlay(overlay: Path, registry: Registry, found: Findings) -> None:
    """The overlay's ConfigMap settings are valid and hold no secret; its Secret's file,
    where one exists, is not about to be published."""
    settings = overlay / OVERLAY_SETTINGS
    values = read_env_file(str(settings))
    found.errors += [
        variable.message()
        for variable in unknown_variables([(str(settings), values)], known_variables(registry))
    ]
    secrets = secret_variables(registry)
    found.errors += [
        f"{name} in {settings} would be readable by anyone who can read ConfigMaps: put it "
        f"in {overlay / OVERLAY_SECRETS}, which becomes a Secret"
        for name in sorted(secrets & values.keys())
    ]
    checks: list[type[QRSettings]] = [QRSamplerConfig]
    checks += [
        each for component in registry.entropy_sources.values() for each in component.settings
    ]
    for settings_class in checks:
        try:
            settings_class.from_assignments(values)
        except ConfigValidationError as exc:
            found.errors.append(f"{settings}: {exc}")
    secret_file = overlay / OVERLAY_SECRETS
    if secret_file.is_file():
        real = [
            name
            for name, value in read_env_file(str(secret_file)).items()
            if name in secrets and value and not is_placeholder(value)
        ]
        exposure = git_exposure(secret_file) if real else None
        if exposure is not None:
            found.warnings.append(
                f"{secret_file} holds a real-looking key ({', '.join(real)}) and {exposure}: "
                "a push publishes it; deployments/k8s/.gitignore keeps secrets.env out"
            )


def _placeholder_secrets(values: dict[str, str], registry: Registry) -> list[str]:
    secrets = secret_variables(registry) & values.keys()
    return sorted(name for name in secrets if values[name] and is_placeholder(values[name]))


def _unprovided_source(profile: Profile, selected: str, registry: Registry) -> list[str]:
    provided = core_sources(registry)
    errors = []
    for requirement in profile.requirements():
        try:
            provided |= provided_sources(requirement, profile.repo_root, registry)
        except QRSamplerError as exc:
            errors.append(f"{profile.sources_file}: {exc}")
    if selected not in provided:
        component = registry.entropy_sources.get(selected)
        hint = (
            f"; add {component.provider.distribution} (or its folder under packages/)"
            if component and component.provider.distribution
            else ""
        )
        known = provided | set(registry.entropy_sources)
        errors.append(
            f"QR_ENTROPY_SOURCE_TYPE={selected}: no package in {profile.sources_file} "
            f"provides this source, so the image would not have it"
            f"{hint or did_you_mean(selected, known)}"
        )
    return errors


def _uninstalled_sources(profile: Profile) -> list[str]:
    """The ``sources.txt`` lines whose package is not installed here."""
    missing = []
    for requirement in profile.requirements():
        try:
            distribution, _ = requirement_package(requirement, profile.repo_root)
        except QRSamplerError:
            continue  # reported by the sources.txt check
        if distribution and not is_installed(distribution):
            missing.append(requirement)
    return missing


def _missing_packages(profile: Profile, missing: list[str], names: list[str]) -> str:
    settings = (
        f"; until then its settings here ({', '.join(names)}) cannot be checked" if names else ""
    )
    return (
        f"profile {profile.name} needs {', '.join(missing)} ({profile.sources_file}), not "
        f"installed here: pip install {' '.join(_installable(profile, r) for r in missing)}, "
        f"then check again{settings}"
    )


def _installable(profile: Profile, requirement: str) -> str:
    """What pip takes from the working directory: a repository folder by a path that
    cannot be mistaken for a package name."""
    folder = profile.repo_root / requirement
    if not (folder / "pyproject.toml").is_file():
        return requirement
    path = os.path.relpath(folder)
    return path if os.sep in path else os.path.join(".", path)


def _wrong_profile_name(profile: Profile, declared: str | None) -> list[str]:
    if declared == profile.name:
        return []
    found = f"{PROFILE_VARIABLE}={declared}" if declared else f"{PROFILE_VARIABLE} is not set and"
    return [
        f"{found} in {profile.env_file}: docker compose builds the image from the profile "
        f"{PROFILE_VARIABLE} names; set {PROFILE_VARIABLE}={profile.name}"
    ]


def _published_secrets(profile: Profile, values: dict[str, str], registry: Registry) -> list[str]:
    real = [name for name in sorted(secret_variables(registry) & values.keys()) if values[name]]
    exposure = git_exposure(profile.env_file) if real else None
    if exposure is None:
        return []
    return [
        f"{name} in {profile.env_file} looks like a real key and the file {exposure}: "
        f"a push publishes it. Keep a placeholder there and pass the key at run time "
        f"({name}=... docker compose ...), or list the profile in deployments/.gitignore"
        for name in real
    ]


def git_exposure(path: Path) -> str | None:
    """How git would publish ``path``: tracked, or not ignored; ``None`` if it would not."""

    def git(*args: str) -> int:
        try:
            return subprocess.run(
                ["git", "-C", str(path.parent), *args, "--", path.name],
                capture_output=True,
                check=False,
            ).returncode
        except OSError:  # no git installed: nothing to publish with
            return -1

    if git("ls-files", "--error-unmatch") == 0:
        return "is tracked by git"
    if git("check-ignore", "--quiet") == 1:
        return "is not ignored by git"
    return None
