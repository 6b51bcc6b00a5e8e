"""Replay by records (``QR_REPLAY_RECORDS``): every token of a run gets back the bytes
that chose it, whatever batches the replay runs in: the real sampler, records file
and bytes archive, with logits that depend only on the request and the position."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from qr_sampler.entropy.replay import ReplayEntropySource, ReplaySettings
from qr_sampler.errors import ConfigValidationError, EntropyUnavailableError
from qr_sampler.sampling.sampler import QRSampler
from qr_sampler.settings.config import QRSamplerConfig

TAGS = ("w", "x", "y", "z")
VOCAB = 48
TOKENS = 5
#: Four concurrent requests; "x" is preempted for two steps and resumed.
RUN_STEPS = [TAGS, ("w", "y", "z"), ("w", "y", "z"), TAGS, TAGS, ("x",), ("x",)]


def logits_for(tag: str, position: int) -> torch.Tensor:
    """The same logits for a request's position in any batch, as a model would give."""
    generator = torch.Generator().manual_seed(ord(tag[0]) * 1000 + position)
    return torch.randn(VOCAB, generator=generator) * 2


def run(
    tmp_path: Path,
    steps: list[tuple[str, ...]],
    admitted: tuple[str, ...],
    records: Path,
    options: dict[str, object] | None = None,
    **settings: str,
) -> dict[str, list[int]]:
    """Admit the requests in ``admitted`` order, run ``steps`` (tags per step) and
    return each request's tokens; records go to ``records``."""
    config = QRSamplerConfig.load(
        env_file=str(tmp_path / "absent.env"), log_path=str(records), **settings
    )
    sampler = QRSampler(config)
    outputs: dict[str, list[int]] = {tag: [] for tag in admitted}
    for slot, tag in enumerate(admitted):
        extra = {"qr_tag": tag, **(options or {})}
        sampler.admit(slot, sampler.resolve(extra), outputs[tag])
    slot_of = {tag: slot for slot, tag in enumerate(admitted)}
    for batch in steps:
        logits = torch.stack([logits_for(tag, len(outputs[tag])) for tag in batch])
        forced = sampler.sample(logits, np.array([slot_of[tag] for tag in batch]))
        for tag, row in zip(batch, forced, strict=True):
            outputs[tag].append(int(row.argmax()))
    sampler.close()
    return outputs


