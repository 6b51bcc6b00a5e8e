"""Preemption through vLLM's own interfaces: a request removed and re-added (V1
runner: BatchUpdate; Model Runner V2: add_request after a refill) keeps its request
id, its randomly assigned arm and its positions."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import VOCAB, book, request_states, v2_apply, v2_processor, vllm_config
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdateBuilder, LogitsProcessors
from vllm.v1.worker.gpu_input_batch import CachedRequestState, InputBatch

from qr_sampler.engine.processor import QRSamplerLogitsProcessor

REQUESTS = 6


@pytest.fixture
def random_arms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "tokens.jsonl"
    monkeypatch.setenv("QR_ARMS", "a=system,b=prng,c=system,d=prng")
    monkeypatch.setenv("QR_ARM_ASSIGNMENT", "random")
    monkeypatch.setenv("QR_LOG_PATH", str(log))
    return log


def by_request(log: Path) -> dict[str, list[dict[str, object]]]:
    grouped: dict[str, list[dict[str, object]]] = {}
    for line in log.read_text().splitlines():
        record = json.loads(line)
        grouped.setdefault(str(record["request_id"]), []).append(record)
    return grouped


def test_v1_a_preempted_request_comes_back_with_its_id_arm_and_positions(random_arms):
    processor = QRSamplerLogitsProcessor(vllm_config(), torch.device("cpu"), False)
    builder = BatchUpdateBuilder()
    requests = [SamplingParams(extra_args={"qr_tag": f"r{i}"}) for i in range(REQUESTS)]
    outputs: list[list[int]] = [[] for _ in requests]
    for index, params in enumerate(requests):
        builder.added.append((index, params, [1, 2], outputs[index]))
    processor.update_state(builder.get_and_reset(REQUESTS))
    for _ in range(3):
        book(processor, processor.apply(torch.randn(REQUESTS, VOCAB)))
    # vLLM preempts rows 1 and 4 (their state kept), runs the rest, then re-adds them,
    # row 4's output as a new list (async scheduling recovers it that way).
    builder.removed_append(1)
    builder.removed_append(4)
    processor.update_state(builder.get_and_reset(REQUESTS - 2))
    outputs[4] = list(outputs[4])
    builder.added.append((1, requests[4], [1, 2], outputs[4]))
    builder.added.append((4, requests[1], [1, 2], outputs[1]))
    processor.update_state(builder.get_and_reset(REQUESTS))
    for _ in range(2):
        book(processor, processor.apply(torch.randn(REQUESTS, VOCAB)))
    processor.sampler.close()
    grouped = by_request(random_arms)
    assert len(grouped) == REQUESTS
    for records in grouped.values():
        assert len({r["arm"] for r in records}) == 1
        assert len({r["tag"] for r in records}) == 1
        assert [r["position"] for r in records] == list(range(5))
    assert processor.readmissions.resumed == 2


def refillable() -> tuple[QRSamplerLogitsProcessor, np.ndarray, np.ndarray]:
    """A Model Runner V2 processor over request state whose host prompt and prefill
    lengths (4 tokens of prompt in every slot) a test sets, as a refill would."""
    states = request_states()
    prompt_len = np.full(states.max_num_reqs, 4, dtype=np.int32)
    prefill_len = prompt_len.copy()
    states.prompt_len = SimpleNamespace(np=prompt_len)
    states.prefill_len = SimpleNamespace(np=prefill_len)
    return v2_processor(states), prompt_len, prefill_len


def test_model_runner_v2_a_refilled_request_keeps_its_id_and_arm(random_arms):
    processor, prompt_len, prefill_len = refillable()
    requests = [SamplingParams(extra_args={"qr_tag": f"r{i}"}) for i in range(REQUESTS)]
    for slot, params in enumerate(requests):
        assert processor.add_request(slot, params) is True

    every = list(range(REQUESTS))
    v2_apply(processor, every, [4] * REQUESTS)
    v2_apply(processor, every, [5] * REQUESTS)
    # Request 2 is preempted after two tokens and comes back in slot 9, refilled with
    # its prompt and those tokens.
    prompt_len[9], prefill_len[9] = 4, 6
    assert processor.add_request(9, requests[2]) is True
    v2_apply(processor, [0, 1, 9, 3, 4, 5], [6] * REQUESTS)
    processor.sampler.close()
    grouped = by_request(random_arms)
    assert len(grouped) == REQUESTS
    for records in grouped.values():
        assert len({r["arm"] for r in records}) == 1
        assert [r["position"] for r in records] == [0, 1, 2]
    assert processor.readmissions.resumed == 1


def test_v1_siblings_sharing_one_parameters_object_each_keep_their_identity(random_arms):
    """vLLM gives the n children of one request without a seed one SamplingParams
    object (ParentRequest caches it): two of them preempted together come back each
    as itself, told apart by the output vLLM hands back."""
    processor = QRSamplerLogitsProcessor(vllm_config(), torch.device("cpu"), False)
    builder = BatchUpdateBuilder()
    shared = SamplingParams(extra_args={"qr_tag": "siblings"})
    outputs: list[list[int]] = [[] for _ in range(3)]
    for index in range(3):
        builder.added.append((index, shared, [1, 2], outputs[index]))
    processor.update_state(builder.get_and_reset(3))
    for _ in range(2):
        book(processor, processor.apply(torch.randn(3, VOCAB)))
    ids = [processor.sampler.table.origins[i].request_id for i in range(3)]  # type: ignore[union-attr]
    builder.removed_append(0)
    builder.removed_append(1)
    processor.update_state(builder.get_and_reset(1))
    book(processor, processor.apply(torch.randn(3, VOCAB)))
    # Back in each other's slots, sibling 0's output as a new list (async scheduling).
    builder.added.append((0, shared, [1, 2], outputs[1]))
    builder.added.append((1, shared, [1, 2], list(outputs[0])))
    processor.update_state(builder.get_and_reset(3))
    book(processor, processor.apply(torch.randn(3, VOCAB)))
    processor.sampler.close()
    origins = processor.sampler.table.origins
    assert [origins[i].request_id for i in (1, 0, 2)] == ids  # type: ignore[union-attr]
    grouped = by_request(random_arms)
    assert len(grouped) == 3
    for request_id, records in grouped.items():
        assert len({r["arm"] for r in records}) == 1
        positions = [r["position"] for r in records]
        assert positions == list(range(4 if request_id == ids[2] else 3))
    assert processor.readmissions.resumed == 2


def test_model_runner_v2_siblings_sharing_one_parameters_object_each_keep_their_identity(
    random_arms,
):
    """Model Runner V2 says only that a request comes back refilled, and with how many
    tokens: two siblings preempted at different lengths come back each as itself."""
    processor, prompt_len, prefill_len = refillable()
    shared = SamplingParams(extra_args={"qr_tag": "siblings"})
    for slot in range(3):
        assert processor.add_request(slot, shared) is True

    v2_apply(processor, [0, 1, 2], [4, 4, 4])
    v2_apply(processor, [1, 2], [5, 5])  # sibling 0 preempted after one token
    v2_apply(processor, [2], [6])  # sibling 1 preempted after two
    ids = [processor.sampler.table.origins[i].request_id for i in range(3)]  # type: ignore[union-attr]
    # Back in new slots, sibling 1 first: refilled with its prompt and its tokens.
    prompt_len[5], prefill_len[5] = 4, 6
    assert processor.add_request(5, shared) is True
    prompt_len[6], prefill_len[6] = 4, 5
    assert processor.add_request(6, shared) is True
    v2_apply(processor, [2, 5, 6], [7, 6, 5])
    processor.sampler.close()
    origins = processor.sampler.table.origins
    assert [origins[i].request_id for i in (6, 5, 2)] == ids  # type: ignore[union-attr]
    grouped = by_request(random_arms)
    assert len(grouped) == 3
    for records in grouped.values():
        assert len({r["arm"] for r in records}) == 1
        positions = [r["position"] for r in records]
        assert positions == list(range(len(positions)))
    assert processor.readmissions.resumed == 2


def test_v1_through_vllms_own_input_batch_every_request_keeps_its_identity(random_arms):
    """vLLM's InputBatch builds the batch updates: a removed index is given to a request
    added in the same update, or filled by condensing the batch, and in both cases
    leaves the removed list. The requests that were there have left all the same, and
    come back as themselves."""
    processor = QRSamplerLogitsProcessor(vllm_config(), torch.device("cpu"), False)
    batch = InputBatch(
        max_num_reqs=8,
        max_model_len=64,
        max_num_batched_tokens=64,
        device=torch.device("cpu"),
        vocab_size=VOCAB,
        block_sizes=[16],
        max_num_blocks_per_req=[4],
        logitsprocs=LogitsProcessors([processor]),
        logitsprocs_need_output_token_ids=True,
    )
    states = {
        tag: CachedRequestState(
            req_id=tag,
            prompt_token_ids=[1, 2],
            mm_features=[],
            sampling_params=SamplingParams(extra_args={"qr_tag": tag}),
            generator=None,
            block_ids=([0],),
            num_computed_tokens=0,
            output_token_ids=[],
        )
        for tag in "abcd"
    }

    def step() -> None:
        batch.condense()
        batch.refresh_metadata()
        book(processor, processor.apply(torch.randn(batch.num_reqs, VOCAB)))

    for tag in "abc":
        batch.add_request(states[tag])
    step()
    step()
    batch.remove_request("a")  # preempted: condensing moves "c" into its index
    step()
    batch.remove_request("b")  # preempted, and its index goes to "d" at once
    batch.add_request(states["d"])
    step()
    batch.add_request(states["a"])
    batch.add_request(states["b"])
    step()
    processor.sampler.close()
    grouped = by_request(random_arms)
    assert len(grouped) == 4
    for records in grouped.values():
        assert len({r["tag"] for r in records}) == 1
        assert len({r["arm"] for r in records}) == 1
        tag = records[0]["tag"]
        assert [r["position"] for r in records] == list(range(len(states[tag].output_token_ids)))
    assert processor.readmissions.resumed == 2
