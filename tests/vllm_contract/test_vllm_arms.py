"""Experiment arms through the adapter, driven by vLLM's own batch bookkeeping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import VOCAB, book, vllm_config
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdateBuilder, MoveDirectionality

from qr_sampler.engine.processor import QRSamplerLogitsProcessor

ARMS = "qrng=system,control=prng"


def request(tag: str, arm: str | None = None) -> SamplingParams:
    extra = {"qr_tag": tag, "qr_sample_count": 512}
    if arm is not None:
        extra["qr_arm"] = arm
    return SamplingParams(extra_args=extra)


def records_of_step(processor: QRSamplerLogitsProcessor, rows: int) -> list[dict[str, object]]:
    log = Path(processor.sampler.config.log_path)
    before = len(log.read_text().splitlines()) if log.exists() else 0
    book(processor, processor.apply(torch.randn(rows, VOCAB)))
    return [json.loads(line) for line in log.read_text().splitlines()[before:]]


@pytest.fixture
def arms_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "tokens.jsonl"
    monkeypatch.setenv("QR_ARMS", ARMS)
    monkeypatch.setenv("QR_LOG_PATH", str(log))
    return log


def test_a_mixed_batch_records_each_requests_arm_and_source_through_moves(
    arms_env: Path,
) -> None:
    processor = QRSamplerLogitsProcessor(vllm_config(), torch.device("cpu"), False)
    builder = BatchUpdateBuilder()
    plan = {"a": "qrng", "b": "control", "c": "control", "d": "qrng"}
    for index, (tag, arm) in enumerate(plan.items()):
        params = request(tag, arm)
        QRSamplerLogitsProcessor.validate_params(params)
        builder.added.append((index, params, [1], []))
    processor.update_state(builder.get_and_reset(4))

    def seen(records: list[dict[str, object]]) -> dict[object, tuple[object, object]]:
        return {r["tag"]: (r["arm"], r["entropy_source"]) for r in records}

    expected = {tag: (arm, "system" if arm == "qrng" else "prng") for tag, arm in plan.items()}
    assert seen(records_of_step(processor, 4)) == expected

    # b finishes, e (qrng) takes its row, and the last two rows swap.
    builder.removed_append(1)
    builder.added.append((1, request("e", "qrng"), [1], []))
    builder.moved.append((2, 3, MoveDirectionality.SWAP))
    processor.update_state(builder.get_and_reset(4))
    records = records_of_step(processor, 4)
    assert [r["tag"] for r in records] == ["a", "e", "d", "c"]
    assert seen(records) == {
        "a": ("qrng", "system"),
        "e": ("qrng", "system"),
        "d": ("qrng", "system"),
        "c": ("control", "prng"),
    }


def test_an_unknown_arm_is_a_400_at_admission(arms_env: Path) -> None:
    with pytest.raises(ValueError, match="unknown arm 'placebo'"):
        QRSamplerLogitsProcessor.validate_params(request("x", "placebo"))


def test_random_assignment_refuses_a_chosen_arm_and_assigns_at_admission(
    arms_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QR_ARM_ASSIGNMENT", "random")
    monkeypatch.setenv("QR_ARM_SEED", "5")
    with pytest.raises(ValueError, match="assigns arms at random"):
        QRSamplerLogitsProcessor.validate_params(request("x", "qrng"))

    def run() -> list[object]:
        processor = QRSamplerLogitsProcessor(vllm_config(), torch.device("cpu"), False)
        builder = BatchUpdateBuilder()
        for index in range(8):
            params = request(str(index))
            QRSamplerLogitsProcessor.validate_params(params)
            builder.added.append((index, params, [1], []))
        processor.update_state(builder.get_and_reset(8))
        return [r["arm"] for r in records_of_step(processor, 8)]

    first = run()
    assert first == run()
    assert set(first) == {"qrng", "control"}
