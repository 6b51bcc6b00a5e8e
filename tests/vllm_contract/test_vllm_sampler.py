"""vLLM's real V1 Sampler, run after the processor, emits exactly the chosen token."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import VOCAB, vllm_config
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdateBuilder, build_logitsprocs
from vllm.v1.sample.metadata import SamplingMetadata
from vllm.v1.sample.sampler import Sampler

from qr_sampler.engine.processor import QRSamplerLogitsProcessor

PARAMS = [
    SamplingParams(temperature=0.0, repetition_penalty=1.3, presence_penalty=0.5),
    SamplingParams(temperature=0.8, top_k=5, frequency_penalty=0.4),
    SamplingParams(temperature=1.2, top_p=0.5, seed=1234),
    SamplingParams(temperature=0.7, top_k=3, top_p=0.8, seed=42, min_p=0.2),
    SamplingParams(temperature=1.5, logit_bias={5: 100.0}),
    SamplingParams(temperature=1.0, extra_args={"qr_bypass": True}, seed=7),
]
PROMPTS = [[1, 2, 3], [4, 5], [6], [7, 8, 9, 10], [11], [12, 13]]
OUTPUTS = [[11, 12, 11], [3, 3], [13], [], [2], []]


def metadata(params, processors) -> SamplingMetadata:
    rows = len(params)
    longest = max(len(p) for p in PROMPTS[:rows])
    generators = {i: torch.Generator().manual_seed(p.seed) for i, p in enumerate(params) if p.seed}
    return SamplingMetadata(
        temperature=torch.tensor([p.temperature for p in params]),
        all_greedy=all(p.temperature == 0 for p in params),
        all_random=all(p.temperature > 0 for p in params),
        top_p=torch.tensor([p.top_p for p in params]),
        top_k=torch.tensor([p.top_k if p.top_k > 0 else VOCAB for p in params]),
        generators=generators,
        max_num_logprobs=None,
        no_penalties=False,
        prompt_token_ids=torch.tensor([p + [VOCAB] * (longest - len(p)) for p in PROMPTS[:rows]]),
        frequency_penalties=torch.tensor([p.frequency_penalty for p in params]),
        presence_penalties=torch.tensor([p.presence_penalty for p in params]),
        repetition_penalties=torch.tensor([p.repetition_penalty for p in params]),
        output_token_ids=OUTPUTS[:rows],
        allowed_token_ids_mask=None,
        bad_words_token_ids={},
        logitsprocs=processors,
    )


@pytest.mark.parametrize(
    "qr_settings", [{}, {"qr_top_k": "4", "qr_top_p": "0.7"}, {"qr_temperature_strategy": "edt"}]
)
def test_the_sampler_emits_exactly_the_token_qr_sampler_chose(tmp_path, monkeypatch, qr_settings):
    monkeypatch.setenv("QR_LOG_PATH", str(tmp_path / "tokens.jsonl"))
    processors = build_logitsprocs(
        vllm_config(), torch.device("cpu"), False, is_pooling_model=False
    )
    ours = next(p for p in processors.all if isinstance(p, QRSamplerLogitsProcessor))
    params = [
        SamplingParams(**{**_kwargs(p), "extra_args": {**qr_settings, **(p.extra_args or {})}})
        for p in PARAMS
    ]
    builder = BatchUpdateBuilder()
    # Live output lists, as vLLM hands them over; it appends each kept token.
    outputs = [list(tokens) for tokens in OUTPUTS]
    for index, p in enumerate(params):
        builder.added.append((index, p, PROMPTS[index], outputs[index]))
    batch_update = builder.get_and_reset(len(params))
    for processor in processors.all:
        processor.update_state(batch_update)

    sampler = Sampler()
    for step in range(1, 6):
        logits = torch.randn(len(params), VOCAB) * 3
        logits[2, 7] = float("-inf")  # a token masked before the processor stays masked
        output = sampler(logits.clone(), metadata(params, processors))
        emitted = output.sampled_token_ids[:, 0].tolist()
        for tokens, token in zip(outputs, emitted, strict=True):
            tokens.append(token)
        for processor in processors.all:
            processor.update_state(None)  # the next step: records of kept tokens are written
        ours.sampler.sink.flush()
        records = [
            json.loads(line)
            for line in (tmp_path / "tokens.jsonl").read_text().splitlines()
            if json.loads(line)["step"] == step
        ]
        # Every row but the bypassed one is chosen by qr-sampler, even greedy rows.
        assert [r["row"] for r in records] == [0, 1, 2, 3, 4]
        assert [r["token_id"] for r in records] == emitted[:5]
        assert emitted[2] != 7
    assert ours.sampler.steps == 5


def _kwargs(params: SamplingParams) -> dict[str, object]:
    keys = (
        "temperature", "top_k", "top_p", "min_p", "seed", "repetition_penalty",
        "presence_penalty", "frequency_penalty", "logit_bias",
    )  # fmt: skip
    return {key: getattr(params, key) for key in keys}
