"""qr-sampler's ``apply()`` against vLLM's own V1 ``Sampler`` on the same logits.

For each batch size and configuration, one engine step of each is timed on
identical logits (vocab 151,936, float32, CPU): qr-sampler's processor as vLLM's
loader builds it (entropy fetch from the system source included), and vLLM's
``Sampler`` with the same ``SamplingParams`` (the processor reads them: the
request's parameters are its policy), penalties over a 200-token prompt and a
100-token output included. The ratio qr / vLLM is taken pair by pair.

Then the hard cases for qr-sampler's CDF walk (batch 64: rows whose crossing bin
holds most of the vocabulary, and one row with a huge top-k) next to the normal
case, each timed against vLLM's ``Sampler`` and a full ``torch.sort`` of the same
logits in the same run.

    python benchmarks/sampler_step.py [--batches 1 8 64 256] [--steps 20] [--worst-steps 5]
                                      [--only-worst | --no-worst]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import cpu_vllm  # noqa: F401 - first: vLLM's modules read pinned memory at import
import torch
from common import summary, time_interleaved_ms, time_pairs_ms, write_results
from vllm import SamplingParams
from vllm.config import DeviceConfig, VllmConfig
from vllm.v1.sample.logits_processor import BatchUpdateBuilder, LogitsProcessors
from vllm.v1.sample.logits_processor.builtin import MinPLogitsProcessor
from vllm.v1.sample.metadata import SamplingMetadata
from vllm.v1.sample.sampler import Sampler

from qr_sampler.engine.processor import QRSamplerLogitsProcessor

VOCAB = 151_936
PROMPT_TOKENS, OUTPUT_TOKENS = 200, 100
CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (qr_* request keys, the request's SamplingParams, which both samplers follow)
    "temperature": ({}, {"temperature": 0.7}),
    "top_k=50 top_p=0.9": ({}, {"temperature": 0.7, "top_k": 50, "top_p": 0.9}),
    "chat client": (
        {},
        {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05},
    ),
    "every parameter": (
        {},
        {
            "temperature": 0.9,
            "top_p": 0.9,
            "top_k": 50,
            "min_p": 0.05,
            "repetition_penalty": 1.1,
            "frequency_penalty": 0.3,
            "presence_penalty": 0.2,
        },
    ),
    "edt": ({"qr_temperature_strategy": "edt"}, {"temperature": 0.7}),
}


#: name: (kind of logits, qr_* keys of row 0, of the other rows, vLLM params of row 0, others)
WORST: dict[str, tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "normal rows, defaults": ("normal", {}, {}, {"temperature": 0.7}, {"temperature": 0.7}),
    "all-equal rows": ("equal", {}, {}, {"temperature": 0.7}, {"temperature": 0.7}),
    "plateau rows": ("plateau", {}, {}, {"temperature": 0.7}, {"temperature": 0.7}),
    "near-flat rows": ("near-flat", {}, {}, {"temperature": 0.7}, {"temperature": 0.7}),
    "near-flat rows, top_k=50 top_p=0.9": (
        "near-flat",
        {"qr_top_k": 50, "qr_top_p": 0.9},
        {"qr_top_k": 50, "qr_top_p": 0.9},
        {"temperature": 0.7, "top_k": 50, "top_p": 0.9},
        {"temperature": 0.7, "top_k": 50, "top_p": 0.9},
    ),
    "all-equal rows, top_p=0.9": (
        "equal",
        {"qr_top_p": 0.9},
        {"qr_top_p": 0.9},
        {"temperature": 0.7, "top_p": 0.9},
        {"temperature": 0.7, "top_p": 0.9},
    ),
    "one row top_k=150000": (
        "normal",
        {"qr_top_k": 150_000},
        {},
        {"temperature": 0.7, "top_k": 150_000},
        {"temperature": 0.7},
    ),
}


def make_logits(rows: int, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Normal logits spread mass over many tokens: a harder case for qr-sampler's CDF
    walk than a real model's peaked distributions; the other kinds are its worst."""
    logits = torch.randn(rows, VOCAB, generator=generator) * 2.5
    if kind == "equal":
        logits.fill_(1.5)
    elif kind == "plateau":
        # A few hundred distinct tokens on top of a vocabulary-wide tie.
        logits[:, 512:] = 0.25
    elif kind == "near-flat":
        logits.mul_(1e-4)
    return logits


def token_history(rows: int) -> tuple[list[list[int]], list[list[int]]]:
    """Each row's prompt and output token ids (what the penalties read)."""
    generator = torch.Generator().manual_seed(7)
    prompts = torch.randint(0, VOCAB, (rows, PROMPT_TOKENS), generator=generator).tolist()
    outputs = torch.randint(0, VOCAB, (rows, OUTPUT_TOKENS), generator=generator).tolist()
    return prompts, outputs


