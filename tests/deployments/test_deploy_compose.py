"""The three commands of the READMEs, rendered by the real compose binary (``config``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from deploy_support import (
    DEPLOYMENTS,
    REPO,
    SHIPPED_PROFILES,
    container_variables,
    readme_commands,
    render,
)

from qr_sampler.plugins.known_variables import read_env_file

DEFAULT = "docker compose -f docker/docker-compose.yml up"
FIREFLY = "docker compose -f docker/docker-compose.yml --env-file deployments/firefly-1/.env up"
URANDOM = (
    "docker compose -f docker/docker-compose.yml "
    "-f deployments/urandom/docker-compose.override.yml "
    "--env-file deployments/urandom/.env up"
)
THREE_COMMANDS = [DEFAULT, FIREFLY, URANDOM]


def vllm(rendered: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = rendered["services"]["vllm"]
    return service


def passed(service: dict[str, Any]) -> dict[str, str]:
    """The variables the container gets (a null entry is left unset)."""
    return {k: v for k, v in service.get("environment", {}).items() if v is not None}


def command_for(profile: str) -> str:
    override = DEPLOYMENTS / profile / "docker-compose.override.yml"
    extra = f"-f {override.relative_to(REPO)} " if override.is_file() else ""
    env_file = f"deployments/{profile}/.env"
    return f"docker compose -f docker/docker-compose.yml {extra}--env-file {env_file} up"


@pytest.mark.parametrize("readme", [REPO / "README.md", DEPLOYMENTS / "README.md"])
def test_the_readmes_quote_the_three_commands_word_for_word(readme: Path) -> None:
    assert readme_commands(readme)[:3] == THREE_COMMANDS


@pytest.mark.parametrize(
    "readme",
    [REPO / "README.md", *sorted(DEPLOYMENTS.glob("**/README.md"))],
    ids=lambda path: str(path.relative_to(REPO)),
)
def test_every_quoted_up_command_is_one_that_is_rendered_here(readme: Path) -> None:
    # Besides the three, only the second form for the examples' new profile names.
    names = [*SHIPPED_PROFILES, "my-lab", "PROFILE_NAME"]
    allowed = [*THREE_COMMANDS, *(command_for(name) for name in names)]
    for command in readme_commands(readme):
        assert command in allowed


def test_without_a_profile_vllm_runs_alone_on_the_system_source() -> None:
    rendered = render(DEFAULT)
    assert list(rendered["services"]) == ["vllm"]
    service = vllm(rendered)
    assert service["build"] == {
        "context": str(REPO),
        "dockerfile": "docker/Dockerfile.vllm",
        "args": {"PROFILE": ""},
    }
    assert service["image"] == "qr-sampler-vllm:core"
    assert service["pull_policy"] == "build"
    assert passed(service) == {
        "QR_ENTROPY_SOURCE_TYPE": "system",
        "HF_MODEL": "Qwen/Qwen2.5-0.5B-Instruct",
    }
    assert [(p["target"], p["published"]) for p in service["ports"]] == [(8000, "8000")]
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]
    assert device["driver"] == "nvidia"
    assert [(v["source"], v["target"]) for v in service["volumes"]] == [
        ("hf-cache", "/root/.cache/huggingface")
    ]
    assert "hf-cache" in rendered["volumes"]


def test_firefly_settings_reach_the_container() -> None:
    service = vllm(render(FIREFLY))
    assert service["build"]["args"] == {"PROFILE": "firefly-1"}
    assert service["image"] == "qr-sampler-vllm:firefly-1"
    environment = passed(service)
    assert environment["QR_GRPC_METHOD_PATH"] == "/qrng.QuantumRNG/GetRandomBytes"
    assert environment["QR_GRPC_STREAM_METHOD_PATH"] == ""
    assert environment["QR_GRPC_MODE"] == "unary"
    assert environment["QR_GRPC_SERVER_ADDRESS"] == "10.0.0.115:50051"
    assert environment["QR_GRPC_API_KEY_HEADER"] == "api-key"
    assert environment["QR_ENTROPY_SOURCE_TYPE"] == "quantum_grpc"


def test_urandom_adds_a_healthy_entropy_server_before_vllm() -> None:
    rendered = render(URANDOM)
    assert sorted(rendered["services"]) == ["entropy-server", "vllm"]
    server = rendered["services"]["entropy-server"]
    assert server["build"] == {
        "context": str(REPO),
        "dockerfile": "docker/Dockerfile.entropy-server",
    }
    assert server["healthcheck"]["test"] == ["CMD", "entropy-server-health"]
    assert server["pull_policy"] == "build"
    assert "ports" not in server  # reached over the compose network only
    service = vllm(rendered)
    assert service["depends_on"]["entropy-server"]["condition"] == "service_healthy"
    assert service["build"]["args"] == {"PROFILE": "urandom"}
    assert passed(service)["QR_GRPC_SERVER_ADDRESS"] == "entropy-server:50051"


@pytest.mark.parametrize("profile", SHIPPED_PROFILES)
def test_every_setting_of_a_profile_reaches_the_container(profile: str) -> None:
    written = read_env_file(str(DEPLOYMENTS / profile / ".env"))
    environment = passed(vllm(render(command_for(profile))))
    assert {k: v for k, v in written.items() if k.startswith("QR_")}.items() <= environment.items()


def test_compose_passes_every_setting_core_and_the_grpc_source_read() -> None:
    names = set(vllm(render(DEFAULT))["environment"])
    assert names == container_variables() | {"HF_MODEL", "HF_TOKEN"}


def test_a_key_from_the_shell_wins_over_the_placeholder() -> None:
    key = "f1r3fly-9c2e7a41b0d85f36"
    environment = passed(vllm(render(FIREFLY, shell={"QR_GRPC_API_KEY": key})))
    assert environment["QR_GRPC_API_KEY"] == key


def test_unset_settings_stay_unset_so_defaults_apply() -> None:
    environment = vllm(render(FIREFLY))["environment"]
    assert environment["QR_SAMPLE_COUNT"] is None


def image_default_model() -> str:
    text = (REPO / "docker" / "Dockerfile.vllm").read_text("utf-8")
    (model,) = re.findall(r"^ENV HF_MODEL=(\S+)$", text, flags=re.M)
    return model


def served_model(service: dict[str, Any]) -> str:
    """What ``vllm serve "$HF_MODEL"`` gets: the container's value, else the image's ENV.

    A null entry in the rendered file unsets the variable, image default included.
    """
    environment = service.get("environment", {})
    if "HF_MODEL" in environment:
        return environment["HF_MODEL"] or ""
    return image_default_model()


@pytest.mark.parametrize("command", THREE_COMMANDS, ids=["default", "firefly-1", "urandom"])
def test_each_readme_command_serves_the_default_model(command: str) -> None:
    assert served_model(vllm(render(command))) == "Qwen/Qwen2.5-0.5B-Instruct"
    assert image_default_model() == "Qwen/Qwen2.5-0.5B-Instruct"


@pytest.mark.parametrize("command", THREE_COMMANDS, ids=["default", "firefly-1", "urandom"])
def test_a_model_from_the_shell_is_served(command: str) -> None:
    service = vllm(render(command, shell={"HF_MODEL": "org/other-model"}))
    assert served_model(service) == "org/other-model"
