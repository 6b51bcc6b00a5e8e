"""vLLM's own loaders find, accept and build the processor, for both runners."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import request_states, vllm_config
from vllm import SamplingParams
from vllm.config import LoggingConfig
from vllm.exceptions import VLLMValidationError
from vllm.logger import configure_logging
from vllm.v1.sample.logits_processor import (
    LogitsProcessor as V1LogitsProcessor,
)
from vllm.v1.sample.logits_processor import (
    _load_custom_logitsprocs,
    build_logitsprocs,
    validate_logits_processors_parameters,
)
from vllm.v1.worker.gpu.sample.logits_processor import (
    LogitsProcessor as V2LogitsProcessor,
)
from vllm.v1.worker.gpu.sample.logits_processor import (
    build_custom_logits_processors,
    build_custom_logits_processors_params_validator,
)

from qr_sampler.engine.processor import QRSamplerLogitsProcessor


def test_the_class_implements_both_interfaces():
    assert issubclass(QRSamplerLogitsProcessor, V1LogitsProcessor)
    assert issubclass(QRSamplerLogitsProcessor, V2LogitsProcessor)


def test_the_v1_loader_finds_it_through_the_entry_point():
    assert QRSamplerLogitsProcessor in _load_custom_logitsprocs(None)
    processors = build_logitsprocs(
        vllm_config(), torch.device("cpu"), False, is_pooling_model=False
    )
    ours = [p for p in processors.all if isinstance(p, QRSamplerLogitsProcessor)]
    assert len(ours) == 1
    assert ours[0].runner == "v1"
    # Forcing changes the argmax, so greedy requests must pass through it too.
    assert any(p is ours[0] for p in processors.non_argmax_invariant)


def test_model_runner_v2_builds_it_from_the_entry_point():
    processors = build_custom_logits_processors(vllm_config(), request_states(), False)
    ours = [p for p in processors if isinstance(p, QRSamplerLogitsProcessor)]
    assert len(ours) == 1
    assert ours[0].runner == "v2"


def test_model_runner_v2_refuses_speculative_decoding_with_a_clear_message():
    with pytest.raises(ValueError, match="speculative decoding"):
        build_custom_logits_processors(vllm_config(speculative=True), request_states(), False)


def test_pooling_models_take_no_processors():
    assert build_custom_logits_processors(vllm_config(), request_states(), True) == []


@pytest.mark.parametrize(
    ("extra_args", "message"),
    [
        ({"qr_top_p": 2}, "qr_top_p"),
        ({"qr_top_p": "lots"}, "qr_top_p"),
        ({"qr_topk": 5}, "did you mean 'qr_top_k'"),
        ({"qr_fallback_mode": "error"}, "server setting"),
        ({"qr_temperature_strategy": "warm"}, "registered: edt, fixed"),
        ({"qr_bypass": "perhaps"}, "qr_bypass"),
    ],
)
def test_bad_request_settings_are_refused_at_admission_by_both_runners(extra_args, message):
    params = SamplingParams(extra_args=extra_args)
    with pytest.raises(ValueError, match=message):
        QRSamplerLogitsProcessor.validate_params(params)
    with pytest.raises(VLLMValidationError, match=message):
        validate_logits_processors_parameters(None, params)
    with pytest.raises(VLLMValidationError, match=message):
        build_custom_logits_processors_params_validator(())(params)


def test_good_request_settings_pass_admission_whatever_their_json_type():
    for extra_args in (
        None,
        {},
        {"qr_top_k": "50", "qr_top_p": "0.9", "qr_bypass": "true", "qr_tag": 7},
        {"qr_diagnostic_mode": 1, "qr_fixed_temperature": 0, "other_processor_key": [1]},
    ):
        params = SamplingParams(extra_args=extra_args)
        QRSamplerLogitsProcessor.validate_params(params)
        validate_logits_processors_parameters(None, params)


def test_admission_uses_the_server_defaults(monkeypatch):
    monkeypatch.setenv("QR_EDT_MAX_TEMP", "0.5")
    with pytest.raises(ValueError, match="edt_min_temp"):
        QRSamplerLogitsProcessor.validate_params(
            SamplingParams(extra_args={"qr_edt_min_temp": 0.6})
        )


def test_a_constructor_call_that_matches_neither_runner_is_refused():
    with pytest.raises(TypeError, match="V1 runner"):
        QRSamplerLogitsProcessor(vllm_config())


def test_the_v1_runner_with_speculative_decoding_builds_no_custom_processor():
    """vLLM's V1 runner silently drops entry-point processors under speculative
    decoding; the README warns about it. If vLLM starts loading them, revisit."""
    processors = build_logitsprocs(
        vllm_config(speculative=True), torch.device("cpu"), False, is_pooling_model=False
    )
    assert not any(isinstance(p, QRSamplerLogitsProcessor) for p in processors.all)


def test_a_single_process_engine_shares_u_with_no_one():
    # Tensor parallelism is only detected inside an initialised vLLM worker group.
    assert (
        QRSamplerLogitsProcessor(vllm_config(), torch.device("cpu"), False).sampler.shared_u is None
    )


def test_qr_sampler_logs_through_the_handlers_vllm_configured():
    # What vLLM's worker processes do first thing, before any processor is built.
    configure_logging(LoggingConfig())
    ours, theirs = logging.getLogger("qr_sampler"), logging.getLogger("vllm")
    assert theirs.handlers
    saved = ours.handlers[:], ours.level
    ours.handlers.clear()
    ours.setLevel(logging.NOTSET)
    try:
        QRSamplerLogitsProcessor(vllm_config(), torch.device("cpu"), False)
        assert ours.handlers == theirs.handlers
        assert ours.level == theirs.getEffectiveLevel()
        assert ours.propagate is theirs.propagate
    finally:
        ours.handlers[:], _ = saved
        ours.setLevel(saved[1])
