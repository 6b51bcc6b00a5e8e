"""The Dockerfiles lint clean and have the structure that matters; no layer can hold a secret.

Nothing is built here (no Docker engine): the files are linted by hadolint and read as text.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from deploy_support import DEPLOYMENTS, HADOLINT, REPO, SHIPPED_PROFILES

from qr_sampler.plugins.known_variables import read_env_file, secret_variables
from qr_sampler.plugins.registry import get_registry

DOCKER = REPO / "docker"
VLLM = DOCKER / "Dockerfile.vllm"
ENTROPY_SERVER = DOCKER / "Dockerfile.entropy-server"
SECRET_WORDS = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)

Instruction = tuple[str, str]


def instructions(path: Path) -> list[Instruction]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [
        line for line in path.read_text("utf-8").splitlines() if not line.lstrip().startswith("#")
    ]
    joined = "\n".join(lines).replace("\\\n", " ")
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            pairs.append((keyword.upper(), " ".join(arguments.split())))
    return pairs


def arguments(steps: list[Instruction], keyword: str) -> list[str]:
    return [args for kind, args in steps if kind == keyword]


def copy_sources(steps: list[Instruction]) -> list[str]:
    """The context paths COPY and ADD read (options and the destination dropped)."""
    sources = []
    for kind, args in steps:
        if kind in {"COPY", "ADD"}:
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            sources += words[:-1]
    return sources


def mount_sources(steps: list[Instruction]) -> list[dict[str, str]]:
    mounts = []
    for args in arguments(steps, "RUN"):
        for option in re.findall(r"--mount=(\S+)", args):
            mounts.append(dict(part.partition("=")[::2] for part in option.split(",")))
    return mounts


def declared_names(steps: list[Instruction]) -> list[str]:
    """Names of every ARG and ENV, in both the ``NAME=value`` and ``ENV NAME value`` forms."""
    names = []
    for kind, args in steps:
        if kind == "ARG":
            names.append(args.split("=")[0])
        elif kind == "ENV":
            words = shlex.split(args)
            names += [w.split("=")[0] for w in words] if "=" in words[0] else [words[0]]
    return names


@pytest.mark.parametrize("dockerfile", [VLLM, ENTROPY_SERVER], ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile: Path, tmp_path: Path) -> None:
    # From an empty folder with an empty config home, so no stray .hadolint.yaml applies.
    result = subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "style", "-f", "json", dockerfile],
        cwd=tmp_path,
        env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, json.loads(result.stdout)) == (0, []), result.stderr


# --- Dockerfile.vllm ----------------------------------------------------------------------


def test_vllm_image_starts_from_the_pinned_official_image() -> None:
    steps = instructions(VLLM)
    assert steps[0] == ("ARG", "VLLM_TAG=v0.32.0")
    assert steps[1] == ("FROM", "vllm/vllm-openai:${VLLM_TAG}")
    assert arguments(steps, "FROM") == ["vllm/vllm-openai:${VLLM_TAG}"]


def test_vllm_image_installs_core_from_the_repo_before_the_profile() -> None:
    steps = instructions(VLLM)
    core = "/opt/qr-sampler/packages/qr-sampler-core"
    copy_core = steps.index(("COPY", f"packages/qr-sampler-core {core}"))
    install_core = steps.index(("RUN", f"python3 -m pip install --no-cache-dir {core}"))
    profile_arg = steps.index(("ARG", 'PROFILE=""'))
    assert copy_core < install_core < profile_arg  # a profile change keeps the core layer
    assert ("COPY", "packages /opt/qr-sampler/packages") in steps


def test_vllm_image_bakes_the_profile_named_by_the_build_arg() -> None:
    steps = instructions(VLLM)
    (bake,) = [args for args in arguments(steps, "RUN") if "bake_profile.py" in args]
    assert bake.endswith('bake_profile.py "${PROFILE}" "${QR_ENV_FILE}"')
    assert steps.index(("ENV", "QR_ENV_FILE=/etc/qr-sampler/profile.env")) < steps.index(
        ("RUN", bake)
    )
    assert mount_sources(steps) == [
        {"type": "bind", "source": "deployments", "target": "/opt/qr-sampler/deployments"}
    ]


def test_vllm_image_resets_the_entrypoint_and_serves_hf_model() -> None:
    steps = instructions(VLLM)
    assert arguments(steps, "ENTRYPOINT") == ["[]"]
    assert arguments(steps, "CMD") == ['["sh", "-c", "exec vllm serve \\"$HF_MODEL\\""]']
    assert ("ENV", "HF_MODEL=Qwen/Qwen2.5-0.5B-Instruct") in steps
    assert arguments(steps, "EXPOSE") == ["8000"]


def test_no_layer_can_hold_a_secret() -> None:
    steps = instructions(VLLM)
    secrets = secret_variables(get_registry())
    assert "QR_GRPC_API_KEY" in secrets
    # Profiles are only ever bind-mounted (read-only, gone after the step), never copied.
    for source in copy_sources(steps):
        assert not source.startswith("deployments")
        assert source not in {".", "./"}
        assert ".env" not in source
    for mount in mount_sources(steps):
        assert mount["type"] == "bind"
        assert "rw" not in mount
    # No build argument or environment variable names a secret.
    for name in declared_names(steps):
        assert name not in secrets
        assert not SECRET_WORDS.search(name), name
    text = VLLM.read_text("utf-8")
    for profile in SHIPPED_PROFILES:
        values = read_env_file(str(DEPLOYMENTS / profile / ".env"))
        for name in secrets & values.keys():
            assert values[name] not in text


# --- Dockerfile.entropy-server ----------------------------------------------------------


def test_entropy_server_image_is_slim_python_with_the_server_only() -> None:
    steps = instructions(ENTROPY_SERVER)
    assert steps[0] == ("ARG", "PYTHON_TAG=3.12-slim-bookworm")
    assert arguments(steps, "FROM") == ["python:${PYTHON_TAG}"]
    assert copy_sources(steps) == [
        "packages/qr-source-urandom-server",
        "docker/entropy_server_health.py",
    ]
    instructed = " ".join(args for _, args in steps)  # comments may name what is left out
    for absent in ("torch", "qr-sampler-core", "deployments"):
        assert absent not in instructed


def test_entropy_server_listens_on_all_interfaces_as_a_non_root_user() -> None:
    steps = instructions(ENTROPY_SERVER)
    assert arguments(steps, "ENTRYPOINT") == ['["qr-urandom-server"]']
    assert arguments(steps, "CMD") == ['["--address", "0.0.0.0:50051"]']
    assert arguments(steps, "EXPOSE") == ["50051"]
    (user,) = arguments(steps, "USER")
    assert user.split(":")[0] not in {"0", "root"}
    (healthcheck,) = arguments(steps, "HEALTHCHECK")
    assert healthcheck.endswith('CMD ["entropy-server-health"]')


# --- .dockerignore ------------------------------------------------------------------------


def test_dockerignore_keeps_only_what_the_dockerfiles_read() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    kept = {pattern[1:] for pattern in patterns if pattern.startswith("!")}
    read = set()
    for dockerfile in (VLLM, ENTROPY_SERVER):
        steps = instructions(dockerfile)
        read |= {path.split("/")[0] for path in copy_sources(steps)}
        read |= {mount["source"].split("/")[0] for mount in mount_sources(steps)}
    assert kept == read == {"packages", "docker", "deployments"}
