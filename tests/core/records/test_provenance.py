"""Records that identify their token, the bytes archive, verify and replay, through the
real sampler writing real files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from qr_sampler.cli.main import main
from qr_sampler.entropy.base import EntropySource
from qr_sampler.entropy.replay import ReplayEntropySource, ReplaySettings
from qr_sampler.errors import ConfigValidationError, EntropyUnavailableError
from qr_sampler.records.provenance import Origin, RequestIds, sha256_hex
from qr_sampler.records.sink import RecordSink, StepRecords
from qr_sampler.records.token_record import ended_record
from qr_sampler.records.verify import verify
from qr_sampler.sampling.sampler import QRSampler
from qr_sampler.settings.config import QRSamplerConfig
from qr_sampler.testing import EntropySourceConformance

VOCAB = 300
STEPS = 6


def sampler_for(tmp_path: Path, **settings: str) -> QRSampler:
    return QRSampler(QRSamplerConfig.load(env_file=str(tmp_path / "absent.env"), **settings))


def run(
    sampler: QRSampler, requests: list[dict[str, object]], steps: int = STEPS
) -> list[list[int]]:
    """Admit the requests in slot order, then sample ``steps`` steps of seeded logits;
    returns the tokens per step. Each request's output list grows as vLLM's does."""
    outputs: list[list[int]] = [[] for _ in requests]
    for slot, extra in enumerate(requests):
        sampler.admit(slot, sampler.resolve(extra), outputs[slot])
    generator = torch.Generator().manual_seed(1234)
    emitted = []
    for _ in range(steps):
        logits = torch.randn(len(requests), VOCAB, generator=generator) * 2
        tokens = (sampler.sample(logits, np.arange(len(requests))) == 0).int().argmax(-1).tolist()
        for output, token in zip(outputs, tokens, strict=True):
            output.append(token)
        emitted.append(tokens)
    sampler.close()
    return emitted


def records_of(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


REQUESTS: list[dict[str, object]] = [
    {"qr_tag": "a"},
    {"qr_sample_count": "333", "qr_top_k": 5},
    {"qr_population_std": "70.5", "qr_temperature_strategy": "edt"},
]


@pytest.fixture
def honest(tmp_path: Path) -> tuple[Path, Path, list[list[int]]]:
    log, archive = tmp_path / "tokens.jsonl", tmp_path / "bytes.bin"
    tokens = run(sampler_for(tmp_path, log_path=str(log), bytes_path=str(archive)), REQUESTS)
    return log, archive, tokens


def test_records_carry_request_position_hash_and_amplifier(honest):
    log, archive, tokens = honest
    records = records_of(log)
    assert len(records) == STEPS * len(REQUESTS)
    by_request: dict[object, list[dict[str, object]]] = {}
    for record in records:
        by_request.setdefault(record["request_id"], []).append(record)
    assert len(by_request) == len(REQUESTS)
    for slot, group in enumerate(by_request.values()):
        assert [r["position"] for r in group] == list(range(STEPS))
        assert [r["token_id"] for r in group] == [step[slot] for step in tokens]
    data = archive.read_bytes()
    counts = [20480, 333, 20480]
    assert len(data) == STEPS * sum(counts)
    for record in records:
        start = record["bytes_offset"]
        assert isinstance(start, int)
        chunk = data[start : start + int(record["sample_count"])]
        assert record["entropy_sha256"] == sha256_hex(chunk)
        assert record["signal_amplifier_type"] == "zscore_mean"
    assert records[2]["population_std"] == 70.5
    assert records[0]["uniform_clamp_epsilon"] == 1e-10


def test_request_ids_differ_between_processes_and_count_admissions():
    first, second = RequestIds(), RequestIds()
    assert first.prefix != second.prefix
    assert [first.new(), first.new()] == [f"{first.prefix}-0", f"{first.prefix}-1"]


def test_positions_follow_the_engine_output_list_or_are_counted():
    output = [5, -1]  # vLLM's list holds a placeholder for a token still in flight
    live = Origin("r", output)
    assert live.next_position() == 2
    output.append(9)
    assert live.next_position() == 3
    counted = Origin("s")
    assert [counted.next_position() for _ in range(3)] == [0, 1, 2]


def test_engine_positions_win_and_tokens_outside_an_adapter_have_no_request(tmp_path):
    log = tmp_path / "tokens.jsonl"
    sampler = sampler_for(tmp_path, log_path=str(log))
    sampler.table.put(0, sampler.defaults)
    sampler.admit(1, sampler.defaults)
    sampler.sample(torch.randn(2, VOCAB), np.arange(2), positions=np.array([7, 11]))
    sampler.sample(torch.randn(2, VOCAB), np.arange(2))
    sampler.close()
    records = records_of(log)
    assert [(r["request_id"] is None, r["position"]) for r in records] == [
        (True, 7),
        (False, 11),
        (True, None),
        (False, 0),
    ]
    assert all(r["bytes_offset"] is None for r in records)


def test_verify_passes_an_honest_run(honest, capsys):
    log, archive, _ = honest
    report = verify(str(log), str(archive))
    assert (report.checked, report.mismatches, report.unchecked) == (STEPS * 3, [], 0)
    assert main(["verify", str(log), "--bytes", str(archive)]) == 0
    assert "checked 18 record(s)" in capsys.readouterr().out
    assert main(["verify", str(log)]) == 0


def test_verify_catches_one_flipped_archive_byte(honest, capsys):
    log, archive, _ = honest
    records = records_of(log)
    target = records[7]
    data = bytearray(archive.read_bytes())
    data[int(target["bytes_offset"]) + 100] ^= 0x01  # type: ignore[call-overload]
    archive.write_bytes(bytes(data))
    assert main(["verify", str(log), "--bytes", str(archive)]) == 1
    out = capsys.readouterr().out
    mismatches = verify(str(log), str(archive)).mismatches
    # One bit moves the sum by one: the hash and the mean (and so z and u) all disagree.
    assert {(m.line, m.field) for m in mismatches} == {
        (8, "entropy_sha256"),
        (8, "sample_mean"),
        (8, "z_score"),
        (8, "u"),
    }
    assert "line 8: entropy_sha256: expected " in out


def test_verify_catches_one_edited_u_with_and_without_the_bytes(honest, capsys):
    log, archive, _ = honest
    lines = log.read_text().splitlines()
    record = json.loads(lines[4])
    original = record["u"]
    record["u"] = original + 1e-9
    lines[4] = json.dumps(record)
    log.write_text("\n".join(lines) + "\n")
    for bytes_file in (str(archive), None):
        (mismatch,) = verify(str(log), bytes_file).mismatches
        assert (mismatch.line, mismatch.field) == (5, "u")
        assert mismatch.expected == repr(original)
        assert mismatch.found == repr(original + 1e-9)
    assert main(["verify", str(log)]) == 1
    assert f"line 5: u: expected {original!r}" in capsys.readouterr().out


def test_verify_reports_records_it_cannot_check(honest, tmp_path, capsys):
    log, archive, _ = honest
    good = records_of(log)[0]
    bad_lines = [
        "{not json",
        "[1, 2]",
        json.dumps({**good, "u": None}),
        json.dumps({**good, "signal_amplifier_type": "nope"}),
        json.dumps({**good, "bytes_offset": None}),
        json.dumps({**good, "bytes_offset": archive.stat().st_size - 10}),
        "",
    ]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(bad_lines) + "\n")
    found = [(m.line, m.field) for m in verify(str(broken), str(archive)).mismatches]
    assert found == [
        (1, "(line)"),
        (2, "(line)"),
        (3, "u"),
        (4, "signal_amplifier_type"),
        (5, "bytes_offset"),
        (6, "bytes_offset"),
    ]
    assert main(["verify", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_verify_says_in_words_what_a_line_that_is_no_record_is(honest, tmp_path, capsys):
    log, archive, _ = honest
    broken = tmp_path / "broken.jsonl"
    broken.write_text("Traceback (most recent call last):\n[1, 2]\n" + log.read_text())
    assert main(["verify", str(broken), "--bytes", str(archive)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "line 1: (line): expected a JSON record, found text that is not JSON (expecting "
        "value at column 1: 'Traceback (most recent call last):'); a records file holds "
        "one JSON object per line"
    )
    assert out[1] == "line 2: (line): expected a JSON record (an object), found a JSON array"


def test_verify_against_a_short_archive_summarizes_after_the_first_mismatches(
    honest, tmp_path, capsys
):
    log, archive, _ = honest
    short = tmp_path / "short.bytes"
    first = records_of(log)[0]
    # Only the first record's bytes: every later record points past the end.
    short.write_bytes(archive.read_bytes()[: int(first["sample_count"])])  # type: ignore[call-overload]
    assert main(["verify", str(log), "--bytes", str(short), "--show", "3"]) == 1
    out = capsys.readouterr().out.splitlines()
    later = STEPS * 3 - 1
    assert len(out) == 3 + 4
    assert out[0].startswith("line 2: bytes_offset: expected bytes ")
    assert out[0].endswith(
        f"in the archive, found an archive of {short.stat().st_size} bytes (cut short, or "
        "not this run's QR_BYTES_PATH?)"
    )
    assert out[3] == f"... and {later - 3} more (--show 0 prints them all)"
    assert out[4] == f"mismatches by field: bytes_offset {later}"
    assert out[5].startswith(f"checked {STEPS * 3} record(s) against {short}: {later} mismatch")
    assert out[6] == f"chain: {STEPS * 3} record(s) linked in 1 run(s), {STEPS} head(s)"
    # The default shows 20; --show 0 shows every one.
    assert main(["verify", str(log), "--bytes", str(short), "--show", "0"]) == 1
    assert capsys.readouterr().out.count("bytes_offset: expected") == later


def test_verify_without_bytes_skips_amplifiers_that_need_them(honest, install_plugin):
    install_plugin(
        "opaque",
        code="""
        from qr_sampler import hookimpl
        from qr_sampler.entropy.amplification import ZScoreMeanAmplifier

        class Opaque:
            def amplify(self, data, offsets, counts, params):
                return ZScoreMeanAmplifier().amplify(data, offsets, counts, params)

        @hookimpl
        def register_amplifiers(register):
            register("opaque", Opaque())
        """,
    )
    log, archive, _ = honest
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    log.write_text(
        "".join(json.dumps({**r, "signal_amplifier_type": "opaque"}) + "\n" for r in lines)
    )
    report = verify(str(log))
    assert (report.checked, report.unchecked) == (0, len(lines))
    assert verify(str(log), str(archive)).checked == len(lines)


def test_replay_reproduces_the_tokens_and_u_exactly(honest, tmp_path, monkeypatch):
    log, archive, tokens = honest
    monkeypatch.setenv("QR_REPLAY_PATH", str(archive))
    replay_log = tmp_path / "replayed.jsonl"
    replayed = sampler_for(
        tmp_path, entropy_source_type="replay", fallback_mode="error", log_path=str(replay_log)
    )
    assert run(replayed, REQUESTS) == tokens
    keys = ("u", "z_score", "sample_mean", "token_id", "entropy_sha256", "position")
    original, again = records_of(log), records_of(replay_log)
    assert [[r[k] for k in keys] for r in again] == [[r[k] for k in keys] for r in original]
    assert all(r["entropy_source"] == "replay" and not r["fallback"] for r in again)

    # One step more than was archived: a strict replay fails instead of inventing bytes.
    exhausted = sampler_for(tmp_path, entropy_source_type="replay", fallback_mode="error")
    with pytest.raises(EntropyUnavailableError, match="exhausted"):
        run(exhausted, REQUESTS, steps=STEPS + 1)


def test_an_unwritable_archive_is_logged_once_and_sampling_goes_on(tmp_path, caplog):
    log = tmp_path / "tokens.jsonl"
    sampler = sampler_for(tmp_path, log_path=str(log), bytes_path=str(tmp_path / "no" / "dir.bin"))
    run(sampler, REQUESTS[:1], steps=2)
    assert [r["bytes_offset"] for r in records_of(log)] == [None, None]
    assert caplog.text.count("cannot write the entropy archive") == 1


def test_replay_settings_errors_say_what_to_set(tmp_path):
    with pytest.raises(ConfigValidationError, match="QR_REPLAY_PATH is empty"):
        ReplayEntropySource(ReplaySettings.load(env_file=str(tmp_path / "absent.env")))
    with pytest.raises(ConfigValidationError, match="cannot be read"):
        ReplayEntropySource(ReplaySettings(path=str(tmp_path / "missing.bin")))


def test_replay_health_and_exhaustion_consume_nothing(tmp_path):
    path = tmp_path / "bytes.bin"
    path.write_bytes(bytes(range(10)))
    with ReplayEntropySource(ReplaySettings(path=str(path))) as source:
        assert source.get_random_bytes(4) == bytes(range(4))
        with pytest.raises(EntropyUnavailableError, match="7 bytes asked for at offset 4, 6 left"):
            source.get_random_bytes(7)
        assert source.get_random_bytes(6) == bytes(range(4, 10))
        assert source.health_check() == {
            "source": "replay",
            "healthy": False,
            "path": str(path),
            "offset": 10,
            "bytes_left": 0,
        }


@pytest.fixture(scope="module")
def random_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough bytes for every conformance check of one test (the large draw is 5 MiB)."""
    path = tmp_path_factory.mktemp("replay") / "bytes.bin"
    path.write_bytes(
        np.random.default_rng(2026).integers(0, 256, 12 << 20, dtype=np.uint8).tobytes()
    )
    return path


