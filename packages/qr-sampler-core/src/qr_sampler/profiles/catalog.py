"""Deployment profiles on disk: where they live, what they hold, which sources they install.

A profile is a folder under ``deployments/`` with an ``.env`` (the settings) and a
``sources.txt`` (a pip requirements file naming the source packages its image needs).
The Docker build reads the same two files, so what is checked here is what is built.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qr_sampler.errors import QRSamplerError
from qr_sampler.plugins.registry import CORE_DISTRIBUTION, Registry
from qr_sampler.settings.base import DEPLOYMENTS_VARIABLE
from qr_sampler.settings.names import did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 has only the backport
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

DEFAULT_DEPLOYMENTS = "deployments"
TEMPLATE = "_template"
ENV_FILE = ".env"
SOURCES_FILE = "sources.txt"
# Compose passes this to the image build, so it must name the profile's own folder.
PROFILE_VARIABLE = "PROFILE"
# Profile names become folder names and Docker image tags.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


def deployments_dir(option: str | None) -> Path:
    """``--deployments``, else ``$QR_DEPLOYMENTS_DIR``, else the nearest ``deployments``
    folder from the working directory up to its repository's root."""
    chosen = option or os.environ.get(DEPLOYMENTS_VARIABLE)
    if chosen:
        return Path(chosen)
    return _nearest_deployments(Path.cwd()) or Path(DEFAULT_DEPLOYMENTS)


def _nearest_deployments(start: Path) -> Path | None:
    """``deployments`` in ``start`` or a folder above it up to the root of the git
    repository ``start`` is in; outside a repository, only ``start`` itself counts."""
    chain = [start, *start.parents]
    root = next((i for i, folder in enumerate(chain) if (folder / ".git").exists()), 0)
    for folder in chain[: root + 1]:
        if (folder / DEFAULT_DEPLOYMENTS).is_dir():
            return folder / DEFAULT_DEPLOYMENTS
    return None


def existing_root(root: Path) -> Path:
    if not root.is_dir():
        raise QRSamplerError(
            f"no deployments folder at {root} (nor above the working directory within its "
            f"repository); run from inside the repository, pass --deployments DIR or set "
            f"{DEPLOYMENTS_VARIABLE}"
        )
    return root


@dataclass(frozen=True)
class Profile:
    path: Path

    @property
    def name(self) -> str:
        return self.path.resolve().name

    @property
    def env_file(self) -> Path:
        return self.path / ENV_FILE

    @property
    def sources_file(self) -> Path:
        return self.path / SOURCES_FILE

    @property
    def repo_root(self) -> Path:
        """Where ``sources.txt`` paths start: the folder that holds ``deployments/``."""
        return self.path.resolve().parent.parent

    @property
    def k8s_overlay(self) -> Path:
        """The profile's Kubernetes overlay (``deployments/k8s/overlays/NAME``), if any."""
        return self.path.resolve().parent / "k8s" / "overlays" / self.name

    def requirements(self) -> list[str]:
        """The requirement lines of ``sources.txt`` (none when the file is absent)."""
        if not self.sources_file.is_file():
            return []
        lines = (
            line.split(" #")[0].strip()
            for line in self.sources_file.read_text("utf-8").splitlines()
        )
        # pip options (-r, --index-url ...) install nothing by themselves.
        return [line for line in lines if line and not line.startswith(("#", "-"))]


def find_profile(root: Path, name_or_path: str) -> Profile:
    """A bare name is a folder under ``root``; anything with a slash is a path."""
    if "/" in name_or_path or os.sep in name_or_path:
        path = Path(name_or_path)
        hint = ""
    else:
        path = existing_root(root) / name_or_path
        names = [profile.name for profile in list_profiles(root)]
        hint = did_you_mean(name_or_path, names) or f"; profiles: {', '.join(names) or 'none'}"
    if not (path / ENV_FILE).is_file():
        raise QRSamplerError(f"no profile at {path} (it needs a {ENV_FILE} file){hint}")
    return Profile(path)


def list_profiles(root: Path) -> list[Profile]:
    """Every profile under ``root``; folders starting with ``_`` or ``.`` are not profiles."""
    return [
        Profile(path)
        for path in sorted(existing_root(root).iterdir())
        if not path.name.startswith(("_", ".")) and (path / ENV_FILE).is_file()
    ]


def create_profile(root: Path, name: str) -> Profile:
    """Copy ``_template`` to ``root/name`` with ``PROFILE`` set to the new name."""
    if not NAME_PATTERN.fullmatch(name):
        raise QRSamplerError(
            f"profile name {name!r} must start with a letter or digit and hold only "
            "letters, digits, '.', '_' and '-' (it becomes a folder and an image tag)"
        )
    template, target = existing_root(root) / TEMPLATE, root / name
    if not template.is_dir():
        raise QRSamplerError(f"no template at {template}")
    if target.exists():
        raise QRSamplerError(f"{target} already exists; not overwriting it")
    shutil.copytree(template, target)
    env_file = target / ENV_FILE
    text = env_file.read_text("utf-8")
    env_file.write_text(
        re.sub(rf"^{PROFILE_VARIABLE}=.*$", f"{PROFILE_VARIABLE}={name}", text, flags=re.M),
        "utf-8",
    )
    return Profile(target)


def normalize(distribution: str) -> str:
    """The comparable form of a distribution name (PEP 503)."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def requirement_package(requirement: str, repo_root: Path) -> tuple[str, set[str]]:
    """The distribution a ``sources.txt`` line installs, and the sources it declares.

    A path into the repository is read from its ``pyproject.toml`` (its name and
    ``qr_sampler`` entry points, so nothing need be installed); any other line is a
    requirement whose name is all that can be known without installing it.
    """
    pyproject = repo_root / requirement / "pyproject.toml"
    # A slash without a scheme is a folder; pip would fail on it at build time.
    if "/" in requirement and ":" not in requirement and not pyproject.is_file():
        raise QRSamplerError(f"{requirement}: no package (pyproject.toml) at {pyproject.parent}")
    if pyproject.is_file():
        project = _project_table(pyproject)
        return str(project.get("name", "")), set(
            project.get("entry-points", {}).get("qr_sampler", {})
        )
    match = _REQUIREMENT_NAME.match(requirement)
    return (match.group(0) if match else ""), set()


def provided_sources(requirement: str, repo_root: Path, registry: Registry) -> set[str]:
    """Names of the entropy sources a ``sources.txt`` line installs: those it declares
    and those its installed copy registers."""
    distribution, names = requirement_package(requirement, repo_root)
    return names | distributed_by(registry, distribution)


def is_installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def distributed_by(registry: Registry, distribution: str) -> set[str]:
    """Entropy sources the installed ``distribution`` registers."""
    return {
        name
        for name, component in registry.entropy_sources.items()
        if component.provider.distribution
        and normalize(component.provider.distribution) == normalize(distribution)
    }


def core_sources(registry: Registry) -> set[str]:
    """Sources every image has, because core is always installed."""
    return distributed_by(registry, CORE_DISTRIBUTION)


def _project_table(pyproject: Path) -> dict[str, Any]:
    with pyproject.open("rb") as handle:
        project: dict[str, Any] = tomllib.load(handle).get("project", {})
    return project
