"""Strict mode in the adapter: the model's EOS is the token that ends a request."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from qr_sampler.engine.processor import QRSamplerLogitsProcessor


def config_with_eos(eos: object) -> SimpleNamespace:
    text_config = SimpleNamespace(eos_token_id=eos)
    return SimpleNamespace(
        speculative_config=None, model_config=SimpleNamespace(hf_text_config=text_config)
    )


@pytest.mark.parametrize(("eos", "expected"), [(2, 2), ([5, 6], 5)])
def test_strict_mode_ends_requests_with_the_models_eos(monkeypatch, eos, expected):
    monkeypatch.setenv("QR_FALLBACK_MODE", "error")
    processor = QRSamplerLogitsProcessor(config_with_eos(eos), torch.device("cpu"), False)
    assert processor.sampler.end_token_id == expected


def test_a_model_without_eos_is_warned_about(monkeypatch, caplog):
    monkeypatch.setenv("QR_FALLBACK_MODE", "error")
    with caplog.at_level(logging.WARNING, logger="qr_sampler.engine.processor"):
        processor = QRSamplerLogitsProcessor(config_with_eos(None), torch.device("cpu"), False)
    assert processor.sampler.end_token_id is None
    assert "declares no eos_token_id" in caplog.text


def test_the_default_fallback_mode_never_ends_a_request(monkeypatch):
    processor = QRSamplerLogitsProcessor(config_with_eos(2), torch.device("cpu"), False)
    assert processor.sampler.end_token_id is None
