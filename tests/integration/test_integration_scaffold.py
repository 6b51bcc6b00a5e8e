"""A package from ``qr-sampler source new``, installed for real into a fresh virtual env.

The environment gets qr-sampler-core from this repository, the scaffolded package and
a second source package whose plugin fails to import; then the scaffolded package's
own tests, ``qr-sampler sources``, ``config`` and ``probe`` run there as a user runs them.
Needs the package index for the build backend and pytest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "packages" / "qr-sampler-core"
INSTALL_TIMEOUT_S = 600
RUN_TIMEOUT_S = 120

BROKEN_PYPROJECT = """
[build-system]
requires = ["hatchling>=1.24"]
build-backend = "hatchling.build"

[project]
name = "qr-source-broken-demo"
version = "0.2.0"
dependencies = ["qr-sampler-core"]

[project.entry-points.qr_sampler]
broken_demo = "qr_source_broken_demo.plugin"

[tool.hatch.build.targets.wheel]
packages = ["src/qr_source_broken_demo"]
"""
# A plugin whose native dependency is missing on this machine.
BROKEN_PLUGIN = 'raise ImportError("libacme.so.3: cannot open shared object file")\n'


@dataclass(frozen=True)
class Environment:
    """A virtual environment and a working directory with no ``.env`` in it."""

    bin: Path
    work: Path

    def run(
        self, *argv: str, cwd: Path | None = None, timeout: float = RUN_TIMEOUT_S, **env: str
    ) -> subprocess.CompletedProcess[str]:
        # The venv's tools, and nothing from the environment running the tests.
        clean = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("QR_") and name not in {"PYTHONPATH", "VIRTUAL_ENV"}
        }
        clean["PATH"] = f"{self.bin}{os.pathsep}{clean.get('PATH', '')}"
        return subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]],
            cwd=cwd or self.work,
            env={**clean, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(
        self, *argv: str, cwd: Path | None = None, timeout: float = RUN_TIMEOUT_S, **env: str
    ) -> str:
        """Run, insist on exit 0, return stdout."""
        result = self.run(*argv, cwd=cwd, timeout=timeout, **env)
        assert result.returncode == 0, (
            f"{argv} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
        return result.stdout


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Environment:
    root = tmp_path_factory.mktemp("scaffold")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    work = root / "work"
    work.mkdir()
    environment = Environment(root / "venv" / "bin", work)
    pip = ("python", "-m", "pip", "install", "--disable-pip-version-check", "-q")
    environment.ok(*pip, f"{CORE}[testing]", timeout=INSTALL_TIMEOUT_S)

    environment.ok("qr-sampler", "source", "new", "acme-qrng", "--dir", str(root))
    broken = root / "qr-source-broken-demo"
    (broken / "src" / "qr_source_broken_demo").mkdir(parents=True)
    (broken / "pyproject.toml").write_text(textwrap.dedent(BROKEN_PYPROJECT))
    (broken / "src" / "qr_source_broken_demo" / "__init__.py").write_text("")
    (broken / "src" / "qr_source_broken_demo" / "plugin.py").write_text(BROKEN_PLUGIN)
    environment.ok(
        *pip, f"{root / 'qr-source-acme-qrng'}[test]", str(broken), timeout=INSTALL_TIMEOUT_S
    )
    return environment


def test_the_scaffolded_package_passes_its_own_tests(env: Environment) -> None:
    package = env.work.parent / "qr-source-acme-qrng"
    out = env.ok("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=package)
    assert "13 passed" in out


def test_sources_lists_it_with_its_version_and_names_the_broken_plugin(env: Environment) -> None:
    report = json.loads(env.ok("qr-sampler", "sources", "--json"))
    sources = {source["name"]: source for source in report["sources"]}
    assert sources["acme_qrng"] == {
        "name": "acme_qrng",
        "plugin": "acme_qrng",
        "distribution": "qr-source-acme-qrng",
        "version": "0.1.0",
    }
    assert "system" in sources
    (failure,) = report["failed_plugins"]
    assert (failure["plugin"], failure["distribution"], failure["version"]) == (
        "broken_demo",
        "qr-source-broken-demo",
        "0.2.0",
    )
    assert "ImportError: libacme.so.3" in failure["error"]

    table = env.ok("qr-sampler", "sources")
    assert ["acme_qrng", "acme_qrng", "qr-source-acme-qrng", "0.1.0"] in [
        line.split() for line in table.splitlines()
    ]
    assert "broken_demo (qr-source-broken-demo 0.2.0): ImportError" in table


def test_probe_draws_from_it(env: Environment) -> None:
    out = env.ok("qr-sampler", "probe", "--json", QR_ENTROPY_SOURCE_TYPE="acme_qrng")
    report = json.loads(out)
    assert report["source"] == "acme_qrng"
    assert report["health"]["source"] == "acme_qrng"
    assert report["health"]["address"] == "localhost:9000"


def test_everything_else_keeps_working(env: Environment) -> None:
    assert json.loads(env.ok("qr-sampler", "probe", "--json"))["source"] == "system"
    secret = "acme-secret-key-0123456789"
    config = env.ok(
        "qr-sampler", "config", QR_ACME_QRNG_ADDRESS="10.0.0.7:9000", QR_ACME_QRNG_API_KEY=secret
    )
    assert "QR_ACME_QRNG_ADDRESS=10.0.0.7:9000" in config
    assert f"QR_ACME_QRNG_API_KEY=****{secret[-4:]}" in config
    assert secret not in config


def test_strict_plugins_makes_the_broken_package_fatal(env: Environment) -> None:
    result = env.run("qr-sampler", "sources", QR_STRICT_PLUGINS="1")
    assert result.returncode == 2
    assert "'broken_demo'" in result.stderr
