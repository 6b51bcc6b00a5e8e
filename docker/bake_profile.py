"""The profile step of Dockerfile.vllm: install a profile's sources, check it, bake its settings.

Runs inside the image being built, from its copy of the repository, while deployments/ is
mounted for this step only. Usage: bake_profile.py PROFILE ENV_OUT (an empty PROFILE
builds core alone). ENV_OUT receives the profile's QR_* settings minus every secret:
keys reach the container at run time, never an image layer.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

from qr_sampler.cli.main import main as qr_sampler
from qr_sampler.plugins.known_variables import PREFIX, read_env_file, secret_variables
from qr_sampler.plugins.registry import get_registry
from qr_sampler.profiles.catalog import DEFAULT_DEPLOYMENTS, Profile, find_profile

REPO = Path(__file__).resolve().parent.parent
HEADER = "# Written by docker/bake_profile.py at build time; secrets are passed at run time.\n"


def install_sources(profile: Profile) -> None:
    if profile.requirements():
        # sources.txt paths are relative to the repository root, and pip reads them from the cwd.
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-cache-dir", "-r", profile.sources_file],
            cwd=REPO,
            check=True,
        )
        # The sources just installed must be found by the plugin registry in this process.
        importlib.invalidate_caches()


def public_env(profile: Profile | None) -> str:
    """The profile's ``QR_*`` assignments without secrets, as a dotenv file."""
    if profile is None:
        return HEADER
    secrets = secret_variables(get_registry())
    values = read_env_file(str(profile.env_file))
    return HEADER + "".join(
        f"{name}={_single_quoted(value)}\n"
        for name, value in values.items()
        if name.startswith(PREFIX) and name not in secrets
    )


def _single_quoted(value: str) -> str:
    # dotenv takes a single-quoted value literally (no ${...} expansion), except \\ and \'.
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def main(argv: list[str]) -> int:
    name, env_out = argv[1:]
    profile = find_profile(REPO / DEFAULT_DEPLOYMENTS, name) if name else None
    if profile is not None:
        install_sources(profile)
        if qr_sampler(["profile", "check", str(profile.path)]) != 0:
            return 1
    out = Path(env_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(public_env(profile), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
