"""qr-sampler's ``apply()`` against vLLM's own V1 ``Sampler`` on the same logits.

For each batch size and configuration, one engine step of each is timed on
identical logits (vocab 151,936, float32, CPU): qr-sampler's processor as vLLM's
loader builds it (entropy fetch from the system source included), and vLLM's
``Sampler`` with matching settings. The ratio qr / vLLM is taken pair by pair.

    python benchmarks/sampler_step.py [--batches 1 8 64 256] [--steps 20]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch
from common import summary, time_pairs_ms, write_results
from vllm import SamplingParams
from vllm.config import DeviceConfig, VllmConfig
from vllm.platforms import current_platform
from vllm.utils import platform_utils
from vllm.v1.sample.logits_processor import BatchUpdateBuilder, LogitsProcessors
from vllm.v1.sample.metadata import SamplingMetadata
from vllm.v1.sample.sampler import Sampler

from qr_sampler.vllm import QRSamplerLogitsProcessor

# vLLM's CUDA wheel on a machine without a GPU claims pinned memory; say no.
type(current_platform).is_pin_memory_available = classmethod(lambda cls: False)
platform_utils.is_pin_memory_available.cache_clear()

VOCAB = 151_936
CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (qr_* request keys, the matching vLLM SamplingParams)
    "defaults": ({}, {"temperature": 0.7}),
    "top_k=50 top_p=0.9": (
        {"qr_top_k": 50, "qr_top_p": 0.9},
        {"temperature": 0.7, "top_k": 50, "top_p": 0.9},
    ),
    "edt": ({"qr_temperature_strategy": "edt"}, {"temperature": 0.7}),
}


def vllm_metadata(rows: int, params: SamplingParams) -> SamplingMetadata:
    top_k = params.top_k if params.top_k > 0 else None
    return SamplingMetadata(
        temperature=torch.full((rows,), params.temperature),
        all_greedy=False,
        all_random=True,
        top_p=torch.full((rows,), params.top_p) if params.top_p < 1 else None,
        top_k=torch.full((rows,), top_k, dtype=torch.int32) if top_k else None,
        generators={},
        max_num_logprobs=None,
        no_penalties=True,
        prompt_token_ids=None,
        frequency_penalties=torch.zeros(rows),
        presence_penalties=torch.zeros(rows),
        repetition_penalties=torch.ones(rows),
        output_token_ids=[[] for _ in range(rows)],
        allowed_token_ids_mask=None,
        bad_words_token_ids={},
        logitsprocs=LogitsProcessors(),
    )


def qr_processor(rows: int, request_keys: dict[str, Any]) -> QRSamplerLogitsProcessor:
    config = VllmConfig(device_config=DeviceConfig(device="cpu"))
    processor = QRSamplerLogitsProcessor(config, torch.device("cpu"), False)
    builder = BatchUpdateBuilder()
    for row in range(rows):
        builder.added.append((row, SamplingParams(extra_args=request_keys), [1], []))
    processor.update_state(builder.get_and_reset(rows))
    return processor


def bench_case(rows: int, name: str, steps: int) -> dict[str, Any]:
    request_keys, vllm_params = CONFIGS[name]
    generator = torch.Generator().manual_seed(rows)
    # Normal logits spread mass over many tokens: a harder case for qr-sampler's
    # CDF walk than a real model's peaked distributions.
    base = torch.randn(rows, VOCAB, generator=generator) * 2.5
    logits = torch.empty_like(base)
    refill = lambda: logits.copy_(base)  # noqa: E731 - untimed, before every step

    processor = qr_processor(rows, request_keys)
    sampler, metadata = Sampler(), vllm_metadata(rows, SamplingParams(**vllm_params))
    qr, vllm = time_pairs_ms(
        lambda: processor.apply(logits),
        lambda: sampler(logits, metadata),
        steps,
        warmup=3,
        prepare=refill,
    )
    ratios = sorted(q / v for q, v in zip(qr, vllm, strict=True))
    return {
        "batch": rows,
        "config": name,
        "qr_sampler": summary(qr),
        "vllm_sampler": summary(vllm),
        "ratio_median": round(ratios[len(ratios) // 2], 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per case")
    args = parser.parse_args()
    results = []
    print(
        f"{'batch':>5}  {'config':<20}{'qr p50':>9}{'qr p90':>9}{'vllm p50':>10}"
        f"{'vllm p90':>10}{'ratio':>7}"
    )
    for rows in args.batches:
        # Big batches take seconds per vLLM top-k/top-p step on two cores.
        steps = max(5, args.steps // (1 + rows // 64))
        for name in CONFIGS:
            case = bench_case(rows, name, steps)
            results.append(case)
            qr, vllm = case["qr_sampler"], case["vllm_sampler"]
            print(
                f"{rows:>5}  {name:<20}{qr['median_ms']:>9.2f}{qr['p90_ms']:>9.2f}"
                f"{vllm['median_ms']:>10.2f}{vllm['p90_ms']:>10.2f}"
                f"{case['ratio_median']:>7.2f}",
                flush=True,
            )
    path = write_results("sampler_step", {"vocab": VOCAB, "cases": results})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
