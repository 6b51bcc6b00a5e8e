"""Tensor-parallel ranks agree on every token: real torch.distributed, two processes."""

from __future__ import annotations

import multiprocessing
import os
import queue
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed
from core_support import RecordingSource

from qr_sampler import EntropyUnavailableError, FallbackEntropySource, QRSamplerConfig
from qr_sampler.engine.tensor_parallel import vllm_tensor_parallel_group
from qr_sampler.sampling.sampler import QRSampler
from qr_sampler.sampling.shared_u import SharedU

ROWS, VOCAB, STEPS = 8, 500, 3


def run_rank(rank: int, init_file: str, results: Any, fail: bool, log_dir: str) -> None:
    """One tensor-parallel rank: the same logits, its own sampler, the shared u."""
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=2
    )
    try:
        source = RecordingSource(fail=fail)
        config = QRSamplerConfig.load(
            env_file=os.devnull, log_path=str(Path(log_dir) / f"rank{rank}.jsonl")
        )
        sampler = QRSampler(
            config=config,
            source=FallbackEntropySource(source, None) if rank == 0 else None,
            shared_u=SharedU(torch.distributed.group.WORLD, 0, leader=rank == 0),
        )
        for slot in range(ROWS):
            sampler.table.put(slot, sampler.defaults)
        generator = torch.Generator().manual_seed(11)
        tokens: list[list[int]] | str = []
        try:
            for _ in range(STEPS):
                logits = sampler.sample(
                    torch.randn(ROWS, VOCAB, generator=generator), np.arange(ROWS)
                )
                assert isinstance(tokens, list)
                tokens.append(logits.argmax(dim=-1).tolist())
        except EntropyUnavailableError as exc:
            tokens = f"unavailable: {exc}"
        sampler.close()
        results.put((rank, tokens, len(source.draws)))
    finally:
        torch.distributed.destroy_process_group()


def run_group(tmp_path: Path, fail: bool) -> dict[int, tuple[Any, int]]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    init_file = tmp_path / "rendezvous"
    processes = [
        context.Process(target=run_rank, args=(rank, str(init_file), results, fail, str(tmp_path)))
        for rank in (0, 1)
    ]
    for process in processes:
        process.start()
    try:
        collected = {}
        for _ in processes:
            rank, tokens, draws = results.get(timeout=120)
            collected[rank] = (tokens, draws)
    except queue.Empty:
        pytest.fail("a rank did not finish: the u exchange hung")
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    return collected


def test_every_rank_emits_the_leaders_tokens_and_only_the_leader_draws(tmp_path):
    ranks = run_group(tmp_path, fail=False)
    leader_tokens, leader_draws = ranks[0]
    follower_tokens, follower_draws = ranks[1]
    assert leader_tokens == follower_tokens
    assert leader_draws == STEPS
    assert follower_draws == 0
    # Each token is recorded once, by the rank whose bytes chose it.
    assert len((tmp_path / "rank0.jsonl").read_text().splitlines()) == ROWS * STEPS
    assert not (tmp_path / "rank1.jsonl").exists()


def test_a_failure_on_the_leader_fails_every_rank_instead_of_hanging(tmp_path):
    ranks = run_group(tmp_path, fail=True)
    assert ranks[0][0].startswith("unavailable: recording source switched off")
    assert ranks[1][0].startswith(
        "unavailable: the entropy source failed on the tensor-parallel leader"
    )


def test_outside_a_vllm_worker_there_is_no_group_to_share_with():
    assert vllm_tensor_parallel_group() is None
