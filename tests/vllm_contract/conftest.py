"""Contract tests against the real vLLM classes, on a CPU-only machine."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from vllm.config import DeviceConfig, VllmConfig
from vllm.platforms import current_platform
from vllm.utils import platform_utils

from qr_sampler.engine import processor as adapter
from qr_sampler.plugins.registry import get_registry

# The CUDA build of vLLM on a machine without a GPU resolves to a platform that
# claims pinned memory, which needs a GPU; vLLM's own built-in processors then
# fail while copying to the device. Pinned memory is the one thing not on hand.
type(current_platform).is_pin_memory_available = classmethod(lambda cls: False)
platform_utils.is_pin_memory_available.cache_clear()

VOCAB = 64


@pytest.fixture(autouse=True)
def clean_environment(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("QR_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    get_registry.cache_clear()
    adapter._admission_config.cache_clear()
    adapter._admission_defaults.cache_clear()
    adapter._admission_arms.cache_clear()
    # The adapter copies vLLM's handlers onto qr-sampler's logger; pytest's capture
    # handlers end up among vLLM's, so without a reset a test would see its records
    # once through that copy and once through the root logger.
    loggers = [logging.getLogger(name) for name in ("qr_sampler", "vllm")]
    saved = [(each.handlers[:], each.level, each.propagate) for each in loggers]
    for each in loggers:
        each.handlers.clear()
    yield
    for each, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        each.handlers[:] = handlers
        each.setLevel(level)
        each.propagate = propagate
    get_registry.cache_clear()
    adapter._admission_config.cache_clear()
    adapter._admission_defaults.cache_clear()
    adapter._admission_arms.cache_clear()


def vllm_config(speculative: bool = False) -> object:
    """A real VllmConfig for the CPU; a stand-in only where speculative decoding is on,
    since a real SpeculativeConfig needs a draft model to load."""
    if speculative:
        return SimpleNamespace(speculative_config=SimpleNamespace(num_speculative_tokens=2))
    return VllmConfig(device_config=DeviceConfig(device="cpu"))


def request_states(max_num_reqs: int = 16) -> SimpleNamespace:
    """What Model Runner V2's LogitsProcRequestState.from_request_state reads."""
    return SimpleNamespace(
        device=torch.device("cpu"),
        max_num_reqs=max_num_reqs,
        vocab_size=VOCAB,
        all_token_ids=None,
        prompt_len=None,
        prefill_len=None,
        total_len=None,
    )


def v2_processor(states: SimpleNamespace) -> adapter.QRSamplerLogitsProcessor:
    """The plugin's processor as Model Runner V2's loader builds it over ``states``."""
    from vllm.v1.worker.gpu.sample.logits_processor import build_custom_logits_processors

    return next(
        p
        for p in build_custom_logits_processors(vllm_config(), states, False)
        if isinstance(p, adapter.QRSamplerLogitsProcessor)
    )


def v2_apply(processor: Any, slots: list[int], seen: list[int]) -> None:
    """One Model Runner V2 step over request ``slots``, each row's sequence ``seen``
    tokens long (the token being sampled included)."""
    from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext

    mapping = np.array(slots, dtype=np.int32)
    lengths = np.array(seen, dtype=np.int32)
    processor.apply(
        torch.randn(len(slots), VOCAB),
        LogitsContext(
            expanded_idx_mapping=torch.from_numpy(mapping),
            idx_mapping=torch.from_numpy(mapping),
            idx_mapping_np=mapping,
            expanded_local_pos=torch.zeros(len(slots), dtype=torch.int32),
            input_ids=torch.zeros(len(slots), dtype=torch.int32),
            pos=torch.from_numpy(lengths - 1),
            seq_lens_upper_bound_np=lengths,
        ),
    )


def book(processor: Any, logits: torch.Tensor) -> None:
    """What vLLM's V1 runner does after a step: append each row's (forced) token to its
    request's output list, then start the next step, which writes the step's records
    (on the records thread: waited for here)."""
    for row in range(logits.shape[0]):
        output = processor.sampler.output_of(row)
        if output is not None:
            output.append(int(logits[row].argmax()))
    processor.update_state(None)
    processor.sampler.sink.flush()


@contextmanager
def processor_in_group(
    rank: int, init_file: str, requests: list[Any], **parallel: int
) -> Iterator[adapter.QRSamplerLogitsProcessor]:
    """In a fresh process: join vLLM's two-process group (gloo) as ``rank`` with the
    given ``initialize_model_parallel`` sizes, and yield the plugin's processor as
    vLLM's loader builds it, with ``requests`` (``SamplingParams``) in rows 0, 1, ..."""
    from vllm.config import set_current_vllm_config
    from vllm.distributed import init_distributed_environment, initialize_model_parallel
    from vllm.distributed.parallel_state import (
        destroy_distributed_environment,
        destroy_model_parallel,
    )
    from vllm.v1.sample.logits_processor import BatchUpdateBuilder, build_logitsprocs

    config = VllmConfig(device_config=DeviceConfig(device="cpu"))
    with set_current_vllm_config(config):
        init_distributed_environment(
            world_size=2,
            rank=rank,
            distributed_init_method=f"file://{init_file}",
            local_rank=rank,
            backend="gloo",
        )
        initialize_model_parallel(**parallel)
        try:
            processors = build_logitsprocs(config, torch.device("cpu"), False, False)
            ours = next(
                p for p in processors.all if isinstance(p, adapter.QRSamplerLogitsProcessor)
            )
            builder = BatchUpdateBuilder()
            for row, params in enumerate(requests):
                builder.added.append((row, params, [1], []))
            ours.update_state(builder.get_and_reset(len(requests)))
            yield ours
        finally:
            destroy_model_parallel()
            destroy_distributed_environment()
