"""A package from ``qr-sampler source new``, installed for real into a fresh virtual env.

The environment gets ``qr-sampler-core[testing]`` from this repository's wheels (the
README's ``pip install --find-links dist``), the scaffolded package with its ``[test]``
extra resolved the same way, and a second source package whose plugin fails to import;
then the scaffolded package's own tests, ``qr-sampler sources``, ``config`` and ``probe``
run there as a user runs them. Needs the package index for the build backend and pytest.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from venv_support import Environment, new_environment

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


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, dist: Path) -> Environment:
    root = tmp_path_factory.mktemp("scaffold")
    environment = new_environment(root)
    environment.pip_install("qr-sampler-core[testing]", find_links=dist)

    environment.ok("qr-sampler", "source", "new", "acme-qrng", "--dir", str(root))
    broken = root / "qr-source-broken-demo"
    (broken / "src" / "qr_source_broken_demo").mkdir(parents=True)
    (broken / "pyproject.toml").write_text(textwrap.dedent(BROKEN_PYPROJECT))
    (broken / "src" / "qr_source_broken_demo" / "__init__.py").write_text("")
    (broken / "src" / "qr_source_broken_demo" / "plugin.py").write_text(BROKEN_PLUGIN)
    environment.pip_install(f"{root / 'qr-source-acme-qrng'}[test]", str(broken), find_links=dist)
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
