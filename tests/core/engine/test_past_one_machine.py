"""Data-parallel engines and Ray workers, at the level of core's own pieces.

The same behaviour against vLLM's real classes is in tests/vllm_contract.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import InstallPlugin
from core_support import RecordingSource

from qr_sampler import FallbackEntropySource, QRSamplerConfig
from qr_sampler.cli.main import main
from qr_sampler.engine.data_parallel import data_parallel_rank
from qr_sampler.engine.pipeline_parallel import vllm_pipeline_stage
from qr_sampler.engine.ray_env import VLLM_PREFIXES_VARIABLE, carry_settings_to_ray_workers
from qr_sampler.errors import ConfigValidationError
from qr_sampler.plugins.registered import SOURCE_PACKAGES_VARIABLE
from qr_sampler.plugins.registry import get_registry
from qr_sampler.records.engine_files import engine_path
from qr_sampler.records.provenance import RequestIds
from qr_sampler.records.run_files import verify_run
from qr_sampler.sampling.sampler import QRSampler

ROWS, VOCAB = 4, 50

# A third-party source whose settings use a prefix of its own, not QR_.
ACME_PLUGIN = """
from pydantic_settings import SettingsConfigDict

from qr_sampler import EntropySource, QRSettings, hookimpl


class AcmeSettings(QRSettings):
    model_config = SettingsConfigDict(env_prefix="ACME_QRNG_")

    address: str = "acme.lab:9000"


class AcmeSource(EntropySource):
    name = "acme"

    def get_random_bytes(self, n):
        return bytes(n)


@hookimpl
def register_entropy_sources(register):
    register("acme", AcmeSource, settings=(AcmeSettings,))
