"""qr-sampler's step against a plain torch sampling step, on any torch device.

For a GPU session: ``python benchmarks/device_step.py --device cuda`` (needs torch
and qr-sampler-core with its dependencies; vLLM is not required). For each batch
size it times, on the same logits, qr-sampler's ``sample()`` (system source) and a
plain step (softmax over logits / T, then ``torch.multinomial``), and counts with
the torch profiler the device-to-host copies the qr-sampler step makes.

    python benchmarks/device_step.py [--device cuda] [--batches 1 8 64 256] [--steps 20]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from common import summary, time_pairs_ms, write_results
from torch.profiler import ProfilerActivity, profile

from qr_sampler import QRSamplerConfig
from qr_sampler.sampling.sampler import QRSampler

VOCAB = 151_936


def plain_step(logits: torch.Tensor) -> torch.Tensor:
    return torch.multinomial(torch.softmax(logits / 0.7, dim=-1), 1)


def run_synced(step: Callable[..., object], *args: object, sync: Callable[[], None]) -> None:
    step(*args)
    sync()  # GPU work is asynchronous: time it to completion


def device_to_host_copies(step: Callable[[], None], device: torch.device) -> int:
    """How many device-to-host memcpys one call of ``step`` makes (0 on the CPU).

    The test suite already fails on any vocabulary-sized host copy; this counts the
    small ones (the crossing-bin width, the invalid-row check) a GPU step waits on.
    """
    if device.type != "cuda":
        return 0
    with profile(activities=[ProfilerActivity.CUDA]) as trace:
        step()
        torch.cuda.synchronize()
    return sum("Memcpy DtoH" in event.name for event in trace.events())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sampler = QRSampler(config=QRSamplerConfig.load(env_file=os.devnull))
    results = []
    print(f"device {device}: batch, qr p50 ms, plain p50 ms, ratio, device-to-host copies")
    for rows in args.batches:
        for slot in range(rows):
            sampler.table.put(slot, sampler.defaults)
        base = torch.randn(rows, VOCAB, device=device) * 2.5
        logits = torch.empty_like(base)
        qr_step = partial(run_synced, sampler.sample, logits, np.arange(rows), sync=sync)
        plain = partial(run_synced, plain_step, logits, sync=sync)
        qr, reference = time_pairs_ms(
            qr_step, plain, args.steps, warmup=3, prepare=partial(logits.copy_, base)
        )
        copies = device_to_host_copies(qr_step, device)
        case = {
            "batch": rows,
            "qr_sampler": summary(qr),
            "plain_torch": summary(reference),
            "ratio_median": round(float(np.median(np.divide(qr, reference))), 3),
            "device_to_host_copies": copies,
        }
        results.append(case)
        print(
            f"{rows:>5} {case['qr_sampler']['median_ms']:>9.2f} "
            f"{case['plain_torch']['median_ms']:>9.2f} {case['ratio_median']:>6.2f} {copies:>4}"
        )
    print(f"results: {write_results(f'device_step_{device.type}', {'cases': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
