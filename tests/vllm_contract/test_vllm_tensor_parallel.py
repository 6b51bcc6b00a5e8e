"""Two tensor-parallel ranks in vLLM's own process groups (gloo, CPU) emit one token."""

from __future__ import annotations

import multiprocessing
import queue
from pathlib import Path
from typing import Any

import pytest
import torch

ROWS, VOCAB, STEPS = 6, 300, 3


def run_rank(rank: int, init_file: str, results: Any) -> None:
    from conftest import processor_in_group  # also the CPU pinned-memory setting
    from vllm import SamplingParams

    requests = [SamplingParams(extra_args={"qr_top_p": 0.95}) for _ in range(ROWS)]
    with processor_in_group(rank, init_file, requests, tensor_model_parallel_size=2) as ours:
        generator = torch.Generator().manual_seed(5)
        tokens = [
            ours.apply(torch.randn(ROWS, VOCAB, generator=generator)).argmax(-1).tolist()
            for _ in range(STEPS)
        ]
        shared = ours.sampler.shared_u
        assert shared is not None
        results.put((rank, tokens, shared.leader, ours.sampler.arms.arms[0].source is not None))


def test_both_ranks_force_the_same_tokens_drawn_once_on_the_leader(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(target=run_rank, args=(rank, str(tmp_path / "rendezvous"), results))
        for rank in (0, 1)
    ]
    for process in processes:
        process.start()
    try:
        ranks = {}
        for _ in processes:
            rank, tokens, leader, has_source = results.get(timeout=240)
            ranks[rank] = (tokens, leader, has_source)
    except queue.Empty:
        pytest.fail("a rank did not finish")
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    assert ranks[0][0] == ranks[1][0]
    assert ranks[0][1:] == (True, True)
    assert ranks[1][1:] == (False, False)
