"""The request's own sampling parameters against vLLM's real classes: read from
``SamplingParams`` on both runners, and the distribution the walk draws from equal to
the one vLLM's ``Sampler`` draws from (same kept set, same probabilities)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import VOCAB, request_states, vllm_config
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdateBuilder, LogitsProcessors
from vllm.v1.sample.metadata import SamplingMetadata
from vllm.v1.sample.sampler import Sampler
from vllm.v1.worker.gpu.sample.logits_processor import build_custom_logits_processors

from qr_sampler.engine.processor import QRSamplerLogitsProcessor
from qr_sampler.errors import ConfigValidationError
from qr_sampler.sampling.ops.penalties import apply_penalties
from qr_sampler.sampling.selection import select_tokens

#: Probabilities agree to this (relative, plus an absolute floor for the tiny ones):
#: vLLM computes them in float32, the walk in float64 from float32 exponents.
PROB_RTOL, PROB_ATOL = 2e-5, 1e-9
ROWS = 48


def mixed_params(generator: np.random.Generator) -> list[SamplingParams]:
    """Rows of every parameter, alone and together."""
    params = []
    for _ in range(ROWS):
        params.append(
            SamplingParams(
                temperature=float(generator.choice([0.3, 0.7, 1.0, 1.6])),
                top_k=int(generator.choice([0, 0, 1, 3, 20, VOCAB])),
                top_p=float(generator.choice([1.0, 1.0, 0.9, 0.5, 0.15])),
                min_p=float(generator.choice([0.0, 0.0, 0.02, 0.3])),
                repetition_penalty=float(generator.choice([1.0, 1.0, 1.3, 0.8])),
                frequency_penalty=float(generator.choice([0.0, 0.0, 0.7, -0.4])),
                presence_penalty=float(generator.choice([0.0, 0.0, 1.1, -0.5])),
            )
        )
    return params


def vllm_probabilities(logits, params, prompts, outputs) -> np.ndarray:
    """What vLLM's V1 ``Sampler`` draws from: its processed logprobs, every token."""
    longest = max(1, *(len(p) for p in prompts))
    metadata = SamplingMetadata(
        temperature=torch.tensor([p.temperature for p in params]),
        all_greedy=False,
        all_random=True,
        top_p=torch.tensor([p.top_p for p in params]),
        top_k=torch.tensor([p.top_k if p.top_k > 0 else VOCAB for p in params]),
        generators={},
        max_num_logprobs=-1,
        no_penalties=False,
        prompt_token_ids=torch.tensor([p + [VOCAB] * (longest - len(p)) for p in prompts]),
        frequency_penalties=torch.tensor([p.frequency_penalty for p in params]),
        presence_penalties=torch.tensor([p.presence_penalty for p in params]),
        repetition_penalties=torch.tensor([p.repetition_penalty for p in params]),
        output_token_ids=outputs,
        allowed_token_ids_mask=None,
        bad_words_token_ids={},
        logitsprocs=LogitsProcessors(),
    )
    # min_p is one of vLLM's built-in processors; give it the batch's values.
    from vllm.v1.sample.logits_processor.builtin import MinPLogitsProcessor

    min_p = MinPLogitsProcessor(vllm_config(), torch.device("cpu"), False)
    builder = BatchUpdateBuilder()
    for row, p in enumerate(params):
        builder.added.append((row, p, prompts[row], outputs[row]))
    min_p.update_state(builder.get_and_reset(len(params)))
    metadata.logitsprocs = LogitsProcessors([min_p])
    output = Sampler(logprobs_mode="processed_logprobs")(logits.clone(), metadata)
    return output.logprobs_tensors.logprobs.double().exp().numpy()


def walked_probabilities(logits, params, prompts, outputs) -> np.ndarray:
    """What the walk draws from, read off its CDF: u stepped from one token's
    interval to the next gives every token it can pick and that token's probability."""
    values = logits.clone()
    pad = lambda lists: torch.tensor(  # noqa: E731
        [row + [VOCAB] * (max(1, *map(len, lists)) - len(row)) for row in lists]
    )
    penalties = torch.tensor(
        [[p.repetition_penalty, p.frequency_penalty, p.presence_penalty] for p in params]
    )
    apply_penalties(values, torch.arange(len(params)), pad(prompts), pad(outputs), penalties)
    column = lambda name: torch.tensor([float(getattr(p, name)) for p in params])  # noqa: E731
    probabilities = np.zeros((len(params), VOCAB))
    u = torch.full((len(params),), 1e-12, dtype=torch.float64)
    done = torch.zeros(len(params), dtype=torch.bool)
    for _ in range(VOCAB):
        chosen = select_tokens(
            values,
            u,
            lambda _entropy: column("temperature"),
            column("top_k").long(),
            column("top_p"),
            column("min_p"),
        )
        token, prob, low = chosen.token_id, chosen.prob.double(), chosen.cdf_low.double()
        for row in np.flatnonzero(~done.numpy()):
            probabilities[row, int(token[row])] = float(prob[row])
        nxt = low + prob
        done |= nxt >= 1 - 1e-9
        u = torch.where(done, u, torch.maximum(nxt + 1e-12, u + 1e-12))
        if bool(done.all()):
            break
    return probabilities


