"""Records wait until the engine shows it kept the token (vLLM's V1 runner)."""

from __future__ import annotations

import json

from qr_sampler import SamplingOptions
from qr_sampler.engine.emission import EmissionGate
from qr_sampler.records.sink import RecordSink, StepRecords
from qr_sampler.records.token_record import TokenRecord


def record(row: int, token_id: int, position: int) -> TokenRecord:
    return TokenRecord(
        step=1, row=row, u=0.5, z_score=0.0, sample_mean=127.5, sample_count=8,
        token_id=token_id, token_rank=0, token_prob=0.5, num_candidates=2, temperature=0.7,
        shannon_entropy=0.69, entropy_source="system", fallback=False, fetch_ms=0.1,
        total_ms=0.2, config_hash="abc", tag="", request_id=f"r-{row}", position=position,
        entropy_sha256="00" * 32, bytes_offset=None, signal_amplifier_type="zscore_mean",
        population_mean=127.5, population_std=73.9, uniform_clamp_epsilon=1e-10,
    )  # fmt: skip


def test_only_tokens_the_engine_booked_are_written_with_their_position():
    written: list[StepRecords] = []
    decoding, prefilling, placeholder = [5, 6], [], [7]
    outputs = {0: decoding, 1: prefilling, 2: placeholder}
    gate = EmissionGate(written.append, outputs.__getitem__)
    # Each record's position is its request's output length when it was sampled.
    held = [record(0, 9, 2), record(1, 3, 0), record(2, 4, 1)]
    full, quiet = SamplingOptions(log_level="full"), SamplingOptions()
    gate.hold(StepRecords.ready(held, [full, quiet, quiet]))
    assert written == []  # nothing before the engine books the step

    decoding.append(9)  # kept; row 1 was a prefill chunk, its sample dropped
    placeholder.append(-1)  # async scheduling books a placeholder first
    gate.settle()
    (step,) = written
    assert step.kept == [True, False, True]
    kept = [r for r, k in zip(step.build(), step.kept, strict=True) if k and r is not None]
    assert [(r.row, r.position) for r in kept] == [(0, 2), (2, 1)]
    assert gate.dropped == 1

    gate.settle()  # nothing held: nothing written
    assert len(written) == 1


def test_a_sink_writes_only_the_kept_rows_of_a_step(tmp_path):
    sink = RecordSink(str(tmp_path / "r.jsonl"))
    kept_in_memory = SamplingOptions(diagnostic_mode=True)
    step = StepRecords.ready([record(0, 9, 2), record(1, 3, 0)], [kept_in_memory] * 2)
    step.kept = [False, True]
    sink.write_step(step)
    assert [(r.row, r.token_id) for r in sink.recent()] == [(1, 3)]
    sink.close()
    assert [
        json.loads(line)["row"] for line in (tmp_path / "r.jsonl").read_text().splitlines()
    ] == [1]
