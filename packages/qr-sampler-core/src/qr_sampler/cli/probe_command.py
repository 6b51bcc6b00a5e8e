"""``qr-sampler probe``: build the configured source, draw from it, report speed and health."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from qr_sampler.cli.output import print_json
from qr_sampler.config import QRSamplerConfig
from qr_sampler.entropy.factory import build_entropy_source
from qr_sampler.errors import EntropyUnavailableError, QRSamplerError
from qr_sampler.record_file import check_log_path


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "probe",
        help="draw from the configured entropy source and report latency",
        description="Build the source named by QR_ENTROPY_SOURCE_TYPE, draw from it COUNT "
        "times (without the fallback, so failures show), and print latency p50/p99, "
        "throughput and the source's health. Exits 2 if the source fails or "
        "QR_LOG_PATH cannot be written.",
    )
    parser.add_argument(
        "--bytes",
        type=_positive,
        default=20480,
        metavar="N",
        help="bytes per draw (default 20480, one token's worth)",
    )
    parser.add_argument(
        "--count", type=_positive, default=20, metavar="K", help="number of draws (default 20)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    config = QRSamplerConfig.load()
    # The engine would refuse to start with this records file: say so before probing.
    check_log_path(config.log_path)
    source = build_entropy_source(config).primary
    latencies = []
    try:
        for _ in range(args.count):
            start = time.perf_counter()
            data = source.get_random_bytes(args.bytes)
            latencies.append(time.perf_counter() - start)
            if len(data) != args.bytes:
                raise EntropyUnavailableError(
                    f"returned {len(data)} bytes where {args.bytes} were asked for"
                )
        health = source.health_check()
    except EntropyUnavailableError as exc:
        raise QRSamplerError(f"entropy source {source.name!r} failed: {exc}") from None
    finally:
        source.close()
    seconds = np.asarray(latencies)
    report = {
        "source": source.name,
        "bytes_per_draw": args.bytes,
        "draws": args.count,
        "latency_ms_p50": float(np.percentile(seconds, 50) * 1000),
        "latency_ms_p99": float(np.percentile(seconds, 99) * 1000),
        "throughput_mb_s": args.bytes * args.count / float(seconds.sum()) / 1e6,
        "health": health,
    }
    if args.json:
        print_json(report)
    else:
        print(f"source:      {report['source']}")
        print(f"draws:       {args.count} x {args.bytes} bytes")
        print(
            f"latency:     p50 {report['latency_ms_p50']:.3f} ms, "
            f"p99 {report['latency_ms_p99']:.3f} ms"
        )
        print(f"throughput:  {report['throughput_mb_s']:.1f} MB/s")
        print(f"health:      {health}")
    return 0
