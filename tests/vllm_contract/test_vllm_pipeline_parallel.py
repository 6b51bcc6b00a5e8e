"""Two pipeline stages in vLLM's own process groups (gloo, CPU): only the last samples.

vLLM builds the logits processors on every stage and feeds each the batch's requests,
but only the last stage has logits. The first stage's processor must open no entropy
source and no file, and draw nothing; the last one draws and records as usual.
"""

from __future__ import annotations

import json
import multiprocessing
import queue
from pathlib import Path
from typing import Any

import pytest
import torch

ROWS, VOCAB, STEPS = 4, 300, 3


def run_stage(rank: int, init_file: str, results: Any) -> None:
    import conftest  # the CPU pinned-memory setting, in this fresh process
    from vllm import SamplingParams

    requests = [SamplingParams() for _ in range(ROWS)]
    with conftest.processor_in_group(
        rank, init_file, requests, tensor_model_parallel_size=1, pipeline_model_parallel_size=2
    ) as ours:
        sampler = ours.sampler
        tokens: list[list[int]] | str = []
        if sampler.samples:
            generator = torch.Generator().manual_seed(3)
            for _ in range(STEPS):
                logits = ours.apply(torch.randn(ROWS, VOCAB, generator=generator))
                assert isinstance(tokens, list)
                tokens.append(logits.argmax(-1).tolist())
                conftest.book(ours, logits)
        else:
            try:
                ours.apply(torch.zeros(ROWS, VOCAB))
            except RuntimeError as exc:
                tokens = str(exc)
        sampler.close()
        sources = [arm.source is not None for arm in sampler.arms.arms]
        results.put((rank, sampler.samples, sources, tokens))


def test_only_the_last_stage_draws_and_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records, archive = tmp_path / "records.jsonl", tmp_path / "bytes.bin"
    # Spawned processes start from this environment.
    monkeypatch.setenv("QR_LOG_PATH", str(records))
    monkeypatch.setenv("QR_BYTES_PATH", str(archive))
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(target=run_stage, args=(rank, str(tmp_path / "rendezvous"), results))
        for rank in (0, 1)
    ]
    for process in processes:
        process.start()
    try:
        stages = {}
        for _ in processes:
            rank, samples, sources, tokens = results.get(timeout=240)
            stages[rank] = (samples, sources, tokens)
    except queue.Empty:
        pytest.fail("a stage did not finish")
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    first, last = stages[0], stages[1]
    assert first[:2] == (False, [False])  # no source was ever built on the first stage
    assert "only vLLM's last pipeline stage samples" in str(first[2])
    assert last[:2] == (True, [True])
    assert len(last[2]) == STEPS
    written = [json.loads(line) for line in records.read_text().splitlines()]
    # Only the last stage wrote, and only its draws are in the archive.
    assert len(written) == STEPS * ROWS
    assert archive.stat().st_size == sum(int(record["sample_count"]) for record in written)
    files = {path.name for path in tmp_path.iterdir()} - {"rendezvous"}
    # One writer, one chain: the last stage's manifest and heads beside its records.
    assert files == {
        "bytes.bin",
        "records.jsonl",
        "records.jsonl.manifest",
        "records.jsonl.heads",
    }
    assert len((tmp_path / "records.jsonl.manifest").read_text().splitlines()) == 1
