"""``qr-sampler analyze`` on a million records: wall time and peak memory.

Writes RECORDS synthetic records shaped like the sampler's (every field, four tags),
then runs the command in a child process and reads its peak resident set size.
Usage: python benchmarks/analyze_records.py [RECORDS]
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import write_results

FIELDS = (
    '{{"step":{step},"row":{row},"u":{u!r},"z_score":{z!r},"sample_mean":{mean!r},'
    '"sample_count":20480,"token_id":{token},"token_rank":{rank},"token_prob":{prob!r},'
    '"num_candidates":151936,"temperature":0.7,"shannon_entropy":2.5,'
    '"entropy_source":"system","fallback":false,"fetch_ms":{fetch!r},"total_ms":3.0,'
    '"config_hash":"0123456789abcdef","tag":"arm{row}","request_id":"1f2e3d-{row}",'
    '"position":{step},"entropy_sha256":"{sha}","bytes_offset":{offset},'
    '"signal_amplifier_type":"zscore_mean","population_mean":127.5,'
    '"population_std":73.90027063549903,"uniform_clamp_epsilon":1e-10}}\n'
)


def write_records(path: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    std = math.sqrt((256**2 - 1) / 12)
    with path.open("w") as out:
        for start in range(0, count, 100_000):
            n = min(100_000, count - start)
            z = rng.standard_normal(n)
            u = 0.5 * np.vectorize(math.erfc)(-z / math.sqrt(2))
            ranks = rng.geometric(0.4, n) - 1
            out.write(
                "".join(
                    FIELDS.format(
                        step=(start + i) // 4,
                        row=(start + i) % 4,
                        u=float(u[i]),
                        z=float(z[i]),
                        mean=127.5 + float(z[i]) * std / math.sqrt(20480),
                        token=int(i % 151936),
                        rank=int(ranks[i]),
                        prob=0.6 ** (int(ranks[i]) + 1),
                        fetch=1.0 + (i % 7) / 10,
                        sha="ab" * 32,
                        offset=(start + i) * 20480,
                    )
                    for i in range(n)
                )
            )


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as folder:
        records = Path(folder) / "records.jsonl"
        write_records(records, count)
        size_mb = records.stat().st_size / 1e6
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "qr_sampler.cli.main",
                "analyze",
                str(records),
                "--by",
                "tag",
                "--out",
                str(Path(folder) / "out"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
    result = {
        "records": count,
        "file_mb": round(size_mb, 1),
        "seconds": round(seconds, 1),
        "records_per_second": round(count / seconds),
        "peak_rss_mb": round(peak_mb, 1),
    }
    print(json.dumps(result))
    write_results("analyze_records", result)


if __name__ == "__main__":
    main()
