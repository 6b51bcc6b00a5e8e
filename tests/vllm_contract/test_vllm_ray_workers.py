"""QR_* settings reach a Ray worker through vLLM's own machinery, and a worker that
lacks the driver's source package stops start-up naming it.

Two fresh processes stand for the two sides of a multi-node deployment. The driver
loads vLLM's general plugins (ours among them, through its installed entry point) and
asks vLLM's ``get_env_vars_to_copy`` which variables go to the workers, exactly as
vLLM's Ray executor does. The worker starts from an environment without any of them,
in a folder without the profile file, takes the copied variables through vLLM's
``WorkerWrapperBase.update_environment_variables`` (the call Ray workers get), loads
the plugins and builds vLLM's logits processors, as a worker's model runner does.
Ray itself is not needed for that path and is not installed here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DRIVER = """
import json, os
from vllm.plugins import load_general_plugins
from vllm.ray.ray_env import get_env_vars_to_copy
from vllm.v1.executor.ray_utils import WORKER_SPECIFIC_ENV_VARS

load_general_plugins()
names = get_env_vars_to_copy(exclude_vars=WORKER_SPECIFIC_ENV_VARS, destination="workers")
print(json.dumps({name: os.environ[name] for name in sorted(names) if name in os.environ}))
"""

WORKER = """
import json, logging, sys
import torch
import conftest  # the CPU pinned-memory setting of these tests (no GPU here)
logging.basicConfig(level=logging.INFO)
from vllm.config import DeviceConfig, VllmConfig, set_current_vllm_config
from vllm.plugins import load_general_plugins
from vllm.v1.sample.logits_processor import build_logitsprocs
from vllm.v1.worker.worker_base import WorkerWrapperBase

WorkerWrapperBase(rpc_rank=0).update_environment_variables([json.loads(sys.argv[1])])
load_general_plugins()
config = VllmConfig(device_config=DeviceConfig(device="cpu"))
with set_current_vllm_config(config):
    processors = build_logitsprocs(config, torch.device("cpu"), False, False)
ours = next(p for p in processors.all if type(p).__name__ == "QRSamplerLogitsProcessor")
source = ours.sampler.arms.arms[0].source.primary
print(json.dumps({"source": source.name, "address": source.settings.address}))
"""

# A third-party source package, as `qr-sampler source new acme` lays one out.
ACME_PLUGIN = """
from pydantic_settings import SettingsConfigDict
from qr_sampler import EntropySource, QRSettings, hookimpl


class AcmeSettings(QRSettings):
    model_config = SettingsConfigDict(env_prefix="QR_ACME_")

    address: str = "localhost:9000"


class AcmeSource(EntropySource):
    name = "acme"

    def __init__(self):
        self.settings = AcmeSettings.load()

    def get_random_bytes(self, n):
        return bytes(n)


@hookimpl
def register_entropy_sources(register):
    register("acme", AcmeSource, settings=(AcmeSettings,))
"""


def install_acme(site: Path) -> None:
    site.mkdir()
    (site / "qr_acme_plugin.py").write_text(textwrap.dedent(ACME_PLUGIN))
    info = site / "acme_qrng-2.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-qrng\nVersion: 2.0.1\n")
    (info / "entry_points.txt").write_text("[qr_sampler]\nacme = qr_acme_plugin\n")


def python(
    script: str, env: dict[str, str], cwd: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def bare_environment(path: list[str]) -> dict[str, str]:
    """What a fresh process on another node has: no QR_* and no VLLM_* settings."""
    keep = {"PATH", "HOME", "LANG", "TMPDIR"}
    env = {name: value for name, value in os.environ.items() if name in keep}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), *path])
    return env


@pytest.fixture
def driver_copy(tmp_path: Path) -> tuple[dict[str, str], list[str]]:
    """The variables vLLM's driver copies to each Ray worker, and the driver's sys.path."""
    site = tmp_path / "site"
    install_acme(site)
    profile = tmp_path / "driver" / "profile.env"
    profile.parent.mkdir()
    profile.write_text("QR_ENTROPY_SOURCE_TYPE=acme\nQR_ACME_ADDRESS=10.0.0.9:9000\n")
    path = [str(site), *sys.path]
    env = bare_environment(path)
    env.update(QR_ENV_FILE=str(profile), QR_FALLBACK_MODE="error", VLLM_LOGGING_LEVEL="INFO")
    driver = python(DRIVER, env, profile.parent)
    assert driver.returncode == 0, driver.stderr
    return json.loads(driver.stdout.strip().splitlines()[-1]), path


def test_the_profile_and_qr_settings_reach_a_ray_worker_that_builds_its_source(
    tmp_path: Path, driver_copy: tuple[dict[str, str], list[str]]
) -> None:
    copied, path = driver_copy
    assert copied["QR_ENTROPY_SOURCE_TYPE"] == "acme"
    assert copied["QR_ACME_ADDRESS"] == "10.0.0.9:9000"
    assert copied["QR_FALLBACK_MODE"] == "error"
    assert copied["QR_ENV_FILE"] == os.devnull  # the file itself stays on the driver's node
    assert copied["QR_SOURCE_PACKAGES"] == "acme=acme-qrng 2.0.1"

    node = tmp_path / "other-node"
    node.mkdir()
    worker = python(WORKER, bare_environment(path), node, json.dumps(copied))
    assert worker.returncode == 0, worker.stderr
    assert json.loads(worker.stdout.strip().splitlines()[-1]) == {
        "source": "acme",
        "address": "10.0.0.9:9000",
    }
    assert "qr-sampler active (v1 runner): entropy source 'acme', fallback error" in worker.stderr


def test_a_worker_without_the_source_package_fails_start_up_naming_it(
    tmp_path: Path, driver_copy: tuple[dict[str, str], list[str]]
) -> None:
    copied, path = driver_copy
    node = tmp_path / "bare-node"
    node.mkdir()
    without_acme = [entry for entry in path if not entry.endswith("site")]
    worker = python(WORKER, bare_environment(without_acme), node, json.dumps(copied))
    assert worker.returncode != 0
    assert "ConfigValidationError" in worker.stderr
    assert "QR_ENTROPY_SOURCE_TYPE='acme' is not an installed entropy source" in worker.stderr
    assert "pip install 'acme-qrng==2.0.1'" in worker.stderr


def test_without_the_plugin_vllm_would_copy_no_qr_setting(tmp_path: Path) -> None:
    """The hazard the plugin removes: vLLM's prefixes alone leave QR_* behind."""
    env = bare_environment(sys.path)
    env.update(QR_ENTROPY_SOURCE_TYPE="quantum_grpc", VLLM_PLUGINS="")
    driver = python(DRIVER, env, tmp_path)
    assert driver.returncode == 0, driver.stderr
    copied = json.loads(driver.stdout.strip().splitlines()[-1])
    assert not [name for name in copied if name.startswith("QR_")]
