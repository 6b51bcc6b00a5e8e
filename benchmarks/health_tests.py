"""What the continuous health tests cost next to fetching the bytes they test.

A whole-batch draw (64 x 20,480 bytes by default): the ``system`` source's fetch and
the SP 800-90B tests over the bytes it delivered, alternated step by step so a
noisy neighbour slows both alike. Target: tests under 10% of the fetch.

    python benchmarks/health_tests.py [--draws 300] [--batch 64]
"""

from __future__ import annotations

import argparse
import statistics

from common import summary, time_pairs_ms, write_results

from qr_sampler import SystemEntropySource
from qr_sampler.entropy.health import HealthCutoffs, HealthTests

TOKEN_BYTES = 20480


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=300, help="timed draws per case")
    parser.add_argument("--batch", type=int, default=64, help="rows per draw")
    args = parser.parse_args()
    size = args.batch * TOKEN_BYTES
    source = SystemEntropySource()
    cutoffs = HealthCutoffs.for_min_entropy(7.0)
    tests = HealthTests(cutoffs)
    # Each check tests the bytes the fetch before it delivered, as a draw does.
    fetched = [b""]

    def fetch_bytes() -> None:
        fetched[0] = source.get_random_bytes(size)

    fetch, check = time_pairs_ms(
        fetch_bytes, lambda: tests.check(fetched[0]), args.draws, warmup=20
    )
    ratio = statistics.median(check) / statistics.median(fetch)
    results = {
        "bytes": size,
        "min_entropy": cutoffs.min_entropy,
        "repetition_cutoff": cutoffs.repetition,
        "proportion_cutoff": cutoffs.proportion,
        "system_fetch": summary(fetch),
        "health_tests": summary(check),
        "ratio_of_medians": round(ratio, 4),
    }
    path = write_results("health_tests", results)
    print(
        f"{size:,} bytes: system fetch p50 {results['system_fetch']['median_ms']} ms, "
        f"health tests p50 {results['health_tests']['median_ms']} ms, "
        f"ratio {ratio:.1%} (target < 10%); written to {path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
