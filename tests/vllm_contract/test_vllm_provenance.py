"""Request ids, positions and replay through vLLM's real batch bookkeeping and Sampler."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from conftest import VOCAB, request_states, v2_apply, v2_processor, vllm_config
from test_vllm_sampler import metadata
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdateBuilder, build_logitsprocs
from vllm.v1.sample.sampler import Sampler

from qr_sampler.engine.processor import QRSamplerLogitsProcessor
from qr_sampler.records.verify import verify

PARAMS = [SamplingParams(temperature=0.9, seed=3), SamplingParams(temperature=0.0)]
STEPS = 8


def generate(prompts: list[list[int]]) -> list[list[int]]:
    """Run the V1 runner's steps: vLLM extends each request's output list (the one
    handed over in ``BatchUpdate.added``) with the token its Sampler emitted."""
    processors = build_logitsprocs(
        vllm_config(), torch.device("cpu"), False, is_pooling_model=False
    )
    ours = next(p for p in processors.all if isinstance(p, QRSamplerLogitsProcessor))
    outputs: list[list[int]] = [[] for _ in PARAMS]
    builder = BatchUpdateBuilder()
    for index, params in enumerate(PARAMS):
        builder.added.append((index, params, prompts[index], outputs[index]))
    batch_update = builder.get_and_reset(len(PARAMS))
    for processor in processors.all:
        processor.update_state(batch_update)
    sampler = Sampler()
    generator = torch.Generator().manual_seed(99)
    for _ in range(STEPS):
        logits = torch.randn(len(PARAMS), VOCAB, generator=generator) * 2
        emitted = sampler(logits, metadata(PARAMS, processors)).sampled_token_ids[:, 0].tolist()
        for output, token in zip(outputs, emitted, strict=True):
            output.append(token)
        for processor in processors.all:
            processor.update_state(None)  # the next step: vLLM has booked the tokens
    ours.sampler.close()
    return outputs


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_replay_reproduces_a_runs_tokens_and_u_through_vllms_sampler(tmp_path, monkeypatch):
    prompts = [[1, 2, 3], [4, 5]]
    archive, first_log, second_log = tmp_path / "b.bin", tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    monkeypatch.setenv("QR_LOG_PATH", str(first_log))
    monkeypatch.setenv("QR_BYTES_PATH", str(archive))
    first = generate(prompts)

    written = records(first_log)
    for slot, output in enumerate(first):
        mine = [r for r in written if r["row"] == slot]
        assert [r["position"] for r in mine] == list(range(STEPS))
        assert [r["token_id"] for r in mine] == output
        assert len({r["request_id"] for r in mine}) == 1
    assert written[0]["request_id"] != written[1]["request_id"]
    report = verify(str(first_log), str(archive))
    # The greedy request drew no bytes: its records are checked as greedy.
    assert (report.checked, report.greedy, report.mismatches) == (STEPS, STEPS, [])

    monkeypatch.setenv("QR_LOG_PATH", str(second_log))
    monkeypatch.delenv("QR_BYTES_PATH")
    monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", "replay")
    monkeypatch.setenv("QR_REPLAY_PATH", str(archive))
    monkeypatch.setenv("QR_FALLBACK_MODE", "error")
    assert generate(prompts) == first
    assert [(r["u"], r["token_id"]) for r in records(second_log)] == [
        (r["u"], r["token_id"]) for r in written
    ]


def test_model_runner_v2_positions_come_from_sequence_and_prompt_lengths(tmp_path, monkeypatch):
    monkeypatch.setenv("QR_LOG_PATH", str(tmp_path / "t.jsonl"))
    states = request_states()
    # What vLLM's RequestState holds on the host: the prompt length of every slot.
    states.prompt_len = SimpleNamespace(np=np.zeros(16, dtype=np.int32))
    processor = v2_processor(states)
    states.prompt_len.np[[3, 6]] = [5, 4]
    processor.add_request(3, SamplingParams())
    processor.add_request(6, SamplingParams())
    for step in range(2):  # slot 6 resumes after preemption with 3 tokens of output
        v2_apply(processor, [6, 3], [7 + step, 5 + step])
    processor.sampler.close()
    written = records(tmp_path / "t.jsonl")
    assert [r["position"] for r in written] == [3, 0, 4, 1]
