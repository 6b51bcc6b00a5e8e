"""What the plugin says about the configuration when vLLM builds it, before it serves."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from conftest import vllm_config

from qr_sampler.engine.processor import QRSamplerLogitsProcessor
from qr_sampler.errors import ConfigValidationError


def build() -> QRSamplerLogitsProcessor:
    return QRSamplerLogitsProcessor(vllm_config(), torch.device("cpu"), False)


def test_each_unknown_variable_is_one_warning_with_a_did_you_mean(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    env_file = tmp_path / "lab.env"
    env_file.write_text("QR_GRPC_SERVR_ADDRESS=10.0.0.7:50051\n", encoding="utf-8")
    monkeypatch.setenv("QR_ENV_FILE", str(env_file))
    monkeypatch.setenv("QR_TOP_KK", "3")
    with caplog.at_level(logging.WARNING, logger="qr_sampler"):
        build()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        warnings.count(
            "qr-sampler ignores unknown variable QR_TOP_KK (environment); did you mean QR_TOP_K?"
        )
        == 1
    )
    # Named with the file it sits in (a did-you-mean follows where qr-source-grpc is installed).
    (from_file,) = [w for w in warnings if "QR_GRPC_SERVR_ADDRESS" in w]
    assert from_file.startswith(
        f"qr-sampler ignores unknown variable QR_GRPC_SERVR_ADDRESS ({env_file})"
    )


def test_a_missing_env_file_stops_the_engine_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "deployments" / "firefly-1" / ".env"
    monkeypatch.setenv("QR_ENV_FILE", str(missing))
    with pytest.raises(ConfigValidationError, match="QR_ENV_FILE=") as caught:
        build()
    assert str(missing) in str(caught.value)


def test_the_start_up_line_names_the_arms_sources_not_the_unused_single_source(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("QR_ARMS", "qrng=system,control=prng")
    with caplog.at_level(logging.INFO, logger="qr_sampler"):
        build()
    (line,) = [r.getMessage() for r in caplog.records if "qr-sampler active" in r.getMessage()]
    assert "arms qrng=system, control=prng, fallback system" in line
    assert "entropy source" not in line


def test_without_arms_the_start_up_line_names_the_one_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="qr_sampler"):
        build()
    assert "qr-sampler active (v1 runner): entropy source 'system', fallback" in caplog.text
