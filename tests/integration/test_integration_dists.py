"""The install commands of the READMEs, run in clean virtual envs against freshly built wheels.

``pip install --find-links dist "qr-sampler-core[grpc]"`` must bring the gRPC source,
``[http]`` and ``[device]`` theirs, and ``"qr-sampler-core[testing]"`` the conformance kit:
our packages come from the wheels, their dependencies from the package index (pip's cache
makes repeats quick).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from venv_support import REPO, Environment, new_environment


def installed_version(env: Environment, distribution: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    return env.ok("python", "-c", code).strip()


def project_version(package: str) -> str:
    text = (REPO / "packages" / package / "pyproject.toml").read_text("utf-8")
    (line,) = [line for line in text.splitlines() if line.startswith("version = ")]
    return line.split('"')[1]


@pytest.fixture(scope="module")
def grpc_env(tmp_path_factory: pytest.TempPathFactory, dist: Path) -> Environment:
    env = new_environment(tmp_path_factory.mktemp("grpc-extra"))
    env.pip_install("qr-sampler-core[grpc]", find_links=dist)
    return env


def test_every_package_has_one_wheel(dist: Path) -> None:
    names = sorted(path.name.split("-")[0] for path in dist.glob("*.whl"))
    assert names == [
        "qr_sampler_core",
        "qr_source_device",
        "qr_source_grpc",
        "qr_source_http",
        "qr_source_urandom_server",
    ]


def test_the_grpc_extra_installs_core_and_the_grpc_source(grpc_env: Environment) -> None:
    for distribution in ("qr-sampler-core", "qr-source-grpc"):
        assert installed_version(grpc_env, distribution) == project_version(distribution)
    report = json.loads(grpc_env.ok("qr-sampler", "sources", "--json"))
    sources = {source["name"]: source["distribution"] for source in report["sources"]}
    assert sources == {
        "prng": "qr-sampler-core",
        "replay": "qr-sampler-core",
        "system": "qr-sampler-core",
        "quantum_grpc": "qr-source-grpc",
    }
    assert report["failed_plugins"] == []


def test_the_installed_cli_validates_grpc_settings(grpc_env: Environment) -> None:
    result = grpc_env.run(
        "qr-sampler",
        "config",
        QR_ENTROPY_SOURCE_TYPE="quantum_grpc",
        QR_GRPC_SERVER_ADDRESS="localhost:50051",
    )
    assert result.returncode == 0, result.stderr
    assert "QR_GRPC_SERVER_ADDRESS=localhost:50051" in result.stdout


def test_the_testing_extra_installs_the_conformance_kit(
    tmp_path_factory: pytest.TempPathFactory, dist: Path
) -> None:
    env = new_environment(tmp_path_factory.mktemp("testing-extra"))
    env.pip_install("qr-sampler-core[testing]", find_links=dist)
    env.ok("python", "-c", "from qr_sampler.testing import EntropySourceConformance")
    assert env.ok("python", "-m", "pytest", "--version").startswith("pytest ")


CORE_SOURCES = {"prng": "qr-sampler-core", "replay": "qr-sampler-core", "system": "qr-sampler-core"}


@pytest.mark.parametrize(
    ("extra", "source", "distribution"),
    [("http", "http", "qr-source-http"), ("device", "device", "qr-source-device")],
)
def test_the_http_and_device_extras_install_their_source(
    tmp_path_factory: pytest.TempPathFactory,
    dist: Path,
    extra: str,
    source: str,
    distribution: str,
) -> None:
    env = new_environment(tmp_path_factory.mktemp(f"{extra}-extra"))
    env.pip_install(f"qr-sampler-core[{extra}]", find_links=dist)
    assert installed_version(env, distribution) == project_version(distribution)
    report = json.loads(env.ok("qr-sampler", "sources", "--json"))
    sources = {entry["name"]: entry["distribution"] for entry in report["sources"]}
    assert sources == {**CORE_SOURCES, source: distribution}
    assert report["failed_plugins"] == []
    if extra == "device":
        # The installed CLI draws from a real device through the installed source.
        probe = env.run(
            "qr-sampler",
            "probe",
            "--json",
            "--bytes",
            "7",
            "--count",
            "3",
            QR_ENTROPY_SOURCE_TYPE="device",
            QR_DEVICE_PATH="/dev/urandom",
        )
        assert probe.returncode == 0, probe.stderr
        assert json.loads(probe.stdout)["health"]["bytes_delivered"] == 21
    else:
        config = env.run(
            "qr-sampler",
            "config",
            QR_ENTROPY_SOURCE_TYPE="http",
            QR_HTTP_PRESET="anu",
            QR_HTTP_API_KEY="integration-key-5e8d21",
        )
        assert config.returncode == 0, config.stderr
        assert "QR_HTTP_PRESET=anu" in config.stdout
        assert "integration-key-5e8d21" not in config.stdout