"""


def test_engine_zero_keeps_the_configured_names_and_others_carry_their_rank() -> None:
    assert engine_path("/runs/records.jsonl", 0) == "/runs/records.jsonl"
    assert engine_path("/runs/records.jsonl", 3) == "/runs/records.dp3.jsonl"
    assert engine_path("/runs/bytes", 1) == "/runs/bytes.dp1"
    assert engine_path("", 2) == ""


def test_request_ids_of_two_engines_never_meet() -> None:
    first, second = RequestIds(0), RequestIds(1)
    assert first.new().startswith("dp0-")
    assert second.new().startswith("dp1-")


@pytest.mark.parametrize(
    ("parallel", "rank"),
    [
        # vLLM 0.32 resets a dense model's data_parallel_rank; the index keeps it.
        (SimpleNamespace(data_parallel_index=2, data_parallel_rank=0), 2),
        (SimpleNamespace(data_parallel_rank=1), 1),
        (None, 0),
    ],
)
def test_the_data_parallel_rank_comes_from_vllms_parallel_config(
    parallel: object, rank: int
) -> None:
    assert data_parallel_rank(SimpleNamespace(parallel_config=parallel)) == rank


def test_outside_vllm_every_worker_is_the_one_and_last_stage() -> None:
    assert vllm_pipeline_stage() == (0, 1)


def _run_engine(tmp_path: Path, dp_rank: int, seed: int = 11) -> QRSampler:
    config = QRSamplerConfig.load(
        env_file=os.devnull,
        log_path=str(tmp_path / "records.jsonl"),
        bytes_path=str(tmp_path / "bytes.bin"),
        arms="a=system,b=system",
        arm_assignment="random",
        arm_seed=seed,
    )
    sampler = QRSampler(config=config, dp_rank=dp_rank)
    for slot in range(ROWS):
        sampler.admit(slot, sampler.resolve({}))
    generator = torch.Generator().manual_seed(dp_rank)
    for _ in range(3):
        sampler.sample(torch.randn(ROWS, VOCAB, generator=generator), np.arange(ROWS))
    sampler.close()
    return sampler


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_engines_write_apart_and_verify_as_one_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for rank in (0, 1):
        _run_engine(tmp_path, rank)
    files = [tmp_path / "records.jsonl", tmp_path / "records.dp1.jsonl"]
    archives = [tmp_path / "bytes.bin", tmp_path / "bytes.dp1.bin"]
    by_rank = [_records(path) for path in files]
    assert [{r["dp_rank"] for r in records} for records in by_rank] == [{0}, {1}]
    ids = [{str(r["request_id"]) for r in records} for records in by_rank]
    assert len(ids[0]) == len(ids[1]) == ROWS
    assert not ids[0] & ids[1]

    report = verify_run([str(p) for p in files], [str(p) for p in archives])
    assert report.problems == 0
    assert sum(each.checked for _, each in report.files) == 2 * 3 * ROWS
    argv = ["verify", *map(str, files), "--bytes", *map(str, archives)]
    assert main(argv) == 0
    assert f"checked {2 * 3 * ROWS} record(s) in 2 files" in capsys.readouterr().out

    # Archives swapped: every record's bytes are wrong, and the file says which.
    swapped = ["verify", *map(str, files), "--bytes", *map(str, archives[::-1]), "--show", "0"]
    assert main(swapped) == 1
    out = capsys.readouterr().out
    assert f"{files[0]}: line 1: entropy_sha256" in out
    assert f"{files[1]}: line 1: entropy_sha256" in out


def test_a_request_id_in_two_files_is_a_mismatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run_engine(tmp_path, 0)
    first = tmp_path / "records.jsonl"
    copy = tmp_path / "copy.jsonl"
    copy.write_text(first.read_text())
    assert main(["verify", str(first), str(copy)]) == 1
    out = capsys.readouterr().out
    assert "is in" in out
    assert "files of different runs?" in out
    assert "request_id 4" in out


def test_one_archive_per_records_file_or_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run_engine(tmp_path, 0)
    records = str(tmp_path / "records.jsonl")
    assert main(["verify", records, records, "--bytes", str(tmp_path / "bytes.bin")]) == 2
    assert "one archive per records file" in capsys.readouterr().err


def test_arm_assignment_is_independent_across_engines_and_reproducible(tmp_path: Path) -> None:
    def arms(rank: int, seed: int) -> list[str]:
        config = QRSamplerConfig.load(
            env_file=os.devnull, arms="a=system,b=system", arm_assignment="random", arm_seed=seed
        )
        sampler = QRSampler(config=config, dp_rank=rank)
        chosen = [str(sampler.resolve({}).arm) for _ in range(64)]
        sampler.close()
        return chosen

    assert arms(0, 5) == arms(0, 5)
    assert arms(1, 5) == arms(1, 5)
    assert arms(1, 5) != arms(0, 5)
    assert arms(1, 5) != arms(2, 5)
    # Engine 0 is the single-engine sequence of QR_ARM_SEED.
    expected = np.random.Generator(np.random.PCG64(5)).integers(2, size=64)
    assert arms(0, 5) == [["a", "b"][int(i)] for i in expected]


def test_a_stage_that_never_samples_opens_nothing(tmp_path: Path) -> None:
    config = QRSamplerConfig.load(
        env_file=os.devnull,
        log_path=str(tmp_path / "records.jsonl"),
        bytes_path=str(tmp_path / "bytes.bin"),
    )
    sampler = QRSampler(config=config, samples=False)
    assert all(arm.source is None for arm in sampler.arms.arms)
    sampler.admit(0, sampler.resolve({}))
    with pytest.raises(RuntimeError, match="only vLLM's last pipeline stage samples"):
        sampler.sample(torch.zeros(1, VOCAB), np.arange(1))
    sampler.close()
    assert not (tmp_path / "records.jsonl").exists()
    assert not (tmp_path / "bytes.bin").exists()


def test_records_name_the_server_the_source_says_answered(tmp_path: Path) -> None:
    class Balanced(RecordingSource):
        def served_by(self) -> str | None:
            return "urandom@entropy-1:50051"

    config = QRSamplerConfig.load(env_file=os.devnull, log_path=str(tmp_path / "r.jsonl"))
    sampler = QRSampler(config=config, source=FallbackEntropySource(Balanced(), None))
    sampler.admit(0, sampler.resolve({}))
    sampler.sample(torch.zeros(1, VOCAB), np.arange(1))
    sampler.close()
    (record,) = _records(tmp_path / "r.jsonl")
    assert record["entropy_server"] == "urandom@entropy-1:50051"


# --- Ray workers ---------------------------------------------------------------------


@pytest.fixture
def driver_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """What vLLM's driver process starts with; restored after the test."""
    for name in (VLLM_PREFIXES_VARIABLE, SOURCE_PACKAGES_VARIABLE, "ACME_QRNG_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(VLLM_PREFIXES_VARIABLE, "MY_LAB_")


@pytest.mark.usefixtures("driver_environment")
def test_the_plugin_adds_every_sources_prefix_and_moves_the_profile_into_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, install_plugin: InstallPlugin
) -> None:
    install_plugin("acme", code=ACME_PLUGIN, distribution="acme-qrng", version="2.0.1")
    profile = tmp_path / "profile.env"
    profile.write_text(
        "QR_ENTROPY_SOURCE_TYPE=acme\nACME_QRNG_ADDRESS=10.0.0.9:9000\n"
        "QR_LOG_LEVEL=full\nOTHER=untouched\n"
    )
    monkeypatch.setenv("QR_ENV_FILE", str(profile))
    monkeypatch.setenv("QR_LOG_LEVEL", "none")  # the environment wins, as over the file
    monkeypatch.delenv("OTHER", raising=False)

    carry_settings_to_ray_workers()

    assert os.environ[VLLM_PREFIXES_VARIABLE].split(",") == ["MY_LAB_", "ACME_QRNG_", "QR_"]
    assert os.environ["QR_ENTROPY_SOURCE_TYPE"] == "acme"
    assert os.environ["ACME_QRNG_ADDRESS"] == "10.0.0.9:9000"
    assert os.environ["QR_LOG_LEVEL"] == "none"
    assert "OTHER" not in os.environ
    assert os.environ["QR_ENV_FILE"] == os.devnull
    assert os.environ[SOURCE_PACKAGES_VARIABLE] == "acme=acme-qrng 2.0.1"
    assert QRSamplerConfig.load().entropy_source_type == "acme"

    # Called again (vLLM calls it in every process): nothing doubles or changes.
    carry_settings_to_ray_workers()
    assert os.environ[VLLM_PREFIXES_VARIABLE].split(",") == ["MY_LAB_", "ACME_QRNG_", "QR_"]


@pytest.mark.usefixtures("driver_environment")
def test_a_qr_env_file_naming_no_file_is_left_for_the_sampler_to_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QR_ENV_FILE", "/nowhere/profile.env")
    carry_settings_to_ray_workers()
    assert os.environ["QR_ENV_FILE"] == "/nowhere/profile.env"


def test_a_worker_without_the_drivers_source_names_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", "acme")
    monkeypatch.setenv(SOURCE_PACKAGES_VARIABLE, "acme=acme-qrng 2.0.1,other=x")
    get_registry.cache_clear()
    with pytest.raises(ConfigValidationError) as caught:
        QRSampler()
    message = str(caught.value)
    assert "QR_ENTROPY_SOURCE_TYPE='acme'" in message
    assert "from the package acme-qrng 2.0.1" in message
    assert "pip install 'acme-qrng==2.0.1'" in message
