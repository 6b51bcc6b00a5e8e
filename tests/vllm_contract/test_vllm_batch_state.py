"""Per-request settings follow their request through vLLM's batch bookkeeping."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import VOCAB, book, request_states, vllm_config
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdateBuilder, MoveDirectionality
from vllm.v1.worker.gpu.sample.logits_processor import (
    LogitsContext,
    build_custom_logits_processors,
)

from qr_sampler.engine.processor import QRSamplerLogitsProcessor


def tagged(tag: str, **extra: object) -> SamplingParams:
    return SamplingParams(extra_args={"qr_tag": tag, "qr_diagnostic_mode": "true", **extra})


def tags_of_step(processor: QRSamplerLogitsProcessor, rows: int) -> list[str | None]:
    """Run one step and return, per logits row, the tag of the request qr-sampler used."""
    logits = torch.randn(rows, VOCAB)
    before = len(processor.sampler.sink.recent())
    processor.apply(logits)
    if processor.runner == "v1":
        book(processor, logits)
    by_row: dict[int, str] = {r.row: r.tag for r in processor.sampler.sink.recent()[before:]}
    return [by_row.get(row) for row in range(rows)]


def v1_processor() -> QRSamplerLogitsProcessor:
    return QRSamplerLogitsProcessor(vllm_config(), torch.device("cpu"), False)


def test_adds_removes_moves_and_swaps_keep_each_request_on_its_row():
    processor = v1_processor()
    builder = BatchUpdateBuilder()
    for index, tag in enumerate("abcd"):
        builder.added.append((index, tagged(tag), [1], []))
    processor.update_state(builder.get_and_reset(4))
    assert tags_of_step(processor, 4) == ["a", "b", "c", "d"]

    processor.update_state(None)  # no change to the batch
    assert tags_of_step(processor, 4) == ["a", "b", "c", "d"]

    # b finishes; e takes its row; d is condensed into c's old place after c ends.
    builder.removed_append(1)
    builder.removed_append(2)
    builder.added.append((1, tagged("e"), [1], []))
    builder.moved.append((3, 2, MoveDirectionality.UNIDIRECTIONAL))
    processor.update_state(builder.get_and_reset(3))
    assert tags_of_step(processor, 3) == ["a", "e", "d"]

    builder.moved.append((0, 2, MoveDirectionality.SWAP))
    processor.update_state(builder.get_and_reset(3))
    assert tags_of_step(processor, 3) == ["d", "e", "a"]


def test_a_bypassed_request_is_left_to_vllm_and_draws_no_entropy():
    processor = v1_processor()
    builder = BatchUpdateBuilder()
    builder.added.append((0, tagged("qr"), [1], []))
    builder.added.append((1, tagged("prng", qr_bypass="1"), [1], []))
    processor.update_state(builder.get_and_reset(2))
    logits = torch.randn(2, VOCAB)
    original = logits.clone()
    processor.apply(logits)
    assert torch.equal(logits[1], original[1])
    assert int((logits[0] == 0).sum()) == 1
    book(processor, logits)
    assert [r.tag for r in processor.sampler.sink.recent()] == ["qr"]


def test_an_added_request_replaces_the_previous_occupant_of_its_row():
    processor = v1_processor()
    builder = BatchUpdateBuilder()
    builder.added.append((0, tagged("old", qr_top_k=1), [1], []))
    processor.update_state(builder.get_and_reset(1))
    builder.added.append((0, tagged("new"), [1], []))
    processor.update_state(builder.get_and_reset(1))
    assert tags_of_step(processor, 1) == ["new"]
    assert processor.sampler.table.options[0].top_k == 0


def test_model_runner_v2_maps_rows_to_request_slots():
    processor = next(
        p
        for p in build_custom_logits_processors(vllm_config(), request_states(), False)
        if isinstance(p, QRSamplerLogitsProcessor)
    )
    assert processor.add_request(5, tagged("five")) is True
    assert processor.add_request(2, tagged("two")) is True
    assert processor.add_request(7, tagged("seven", qr_bypass=True)) is False
    processor.apply_staged_writes()
    # A slot is reused without a removal call: the new request's settings win.
    assert processor.add_request(9, tagged("stale")) is True
    assert processor.add_request(9, tagged("nine")) is True

    slots = np.array([9, 5, 7, 2], dtype=np.int32)
    ctx = LogitsContext(
        expanded_idx_mapping=torch.from_numpy(slots),
        idx_mapping=torch.from_numpy(slots),
        idx_mapping_np=slots,
        expanded_local_pos=torch.zeros(4, dtype=torch.int32),
        input_ids=torch.zeros(4, dtype=torch.int32),
        pos=torch.arange(4),
        seq_lens_upper_bound_np=np.full(4, 8, dtype=np.int32),
    )
    logits = torch.randn(4, VOCAB)
    original = logits.clone()
    processor.apply(logits, ctx)
    assert [r.tag for r in processor.sampler.sink.recent()] == ["nine", "five", "two"]
    assert [r.row for r in processor.sampler.sink.recent()] == [0, 1, 3]
    assert torch.equal(logits[2], original[2])

    spec_ctx = LogitsContext(
        expanded_idx_mapping=torch.tensor([9, 9, 5], dtype=torch.int32),
        idx_mapping=torch.from_numpy(slots[:2]),
        idx_mapping_np=slots[:2],
        expanded_local_pos=torch.tensor([0, 1, 0], dtype=torch.int32),
        input_ids=torch.zeros(3, dtype=torch.int32),
        pos=torch.arange(3),
        seq_lens_upper_bound_np=np.full(2, 8, dtype=np.int32),
    )
    with pytest.raises(RuntimeError, match="speculative decoding"):
        processor.apply(torch.randn(3, VOCAB), spec_ctx)


def test_a_request_that_skipped_admission_checks_is_left_to_vllm(caplog):
    processor = v1_processor()
    builder = BatchUpdateBuilder()
    builder.added.append((0, SamplingParams(extra_args={"qr_top_p": 5}), [1], []))
    processor.update_state(builder.get_and_reset(1))
    logits = torch.randn(1, VOCAB)
    original = logits.clone()
    processor.apply(logits)
    assert torch.equal(logits, original)
    assert "left to vLLM's sampler" in caplog.text


def test_model_runner_v2_rows_still_prefilling_draw_no_entropy_and_stay_untouched():
    states = request_states()
    prefill_len = np.zeros(states.max_num_reqs, dtype=np.int32)
    prefill_len[[3, 4]] = [300, 5]  # slot 3: a long prompt mid-prefill; slot 4: decoding
    states.prefill_len = SimpleNamespace(np=prefill_len)
    processor = next(
        p
        for p in build_custom_logits_processors(vllm_config(), states, False)
        if isinstance(p, QRSamplerLogitsProcessor)
    )
    processor.add_request(3, tagged("long"))
    processor.add_request(4, tagged("short"))
    slots = np.array([3, 4], dtype=np.int32)
    ctx = LogitsContext(
        expanded_idx_mapping=torch.from_numpy(slots),
        idx_mapping=torch.from_numpy(slots),
        idx_mapping_np=slots,
        expanded_local_pos=torch.zeros(2, dtype=torch.int32),
        input_ids=torch.zeros(2, dtype=torch.int32),
        pos=torch.arange(2),
        seq_lens_upper_bound_np=np.array([128, 6], dtype=np.int32),
    )
    logits = torch.randn(2, VOCAB)
    original = logits.clone()
    processor.apply(logits, ctx)
    assert [r.tag for r in processor.sampler.sink.recent()] == ["short"]
    assert torch.equal(logits[0], original[0])
    assert int((logits[1] == 0).sum()) == 1
