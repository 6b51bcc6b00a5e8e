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
    import conftest  # noqa: F401 - the CPU pinned-memory setting, in this fresh process
    from vllm import SamplingParams
    from vllm.config import DeviceConfig, VllmConfig, set_current_vllm_config
    from vllm.distributed import init_distributed_environment, initialize_model_parallel
    from vllm.distributed.parallel_state import (
        destroy_distributed_environment,
        destroy_model_parallel,
    )
    from vllm.v1.sample.logits_processor import BatchUpdateBuilder, build_logitsprocs

    from qr_sampler.engine.processor import QRSamplerLogitsProcessor

    config = VllmConfig(device_config=DeviceConfig(device="cpu"))
    with set_current_vllm_config(config):
        init_distributed_environment(
            world_size=2,
            rank=rank,
            distributed_init_method=f"file://{init_file}",
            local_rank=rank,
            backend="gloo",
        )
        initialize_model_parallel(tensor_model_parallel_size=2)
        try:
            processors = build_logitsprocs(config, torch.device("cpu"), False, False)
            ours = next(p for p in processors.all if isinstance(p, QRSamplerLogitsProcessor))
            builder = BatchUpdateBuilder()
            for row in range(ROWS):
                builder.added.append((row, SamplingParams(extra_args={"qr_top_p": 0.95}), [1], []))
            ours.update_state(builder.get_and_reset(ROWS))
            generator = torch.Generator().manual_seed(5)
            tokens = [
                ours.apply(torch.randn(ROWS, VOCAB, generator=generator)).argmax(-1).tolist()
                for _ in range(STEPS)
            ]
            shared = ours.sampler.shared_u
            assert shared is not None
            results.put((rank, tokens, shared.leader, ours.sampler.arms.arms[0].source is not None))
        finally:
            destroy_model_parallel()
            destroy_distributed_environment()


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
