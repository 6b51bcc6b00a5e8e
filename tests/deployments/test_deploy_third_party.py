"""A third-party source in a profile: its settings and key reach the container at run time.

The source is a package from ``qr-sampler source new``, installed into a folder on
``sys.path`` (as the image's build step installs it), so core knows its settings and
which of them is secret. Nothing in docker/ names it.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_support import REPO, load_script, render

from qr_sampler.cli.main import main as qr_sampler
from qr_sampler.plugins.known_variables import read_env_file
from qr_sampler.plugins.registry import get_registry
from qr_sampler.profiles.catalog import Profile

bake = load_script("bake_profile")
UP = "docker compose -f docker/docker-compose.yml --env-file deployments/acme-lab/.env up"
KEY = "acme-7f3a9c21d04b"


@pytest.fixture(scope="module")
def acme_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    work = tmp_path_factory.mktemp("acme")
    assert qr_sampler(["source", "new", "acme-qrng", "--dir", str(work)]) == 0
    target = work / "site"
    package = work / "qr-source-acme-qrng"
    pip = (sys.executable, "-m", "pip", "install", "--quiet", "--no-deps")
    subprocess.run(
        [*pip, "--target", str(target), str(package)],
        check=True,
        timeout=300,
    )
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield
    sys.path.remove(str(target))
    importlib.invalidate_caches()


@pytest.fixture
def repo(tmp_path: Path, acme_installed: None) -> Path:
    """A copy of docker/ with one profile using the acme source."""
    shutil.copytree(REPO / "docker", tmp_path / "docker")
    profile = tmp_path / "deployments" / "acme-lab"
    profile.mkdir(parents=True)
    (profile / "sources.txt").write_text("qr-source-acme-qrng\n", encoding="utf-8")
    (profile / ".env").write_text(
        "PROFILE=acme-lab\n"
        "QR_ENTROPY_SOURCE_TYPE=acme_qrng\n"
        "QR_ACME_QRNG_ADDRESS=acme.lab:9000\n"
        "# no '=': the key comes from the shell at run time\n"
        "QR_ACME_QRNG_API_KEY\n",
        encoding="utf-8",
    )
    return tmp_path


def container(repo: Path, **shell: str) -> dict[str, Any]:
    environment: dict[str, Any] = render(UP, shell=shell, cwd=repo)["services"]["vllm"][
        "environment"
    ]
    return environment


def test_the_source_is_known_to_core(acme_installed: None) -> None:
    assert "acme_qrng" in get_registry().entropy_sources


def test_settings_and_the_shell_key_reach_the_container(repo: Path) -> None:
    environment = container(repo, QR_ACME_QRNG_API_KEY=KEY)
    assert environment["QR_ENTROPY_SOURCE_TYPE"] == "acme_qrng"
    assert environment["QR_ACME_QRNG_ADDRESS"] == "acme.lab:9000"
    assert environment["QR_ACME_QRNG_API_KEY"] == KEY


def test_without_a_key_in_the_shell_none_is_passed(repo: Path) -> None:
    assert "QR_ACME_QRNG_API_KEY" not in container(repo)


def test_a_key_written_in_the_profile_reaches_the_container(repo: Path) -> None:
    env_file = repo / "deployments" / "acme-lab" / ".env"
    env_file.write_text(
        env_file.read_text("utf-8").replace(
            "QR_ACME_QRNG_API_KEY\n", f"QR_ACME_QRNG_API_KEY={KEY}\n"
        ),
        encoding="utf-8",
    )
    assert container(repo)["QR_ACME_QRNG_API_KEY"] == KEY


@pytest.mark.parametrize("line", ["QR_ACME_QRNG_API_KEY\n", f"QR_ACME_QRNG_API_KEY={KEY}\n"])
def test_the_key_is_never_baked_into_the_image(repo: Path, line: str) -> None:
    folder = repo / "deployments" / "acme-lab"
    text = (folder / ".env").read_text("utf-8").replace("QR_ACME_QRNG_API_KEY\n", line)
    (folder / ".env").write_text(text, encoding="utf-8")
    baked = bake.public_env(Profile(folder))
    assert KEY not in baked
    assert "QR_ACME_QRNG_API_KEY" not in baked
    out = repo / "profile.env"
    out.write_text(baked, encoding="utf-8")
    assert read_env_file(str(out)) == {
        "QR_ENTROPY_SOURCE_TYPE": "acme_qrng",
        "QR_ACME_QRNG_ADDRESS": "acme.lab:9000",
    }


def test_the_profile_passes_its_check(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = repo / "deployments" / "acme-lab"
    assert qr_sampler(["profile", "check", str(folder)]) == 0, capsys.readouterr().err
