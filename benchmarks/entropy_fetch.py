"""How fast each entropy path delivers one token's bytes and one batch's bytes.

For a one-token draw (20,480 bytes) and a whole-batch draw (64 x 20,480 bytes):
``os.urandom`` in this process (the floor), core's ``system`` source, and the
``quantum_grpc`` source in every mode over loopback TCP and over a unix socket,
against ``qr-urandom-server`` running in its own process as in a deployment.

    python benchmarks/entropy_fetch.py [--draws 500] [--batch 64]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from common import summary, time_ms, write_results

from qr_sampler import SystemEntropySource
from qr_source_grpc import CircuitBreakerSettings, GrpcEntropySource, GrpcSourceSettings
from qr_source_grpc.settings import Mode

MODES: tuple[Mode, ...] = ("unary", "server_streaming", "bidi_streaming")
TOKEN_BYTES = 20480
WARMUP = 20


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


def case(name: str, size: int, draw: Callable[[], object], count: int) -> dict[str, Any]:
    figures = summary(time_ms(draw, count, WARMUP))
    throughput = size / (figures["median_ms"] / 1000) / 1e6
    return {"case": name, "bytes": size, **figures, "mb_per_s": round(throughput, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=500, help="timed one-token draws per case")
    parser.add_argument("--batch", type=int, default=64, help="rows in the whole-batch draw")
    args = parser.parse_args()
    sizes = {"token": TOKEN_BYTES, "batch": args.batch * TOKEN_BYTES}
    counts = {"token": args.draws, "batch": max(20, args.draws // 10)}

    results = []
    system = SystemEntropySource()
    for kind, size in sizes.items():
        results.append(case(f"os.urandom {kind}", size, lambda n=size: os.urandom(n), counts[kind]))
        results.append(
            case(f"system {kind}", size, lambda n=size: system.get_random_bytes(n), counts[kind])
        )
    with tempfile.TemporaryDirectory() as tmp:
        for transport, bind in {"tcp": "127.0.0.1:0", "unix": f"unix://{tmp}/e.sock"}.items():
            with urandom_server(bind) as address:
                for mode in MODES:
                    settings = GrpcSourceSettings(server_address=address, mode=mode)
                    with GrpcEntropySource(settings, CircuitBreakerSettings()) as source:
                        for kind, size in sizes.items():
                            results.append(
                                case(
                                    f"grpc {transport} {mode} {kind}",
                                    size,
                                    lambda n=size, s=source: s.get_random_bytes(n),
                                    counts[kind],
                                )
                            )

    floor = {r["bytes"]: r["median_ms"] for r in results if r["case"].startswith("os.urandom")}
    for row in results:
        row["vs_os_urandom"] = round(row["median_ms"] / floor[row["bytes"]], 2)
    print(f"{'case':<36}{'bytes':>9}{'p50 ms':>9}{'p99 ms':>9}{'MB/s':>8}{'x urandom':>11}")
    for row in results:
        print(
            f"{row['case']:<36}{row['bytes']:>9}{row['median_ms']:>9.3f}{row['p99_ms']:>9.3f}"
            f"{row['mb_per_s']:>8.0f}{row['vs_os_urandom']:>11.2f}"
        )
    print(f"results: {write_results('entropy_fetch', {'cases': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
