"""``qr-sampler probe``: build the configured source, draw from it, report speed and health."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from qr_sampler.cli.output import flat_rows, print_json, print_table
from qr_sampler.entropy.factory import build_entropy_source
from qr_sampler.errors import ConfigValidationError, EntropyUnavailableError, QRSamplerError
from qr_sampler.plugins.known_variables import unknown_in_effect
from qr_sampler.plugins.registry import get_registry
from qr_sampler.records.record_file import check_log_path
from qr_sampler.settings.base import env_file_path
from qr_sampler.settings.config import QRSamplerConfig

# A probe measures; it is not a bulk download. 64 MiB per draw is far above any token's need.
MAX_BYTES = 64 * 1024 * 1024
MAX_COUNT = 10_000


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "probe",
        help="draw from the configured entropy source and report latency",
        description="Build the source named by QR_ENTROPY_SOURCE_TYPE, draw from it COUNT "
        "times (without the fallback, so failures show), and print latency p50/p99, "
        "throughput and the source's health (a table; --json for machines). Refuses to "
        "probe when the configuration has an error `qr-sampler config` reports (unknown "
        "QR_* names included). Exits 2 if "
        "the configuration is wrong, QR_LOG_PATH cannot be written, or the source fails.",
    )
    add_whole_number(
        parser, "--bytes", "N", "bytes per draw", MAX_BYTES, 20480, "20480, one token's worth"
    )
    add_whole_number(parser, "--count", "K", "number of draws", MAX_COUNT, 20)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)


def add_whole_number(
    parser: argparse.ArgumentParser,
    flag: str,
    metavar: str,
    what: str,
    limit: int,
    default: int,
    default_text: str | None = None,
) -> None:
    """An option taking a whole number from 1 to ``limit``, its range in its help."""
    parser.add_argument(
        flag,
        type=whole_number_up_to(limit),
        default=default,
        metavar=metavar,
        help=f"{what}, 1 to {limit} (default {default_text or default})",
    )


def whole_number_up_to(limit: int) -> Callable[[str], int]:
    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not 1 <= value <= limit:
            raise argparse.ArgumentTypeError(f"must be between 1 and {limit}, got {value}")
        return value

    # argparse names the type in its messages.
    whole_number.__name__ = "number"
    return whole_number


def run(args: argparse.Namespace) -> int:
    config = QRSamplerConfig.load()
    # The engine would refuse to start with this records file: say so before probing.
    check_log_path(config.log_path)
    registry = get_registry()
    unknown = [variable.message() for variable in unknown_in_effect(registry, env_file_path())]
    if unknown:
        raise ConfigValidationError(
            "; ".join(unknown) + " (these would be ignored: fix them, then probe again)"
        )
    source = build_entropy_source(config, registry).primary
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
        print("health:")
        print_table(
            ("  FIELD", "VALUE"), [(f"  {name}", value) for name, value in flat_rows(health)]
        )
    return 0
