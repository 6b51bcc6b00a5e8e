"""Latency of the ``quantum_grpc`` source against the urandom reference server.

Measures, for every mode over loopback TCP and over a unix socket, the median and p99 of
a one-token draw (20,480 bytes), and over the unix socket a whole-batch draw
(64 x 20,480 bytes) next to ``os.urandom`` for the same number of bytes. The server runs
in its own process, as it does in a deployment, so it does not share the client's GIL.

    python benchmarks/grpc_latency.py [--draws 1000] [--batch 64] [--json]

Needs qr-source-grpc and qr-source-urandom-server installed. Figures are only comparable
within one run on one machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from qr_source_grpc import CircuitBreakerSettings, GrpcEntropySource, GrpcSourceSettings
from qr_source_grpc.settings import Mode

MODES: tuple[Mode, ...] = ("unary", "server_streaming", "bidi_streaming")
TOKEN_BYTES = 20480
WARMUP = 50


@contextmanager
def urandom_server(address: str) -> Iterator[str]:
    """Run ``qr-urandom-server`` in a subprocess; yields the address it listens on."""
    process = subprocess.Popen(
        [sys.executable, "-m", "qr_urandom_server", "--address", address, "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # The server prints "qr-urandom-server listening on ADDRESS" once it serves.
        line = process.stdout.readline() if process.stdout else ""
        if "listening on" not in line:
            raise RuntimeError(f"server did not start: {line!r}")
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait(10)


def timings_ms(draw: Callable[[], object], count: int) -> list[float]:
    for _ in range(WARMUP):
        draw()
    samples = []
    for _ in range(count):
        start = time.perf_counter_ns()
        draw()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[math.ceil(0.99 * len(ordered)) - 1]  # nearest rank
    return {"median_ms": round(statistics.median(ordered), 3), "p99_ms": round(p99, 3)}


def measure(address: str, mode: Mode, size: int, count: int) -> dict[str, float]:
    settings = GrpcSourceSettings(server_address=address, mode=mode)
    with GrpcEntropySource(settings, CircuitBreakerSettings()) as source:
        return summary(timings_ms(lambda: source.get_random_bytes(size), count))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000, help="timed draws per case")
    parser.add_argument("--batch", type=int, default=64, help="rows in the whole-batch draw")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()

    batch_bytes = args.batch * TOKEN_BYTES
    batch_draws = max(20, args.draws // 10)
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        addresses = {"tcp": "127.0.0.1:0", "unix": f"unix://{tmp}/entropy.sock"}
        for transport, bind in addresses.items():
            with urandom_server(bind) as address:
                for mode in MODES:
                    figures = measure(address, mode, TOKEN_BYTES, args.draws)
                    results.append({"case": f"{transport} {mode}", "bytes": TOKEN_BYTES, **figures})
                if transport == "unix":
                    for mode in MODES:
                        figures = measure(address, mode, batch_bytes, batch_draws)
                        results.append({"case": f"unix {mode}", "bytes": batch_bytes, **figures})
    urandom = summary(timings_ms(lambda: os.urandom(batch_bytes), batch_draws))
    results.append({"case": "os.urandom", "bytes": batch_bytes, **urandom})

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'case':<24}{'bytes':>10}{'median ms':>12}{'p99 ms':>10}")
    for row in results:
        print(f"{row['case']:<24}{row['bytes']:>10}{row['median_ms']:>12.3f}{row['p99_ms']:>10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