class TestReplayConformance(EntropySourceConformance):
    @pytest.fixture
    def source(self, random_archive: Path) -> Iterator[EntropySource]:
        with ReplayEntropySource(ReplaySettings(path=str(random_archive))) as source:
            yield source

    @pytest.fixture
    def unavailable_source(self, tmp_path: Path) -> EntropySource:
        empty = tmp_path / "empty.bin"
        empty.write_bytes(b"")
        return ReplayEntropySource(ReplaySettings(path=str(empty)))


def test_verify_counts_tokens_strict_mode_ended_without_checking_them(honest, capsys):
    log, archive, _ = honest
    options = QRSamplerConfig.load(env_file="absent.env").sampling_options()
    ended = ended_record(
        STEPS + 1, 0, 2, options, EntropyUnavailableError("source down"), "r-1", STEPS, "system"
    )
    # Written as the engine writes it: a run of its own, chained on to the first.
    sink = RecordSink(str(log))
    sink.begin_run({"kind": "test run"})
    sink.write_step(StepRecords.ready([ended], [options]))
    sink.close()
    report = verify(str(log), str(archive))
    assert (report.checked, report.ended, report.mismatches) == (STEPS * 3, 1, [])
    assert main(["verify", str(log), "--bytes", str(archive)]) == 0
    assert "1 ended a request in strict mode" in capsys.readouterr().out