def test_the_walk_draws_from_the_distribution_vllms_sampler_draws_from():
    generator = np.random.default_rng(21)
    params = mixed_params(generator)
    prompts = [generator.integers(0, VOCAB, generator.integers(0, 6)).tolist() for _ in params]
    outputs = [generator.integers(0, VOCAB, generator.integers(0, 9)).tolist() for _ in params]
    logits = torch.from_numpy(generator.normal(0, 2.5, (ROWS, VOCAB)).astype(np.float32))
    logits[::7, 5] = float("-inf")  # masked before the processors: never allowed
    theirs = vllm_probabilities(logits, params, prompts, outputs)
    ours = walked_probabilities(logits, params, prompts, outputs)
    for row in range(ROWS):
        context = (row, params[row])
        # Never a token vLLM would not allow; every token vLLM allows with a
        # probability u can resolve is reachable, with the same probability.
        assert not ((ours[row] > 0) & (theirs[row] == 0)).any(), context
        np.testing.assert_allclose(ours[row], theirs[row], rtol=PROB_RTOL, atol=PROB_ATOL)
        assert abs(ours[row].sum() - 1) < 1e-9, context


def test_v1_reads_each_requests_parameters_and_the_server_switch_ignores_them(monkeypatch):
    params = SamplingParams(temperature=0.4, top_k=7, top_p=0.6, min_p=0.1, presence_penalty=1.5)
    for policy, expected in (("request", (0.4, 7, 0.6, 0.1, 1.5)), ("server", (0.7, 0, 1, 0, 0))):
        monkeypatch.setenv("QR_SAMPLING_POLICY", policy)
        processor = QRSamplerLogitsProcessor(vllm_config(), torch.device("cpu"), False)
        builder = BatchUpdateBuilder()
        builder.added.append((0, params, [1, 2], []))
        processor.update_state(builder.get_and_reset(1))
        options = processor.sampler.table.options[0]
        assert (
            options.fixed_temperature,
            options.top_k,
            options.top_p,
            options.min_p,
            options.presence_penalty,
        ) == expected
        assert processor.sampler.policy == policy
        assert processor.sampler.applies_penalties


def test_model_runner_v2_reads_them_too_and_leaves_penalties_to_vllm():
    processor = next(
        p
        for p in build_custom_logits_processors(vllm_config(), request_states(), False)
        if isinstance(p, QRSamplerLogitsProcessor)
    )
    params = SamplingParams(temperature=1.3, top_p=0.9, repetition_penalty=1.2)
    processor.add_request(4, params)
    options = processor.sampler.table.options[4]
    assert (options.fixed_temperature, options.top_p, options.repetition_penalty) == (1.3, 0.9, 1.2)
    # V2 applies penalties before custom processors: applying them again would double them.
    assert not processor.sampler.applies_penalties


def test_qr_keys_win_over_the_requests_own_parameters():
    processor = QRSamplerLogitsProcessor(vllm_config(), torch.device("cpu"), False)
    builder = BatchUpdateBuilder()
    params = SamplingParams(temperature=0.4, top_k=7, extra_args={"qr_top_k": 3})
    builder.added.append((0, params, [1], []))
    processor.update_state(builder.get_and_reset(1))
    assert processor.sampler.table.options[0].top_k == 3


def test_a_thinking_budget_is_refused_at_admission_unless_bypassed():
    with pytest.raises(ConfigValidationError, match="thinking_token_budget"):
        QRSamplerLogitsProcessor.validate_params(SamplingParams(thinking_token_budget=16))
    QRSamplerLogitsProcessor.validate_params(
        SamplingParams(thinking_token_budget=16, extra_args={"qr_bypass": True})
    )
