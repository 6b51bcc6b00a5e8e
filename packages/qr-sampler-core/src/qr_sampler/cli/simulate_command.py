"""``qr-sampler simulate``: real token records without vLLM, to try ``verify`` and ``analyze``.

The model is replaced by random logits; everything after them is the sampler an engine
runs: the configured source(s) and arms, amplification, selection, records and the
bytes archive. So the records are real ones, only the text they choose means nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from qr_sampler.cli.probe_command import add_whole_number
from qr_sampler.errors import QRSamplerError
from qr_sampler.settings.config import QRSamplerConfig

TORCH_HINT = "qr-sampler simulate needs torch (the sampling math runs on it): pip install torch"
#: A batch and a vocabulary far beyond these are an engine's job, not a demonstration's.
MAX_REQUESTS = 1024
MAX_TOKENS = 100_000
MAX_VOCAB = 1_000_000


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "simulate",
        help="write token records without vLLM (random logits), to try verify and analyze",
        description="Run the real sampler on random logits (CPU torch, no model, no vLLM): "
        "REQUESTS requests decode TOKENS tokens each, in one batch, drawing from the "
        "configured entropy source, or from each arm under QR_ARMS (requests take the arms "
        "in turn unless QR_ARM_ASSIGNMENT=random). Every QR_* setting applies except where "
        "records and bytes go: --out and --bytes. Then: qr-sampler verify RECORDS --bytes FILE; "
        "qr-sampler analyze RECORDS --by arm.",
    )
    parser.add_argument(
        "--out",
        metavar="RECORDS",
        default="qr-simulated.jsonl",
        help="records file to create (default qr-simulated.jsonl); never appended to",
    )
    parser.add_argument(
        "--bytes",
        metavar="FILE",
        help="bytes archive to create, for verify (default RECORDS with .bytes added)",
    )
    add_whole_number(parser, "--requests", "R", "requests in the batch", MAX_REQUESTS, 8)
    add_whole_number(parser, "--tokens", "T", "tokens per request", MAX_TOKENS, 64)
    add_whole_number(
        parser, "--vocab", "V", "vocabulary size of the random logits", MAX_VOCAB, 1000
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random logits (default 0)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        import torch
    except ImportError:
        raise QRSamplerError(TORCH_HINT) from None
    import numpy as np

    from qr_sampler.sampling.sampler import QRSampler

    records = Path(args.out)
    archive = Path(args.bytes) if args.bytes else Path(f"{records}.bytes")
    for path in (records, archive):
        if path.exists():
            raise QRSamplerError(
                f"{path} already exists: simulate writes a fresh run; remove it or choose "
                "another --out/--bytes"
            )
    config = QRSamplerConfig.load(log_path=str(records), bytes_path=str(archive))
    sampler = QRSampler(config)
    try:
        arms = sampler.arms.policy
        for slot in range(args.requests):
            # Request-chosen arms are taken in turn, so every arm gets requests.
            chosen = {} if arms.random else {"qr_arm": arms.names[slot % len(arms.names)]}
            sampler.admit(slot, sampler.resolve(chosen))
        generator = torch.Generator().manual_seed(args.seed)
        slots = np.arange(args.requests)
        for position in range(args.tokens):
            # A spread like a language model's: a few likely tokens, a long tail.
            logits = torch.randn(args.requests, args.vocab, generator=generator) * 3
            sampler.sample(logits, slots, positions=np.full(args.requests, position))
    finally:
        sampler.close()
    print(
        f"wrote {args.requests * args.tokens} token records ({args.requests} requests x "
        f"{args.tokens} tokens; arms: {', '.join(f'{n}={s}' for n, s in arms.arms)}) to "
        f"{records} and their bytes to {archive}"
    )
    print(f"next: qr-sampler verify {records} --bytes {archive}")
    print(f"      qr-sampler analyze {records} --by arm --out qr-analysis")
    return 0
