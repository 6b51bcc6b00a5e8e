"""A complete, installable entropy source package, rendered from the templates beside it."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import re
import string
from dataclasses import asdict, dataclass
from pathlib import Path

from qr_sampler.errors import QRSamplerError
from qr_sampler.plugins.registry import CORE_DISTRIBUTION

# Lowercase words joined by single hyphens or underscores: every name derived
# from it (distribution, import package, entry point, env prefix) is then valid.
_NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")

# template -> where it goes in the package; paths are templates themselves.
_FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "gitignore.tmpl": ".gitignore",
    "__init__.py.tmpl": "src/$package/__init__.py",
    "py.typed.tmpl": "src/$package/py.typed",
    "settings.py.tmpl": "src/$package/settings.py",
    "source.py.tmpl": "src/$package/source.py",
    "plugin.py.tmpl": "src/$package/plugin.py",
    "test_source.py.tmpl": "tests/test_source.py",
}


@dataclass(frozen=True)
class SourceNames:
    """Every name a source package needs, derived from the one its author chose."""

    name: str  # the registered source name, QR_ENTROPY_SOURCE_TYPE
    distribution: str
    package: str
    env_prefix: str
    class_prefix: str
    core_version: str

    @classmethod
    def from_name(cls, name: str) -> SourceNames:
        if not _NAME.fullmatch(name):
            raise QRSamplerError(
                f"source name {name!r} is not valid: use lowercase letters, digits and "
                "single '-' or '_' between them, starting with a letter (e.g. acme-qrng)"
            )
        words = re.split(r"[-_]", name)
        return cls(
            name="_".join(words),
            distribution="qr-source-" + "-".join(words),
            package="qr_source_" + "_".join(words),
            env_prefix="QR_" + "_".join(words).upper() + "_",
            class_prefix="".join(word.capitalize() for word in words),
            # The generated tests need qr_sampler.testing, which this version has.
            core_version=importlib.metadata.version(CORE_DISTRIBUTION),
        )


def create_source_package(names: SourceNames, parent: Path) -> Path:
    """Write the package into ``parent / names.distribution`` and return that directory."""
    root = parent / names.distribution
    if root.exists():
        raise QRSamplerError(f"{root} already exists; choose another --dir or remove it")
    values = asdict(names)
    templates = importlib.resources.files(__package__) / "templates"
    for template, target in _FILES.items():
        path = root / string.Template(target).substitute(values)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = string.Template(templates.joinpath(template).read_text(encoding="utf-8"))
        path.write_text(text.substitute(values), encoding="utf-8", newline="\n")
    return root