def vllm_metadata(rows: int, params: SamplingParams, *others: SamplingParams) -> SamplingMetadata:
    """Row 0 takes ``params``; the other rows ``others[0]`` if given."""
    every = [params, *[others[0] if others else params] * (rows - 1)]
    top_k = [p.top_k if p.top_k > 0 else VOCAB for p in every]
    prompts, outputs = token_history(rows)
    penalized = any(
        (p.repetition_penalty, p.frequency_penalty, p.presence_penalty) != (1.0, 0.0, 0.0)
        for p in every
    )
    # min_p is one of vLLM's built-in processors: it gets the batch as vLLM hands it over.
    min_p = MinPLogitsProcessor(VllmConfig(device_config=DeviceConfig(device="cpu")), "cpu", False)
    builder = BatchUpdateBuilder()
    for row, p in enumerate(every):
        builder.added.append((row, p, prompts[row], outputs[row]))
    min_p.update_state(builder.get_and_reset(rows))
    return SamplingMetadata(
        temperature=torch.tensor([p.temperature for p in every]),
        all_greedy=False,
        all_random=True,
        top_p=torch.tensor([p.top_p for p in every]) if min(p.top_p for p in every) < 1 else None,
        top_k=torch.tensor(top_k, dtype=torch.int32) if min(top_k) < VOCAB else None,
        generators={},
        max_num_logprobs=None,
        no_penalties=not penalized,
        prompt_token_ids=torch.tensor(prompts) if penalized else None,
        frequency_penalties=torch.tensor([p.frequency_penalty for p in every]),
        presence_penalties=torch.tensor([p.presence_penalty for p in every]),
        repetition_penalties=torch.tensor([p.repetition_penalty for p in every]),
        output_token_ids=outputs,
        allowed_token_ids_mask=None,
        bad_words_token_ids={},
        logitsprocs=LogitsProcessors([min_p]),
    )


def qr_processor(
    rows: int, params: SamplingParams, *others: SamplingParams
) -> QRSamplerLogitsProcessor:
    """Row 0 sends ``params``; the others ``others[0]`` if given."""
    config = VllmConfig(device_config=DeviceConfig(device="cpu"))
    processor = QRSamplerLogitsProcessor(config, torch.device("cpu"), False)
    builder = BatchUpdateBuilder()
    prompts, outputs = token_history(rows)
    for row in range(rows):
        request = params if row == 0 or not others else others[0]
        builder.added.append((row, request, prompts[row], outputs[row]))
    processor.update_state(builder.get_and_reset(rows))
    return processor


def bench_case(rows: int, name: str, steps: int) -> dict[str, Any]:
    request_keys, vllm_params = CONFIGS[name]
    base = make_logits(rows, "normal", torch.Generator().manual_seed(rows))
    logits = torch.empty_like(base)
    refill = lambda: logits.copy_(base)  # noqa: E731 - untimed, before every step

    params = SamplingParams(**vllm_params, extra_args=request_keys)
    processor = qr_processor(rows, params)
    sampler, metadata = Sampler(), vllm_metadata(rows, params)
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


def bench_worst(rows: int, name: str, steps: int) -> dict[str, Any]:
    kind, first_keys, other_keys, first_params, other_params = WORST[name]
    base = make_logits(rows, kind, torch.Generator().manual_seed(rows))
    logits = torch.empty_like(base)
    first = SamplingParams(**first_params, extra_args=first_keys)
    other = SamplingParams(**other_params, extra_args=other_keys)
    processor = qr_processor(rows, first, other)
    sampler = Sampler()
    metadata = vllm_metadata(rows, first, other)
    qr, vllm, full_sort = time_interleaved_ms(
        [
            lambda: processor.apply(logits),
            lambda: sampler(logits, metadata),
            lambda: logits.sort(dim=-1, descending=True),
        ],
        steps,
        warmup=1,
        prepare=lambda: logits.copy_(base),
    )

    def median_ratio(over: list[float]) -> float:
        ratios = sorted(q / o for q, o in zip(qr, over, strict=True))
        return round(ratios[len(ratios) // 2], 3)

    return {
        "batch": rows,
        "case": name,
        "qr_sampler": summary(qr),
        "vllm_sampler": summary(vllm),
        "torch_sort": summary(full_sort),
        "vs_sort": median_ratio(full_sort),
        "vs_vllm": median_ratio(vllm),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument(
        "--steps", type=int, default=20, help="timed steps per case at batch 64 (x 64 / batch)"
    )
    parser.add_argument("--worst-steps", type=int, default=5, help="timed steps per hard case")
    parser.add_argument("--worst-batch", type=int, default=64)
    parser.add_argument("--only-worst", action="store_true", help="skip the batch sweep")
    parser.add_argument("--no-worst", action="store_true", help="skip the hard cases")
    args = parser.parse_args()
    results = []
    print(
        f"{'batch':>5}  {'config':<20}{'qr p50':>9}{'qr p90':>9}{'vllm p50':>10}"
        f"{'vllm p90':>10}{'ratio':>7}"
    )
    for rows in [] if args.only_worst else args.batches:
        # A batch-1 step takes about a millisecond, the order of the machine's
        # scheduling noise, so small batches get more steps; big batches take
        # seconds per vLLM top-k/top-p step on two cores, so they get fewer.
        steps = max(5, args.steps * 64 // rows)
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
    print(
        f"\n{'batch':>5}  {'case':<36}{'qr p50':>9}{'vllm p50':>10}{'sort p50':>10}"
        f"{'x sort':>8}{'x vllm':>8}"
    )
    worst = []
    for name in [] if args.no_worst else WORST:
        case = bench_worst(args.worst_batch, name, args.worst_steps)
        worst.append(case)
        print(
            f"{case['batch']:>5}  {name:<36}{case['qr_sampler']['median_ms']:>9.1f}"
            f"{case['vllm_sampler']['median_ms']:>10.1f}{case['torch_sort']['median_ms']:>10.1f}"
            f"{case['vs_sort']:>8.2f}{case['vs_vllm']:>8.2f}",
            flush=True,
        )
    path = write_results("sampler_step", {"vocab": VOCAB, "cases": results, "worst": worst})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