def read(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def original_run(tmp_path: Path, **settings: str) -> tuple[dict[str, list[int]], Path, Path]:
    """The run's tokens by tag, its records and its archive (their first parts)."""
    records, archive = tmp_path / "run.jsonl", tmp_path / "run.bin"
    tokens = run(
        tmp_path, RUN_STEPS, TAGS, records, bytes_path=str(archive), sample_count="64", **settings
    )
    assert all(len(t) == TOKENS for t in tokens.values())
    return tokens, records, archive


def replayed_one_at_a_time(tmp_path: Path) -> dict[str, list[int]]:
    """The replay's tokens: admitted the other way round, one request at a time, so
    no step is like the run's; its records go to ``replay.jsonl``."""
    admitted = tuple(reversed(TAGS))
    return run(
        tmp_path,
        [(tag,) for tag in admitted for _ in range(TOKENS)],
        admitted,
        tmp_path / "replay.jsonl",
        entropy_source_type="replay",
        fallback_mode="error",
        sample_count="64",
    )


@pytest.fixture
def original(tmp_path: Path) -> tuple[dict[str, list[int]], Path, Path]:
    """A multi-arm run under random assignment, with a preemption."""
    run_of = original_run(
        tmp_path, arms="a=system,b=prng,c=system,d=prng", arm_assignment="random", arm_seed="5"
    )
    assert len({r["arm"] for r in read(run_of[1])}) > 1, "choose a seed that uses several arms"
    return run_of


def replay_settings(records: Path, archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QR_REPLAY_PATH", str(archive))
    monkeypatch.setenv("QR_REPLAY_RECORDS", str(records))


def test_every_request_gets_its_tokens_back_in_other_batches(tmp_path, original, monkeypatch):
    tokens, records, archive = original
    replay_settings(records, archive, monkeypatch)
    assert replayed_one_at_a_time(tmp_path) == tokens
    replay_records = tmp_path / "replay.jsonl"
    # Each replayed request took over its run's request id: records line up.
    key = ("request_id", "position", "token_id", "u", "entropy_sha256", "tag")
    before = sorted(tuple(r[k] for k in key) for r in read(records))
    after = sorted(tuple(r[k] for k in key) for r in read(replay_records))
    assert after == before
    assert {r["entropy_source"] for r in read(replay_records)} == {"replay"}


def test_untagged_requests_pair_in_the_order_the_run_first_recorded_them(tmp_path, monkeypatch):
    records, archive = tmp_path / "run.jsonl", tmp_path / "run.bin"
    sequential = [(tag,) for tag in ("w", "x") for _ in range(TOKENS)]

    def untagged(records_path: Path, **settings: str) -> list[list[int]]:
        # Same tag for both ("" as no qr_tag gives); logits still tell them apart.
        config = QRSamplerConfig.load(
            env_file=str(tmp_path / "absent.env"), log_path=str(records_path), **settings
        )
        sampler = QRSampler(config)
        outputs: dict[str, list[int]] = {"w": [], "x": []}
        for slot, tag in enumerate(outputs):
            sampler.admit(slot, sampler.resolve({}), outputs[tag])
        for (tag,) in sequential:
            logits = logits_for(tag, len(outputs[tag]))[None]
            forced = sampler.sample(logits, np.array([list(outputs).index(tag)]))
            outputs[tag].append(int(forced[0].argmax()))
        sampler.close()
        return list(outputs.values())

    first = untagged(records, bytes_path=str(archive), sample_count="32")
    replay_settings(records, archive, monkeypatch)
    again = untagged(
        tmp_path / "replay.jsonl",
        entropy_source_type="replay",
        fallback_mode="error",
        sample_count="32",
    )
    assert again == first


def strict_replay(tmp_path: Path, records: Path, **settings: str) -> QRSampler:
    config = QRSamplerConfig.load(
        env_file=str(tmp_path / "absent.env"),
        entropy_source_type="replay",
        fallback_mode="error",
        strict_wait_s="0",
        **settings,
    )
    return QRSampler(config)


def test_a_request_the_run_did_not_have_gets_no_bytes(tmp_path, original, monkeypatch):
    _, records, archive = original
    replay_settings(records, archive, monkeypatch)
    sampler = strict_replay(tmp_path, records, sample_count="64")
    sampler.admit(0, sampler.resolve({"qr_tag": "stranger"}), [])
    with pytest.raises(EntropyUnavailableError, match="hold no drawn token for request"):
        sampler.sample(logits_for("w", 0)[None], np.array([0]))
    sampler.close()


def test_a_longer_request_or_other_settings_are_named(tmp_path, original, monkeypatch):
    _, records, archive = original
    replay_settings(records, archive, monkeypatch)
    sampler = strict_replay(tmp_path, records, sample_count="64")
    output = [1] * TOKENS  # past the run's last token of "w"
    sampler.admit(0, sampler.resolve({"qr_tag": "w"}), output)
    with pytest.raises(EntropyUnavailableError, match="at position 5"):
        sampler.sample(logits_for("w", TOKENS)[None], np.array([0]))
    sampler.admit(1, sampler.resolve({"qr_tag": "x", "qr_sample_count": 32}), [])
    with pytest.raises(EntropyUnavailableError, match="draws 32 bytes, the run drew 64"):
        sampler.sample(logits_for("x", 0)[None], np.array([1]))
    sampler.close()


def test_an_archive_that_does_not_match_the_records_is_refused(tmp_path, original, monkeypatch):
    _, records, archive = original
    damaged = bytearray(archive.read_bytes())
    first = read(records)[0]
    damaged[int(first["bytes_offset"])] ^= 0xFF  # type: ignore[call-overload]
    archive.write_bytes(bytes(damaged))
    replay_settings(records, archive, monkeypatch)
    sampler = strict_replay(tmp_path, records, sample_count="64")
    sampler.admit(0, sampler.resolve({"qr_tag": str(first["tag"])}), [])
    with pytest.raises(EntropyUnavailableError, match="not the ones its record hashed"):
        sampler.sample(logits_for(str(first["tag"]), 0)[None], np.array([0]))
    sampler.close()


def test_the_source_by_records_serves_no_bytes_in_archive_order(tmp_path, original):
    _, records, archive = original
    source = ReplayEntropySource(ReplaySettings(path=str(archive), records=str(records)))
    with pytest.raises(EntropyUnavailableError, match="only to the tokens that drew them"):
        source.get_random_bytes(8)
    assert source.get_random_bytes(0) == b""
    health = source.health_check()
    assert health["requests_left"] == len(TAGS)
    assert health["records"] == str(records)
    source.close()
    source.close()


def test_records_that_are_not_an_engine_runs_are_refused_at_start(tmp_path, original):
    _, records, archive = original
    bad = tmp_path / "bad.jsonl"
    bad.write_text(records.read_text().splitlines()[0] + "\nnot json\n")
    with pytest.raises(ConfigValidationError, match="line 2: not a token record"):
        ReplayEntropySource(ReplaySettings(path=str(archive), records=str(bad)))
    with pytest.raises(ConfigValidationError, match=r"QR_REPLAY_RECORDS=.*cannot be read"):
        ReplayEntropySource(ReplaySettings(path=str(archive), records=str(tmp_path / "none")))


def test_a_rotated_run_replays_from_its_parts(tmp_path, monkeypatch):
    """Records and archive in parts (QR_LOG_ROTATE_MB): each part's offsets count from
    its own archive part, and the replay takes the parts, paired, in order."""
    tokens, records, archive = original_run(tmp_path, log_rotate_mb="0.004")
    record_parts = [records, *sorted(tmp_path.glob("run.part*.jsonl"))]
    archive_parts = [archive, *sorted(tmp_path.glob("run.part*.bin"))]
    assert len(record_parts) == len(archive_parts) > 2
    monkeypatch.setenv("QR_REPLAY_PATH", ",".join(map(str, archive_parts)))
    monkeypatch.setenv("QR_REPLAY_RECORDS", ",".join(map(str, record_parts)))
    assert replayed_one_at_a_time(tmp_path) == tokens
    # Parts and archives that do not pair up are refused at start.
    monkeypatch.setenv("QR_REPLAY_PATH", str(archive))
    with pytest.raises(ConfigValidationError, match="give each records part its archive part"):
        ReplayEntropySource()
