"""What the hash chain and signing cost per engine step, and what records weigh.

Per step, on the records thread, the sink turns the step's records into lines and
appends them. Timed here, interleaved step by step on the same records: the write as
it was before chaining (JSON lines appended), the chained write (each line linked to
the one before, a chain head after every step, QR_CHAIN_HEAD_INTERVAL_S=0) and the
chained write with Ed25519 signing of every head. Costs are ratios to the plain write
in the same run, for 1, 8 and 64 records a step. Sizes: bytes per record line, the
link's share of it, and the heads' bytes per step.
Usage: python benchmarks/record_chain.py [STEPS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import summary, time_interleaved_ms, write_results

from qr_sampler.records.chain import ChainWriter
from qr_sampler.records.record_file import RecordFile
from qr_sampler.records.signing import Signer, write_key_pair
from qr_sampler.records.token_record import TokenRecord

BATCHES = (1, 8, 64)


def record(row: int, step: int) -> TokenRecord:
    """A record with every field set as the sampler sets it."""
    return TokenRecord(
        step=step, row=row, u=0.318309886183791, z_score=-0.4728, sample_mean=127.26,
        sample_count=20480, token_id=15043, token_rank=2, token_prob=0.0871,
        num_candidates=151936, temperature=0.7, shannon_entropy=3.21,
        entropy_source="quantum_grpc", fallback=False, fetch_ms=1.92, total_ms=4.1,
        config_hash="5d41402abc4b2a76", tag="experiment-7", request_id="dp0-1a2b3c4d5e-17",
        position=step, entropy_sha256="9f86d081884c7d65" * 4,
        bytes_offset=step * 20480 * 64 + row * 20480, signal_amplifier_type="zscore_mean",
        population_mean=127.5, population_std=73.90027063549903, uniform_clamp_epsilon=1e-10,
        arm="qrng", cdf_low=0.2712, entropy_server="qrng-0@10.0.0.7:50051",
        device_id="firefly-1", device_timestamp=1754000000123,
    )  # fmt: skip


def measure(batch: int, steps: int, work: Path, signer: Signer) -> dict[str, Any]:
    """Timings and sizes of the three ways of writing ``batch`` records a step."""
    plain = RecordFile(str(work / f"plain-{batch}.jsonl"))
    chained_path, signed_path = work / f"chained-{batch}.jsonl", work / f"signed-{batch}.jsonl"
    chained_file, signed_file = RecordFile(str(chained_path)), RecordFile(str(signed_path))
    chain = ChainWriter(str(chained_path), None, 0.0)
    signed = ChainWriter(str(signed_path), signer, 0.0)
    chain.begin({"kind": "benchmark"})
    signed.begin({"kind": "benchmark"})
    counter = iter(range(10**9))
    jsons: list[str] = []

    def prepare() -> None:
        step = next(counter)
        jsons[:] = [record(row, step).to_json() for row in range(batch)]

    def write_plain() -> None:
        plain.append("".join(line + "\n" for line in jsons))

    def write_chained(file: RecordFile, writer: ChainWriter) -> None:
        text, head = writer.link(jsons)
        file.append(text)
        writer.appended(head, len(jsons))
        writer.write_head(due=True)

    warmup = 20
    timings = time_interleaved_ms(
        [
            write_plain,
            lambda: write_chained(chained_file, chain),
            lambda: write_chained(signed_file, signed),
        ],
        steps,
        warmup=warmup,
        prepare=prepare,
    )
    for handle in (plain, chained_file, signed_file):
        handle.close()
    chain.close()
    signed.close()
    base, linked, signing = (summary(samples) for samples in timings)
    # From the raw medians: summary() rounds to the microsecond, too coarse for a ratio.
    medians = [statistics.median(samples) for samples in timings]
    written = steps + warmup
    # Each writer wrote `written` steps (close adds no head: none came since the last).
    record_bytes = os.path.getsize(chained_path) / (written * batch)
    plain_bytes = os.path.getsize(work / f"plain-{batch}.jsonl") / (written * batch)
    return {
        "plain_ms": base,
        "chained_ms": linked,
        "signed_ms": signing,
        "plain_median_us": medians[0] * 1000,
        "chained_over_plain": medians[1] / medians[0],
        "signed_over_plain": medians[2] / medians[0],
        "record_bytes": record_bytes,
        "link_bytes_per_record": record_bytes - plain_bytes,
        "head_bytes_per_step": os.path.getsize(str(chained_path) + ".heads") / written,
        "signed_head_bytes_per_step": os.path.getsize(str(signed_path) + ".heads") / written,
        "manifest_bytes": os.path.getsize(str(chained_path) + ".manifest"),
    }


def main(steps: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="qr-chain-bench-"))
    private, _ = write_key_pair(str(work / "bench"))
    signer = Signer.from_file(private)
    batches = {}
    for batch in BATCHES:
        row = measure(batch, steps, work, signer)
        batches[str(batch)] = row
        print(
            f"{batch:3d} records/step: plain {row['plain_median_us']:7.1f} us, "
            f"chained x{row['chained_over_plain']:.2f}, "
            f"signed x{row['signed_over_plain']:.2f}; {row['record_bytes']:.0f} B/record "
            f"({row['link_bytes_per_record']:.0f} B link), heads "
            f"{row['head_bytes_per_step']:.0f} B/step ({row['signed_head_bytes_per_step']:.0f} "
            "signed)"
        )
    print(f"results: {write_results('record_chain', {'steps': steps, 'batches': batches})}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
