"""uniform_bits: u from 7 bytes, exactly uniform; its option check, records, verify, replay."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from qr_sampler.entropy.amplification import UniformBitsAmplifier
from qr_sampler.errors import ConfigValidationError
from qr_sampler.plugins.registered import unregistered_names
from qr_sampler.plugins.registry import get_registry
from qr_sampler.records.verify import verify
from qr_sampler.sampling.sampler import QRSampler
from qr_sampler.settings.config import QRSamplerConfig


def amplify(rows: list[bytes]):
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    data = np.frombuffer(b"".join(rows), dtype=np.uint8)
    return UniformBitsAmplifier().amplify(data, offsets, counts, {})


def expected_u(word: bytes) -> float:
    k = int.from_bytes(word, "big") >> 4
    return (2 * k + 1) / 2**53


def test_u_is_the_top_52_bits_as_an_odd_multiple_of_two_to_the_minus_53():
    word = bytes.fromhex("0123456789abcd")
    result = amplify([word])
    assert result.u[0] == expected_u(word)
    assert result.z_score[0] == statistics.NormalDist().inv_cdf(result.u[0])
    assert result.sample_mean[0] == sum(word) / 7


def test_the_extremes_stay_inside_zero_and_one_and_mirror_each_other():
    low, high = amplify([bytes(7), b"\xff" * 7]).u
    assert low == 2.0**-53
    assert high == 1.0 - 2.0**-53
    assert low + high == 1.0


def test_longer_rows_fold_their_words_by_xor_and_pad_the_last():
    a, b, c = bytes.fromhex("f0e1d2c3b4a596"), bytes.fromhex("0f1e2d3c4b5a69"), b"\x81\x42\x24"
    folded = bytes(x ^ y for x, y in zip(a, b, strict=True))
    padded = bytes(x ^ y for x, y in zip(folded, c + bytes(4), strict=True))
    assert amplify([a + b]).u[0] == expected_u(folded)
    assert amplify([a + b + c]).u[0] == expected_u(padded)


def test_rows_of_different_sizes_are_amplified_independently():
    rng = np.random.default_rng(5)
    rows = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (7, 20480, 8, 13, 14, 7)]
    together = amplify(rows)
    for i, row in enumerate(rows):
        assert together.u[i] == amplify([row]).u[0]


def test_u_from_uniform_bytes_is_uniform_and_z_standard_normal():
    rng = np.random.default_rng(22)
    result = amplify([rng.integers(0, 256, 7, dtype=np.uint8).tobytes() for _ in range(20_000)])
    assert stats.kstest(result.u, "uniform").pvalue > 1e-4
    assert stats.kstest(result.z_score, "norm").pvalue > 1e-4
    assert ((result.u > 0) & (result.u < 1)).all()


def test_it_is_registered_by_the_built_in_plugin():
    component = get_registry().amplifiers["uniform_bits"]
    assert isinstance(component.value, UniformBitsAmplifier)
    assert component.provider.distribution == "qr-sampler-core"


def load(tmp_path: Path, **settings: str) -> QRSamplerConfig:
    return QRSamplerConfig.load(env_file=str(tmp_path / "absent.env"), **settings)


def test_too_few_bytes_are_refused_at_start_up_per_request_and_by_profile_check(tmp_path):
    config = load(tmp_path, signal_amplifier_type="uniform_bits", sample_count="6")
    with pytest.raises(ConfigValidationError) as start_up:
        QRSampler(config)
    assert str(start_up.value) == (
        "QR_SAMPLE_COUNT=6 is too few bytes for QR_SIGNAL_AMPLIFIER_TYPE=uniform_bits: "
        "it needs at least 7 per token"
    )
    assert str(start_up.value) in unregistered_names(config, get_registry())
    sampler = QRSampler(load(tmp_path))
    with pytest.raises(ConfigValidationError, match="qr_sample_count=6 is too few"):
        sampler.resolve({"qr_signal_amplifier_type": "uniform_bits", "qr_sample_count": 6})
    assert sampler.resolve({"qr_signal_amplifier_type": "uniform_bits", "qr_sample_count": 7})
    sampler.close()


def run(sampler: QRSampler, steps: int = 5) -> list[int]:
    sampler.admit(0, sampler.resolve({}), [])
    generator = torch.Generator().manual_seed(22)
    tokens = []
    for _ in range(steps):
        logits = torch.randn(1, 64, generator=generator)
        tokens.append(
            int((sampler.sample(logits, np.zeros(1, dtype=np.int64)) == 0).int().argmax())
        )
    sampler.close()
    return tokens


def test_records_verify_and_replay_with_seven_bytes_a_token(tmp_path, monkeypatch):
    log, archive = tmp_path / "tokens.jsonl", tmp_path / "bytes.bin"
    settings = {"signal_amplifier_type": "uniform_bits", "sample_count": "7"}
    tokens = run(QRSampler(load(tmp_path, log_path=str(log), bytes_path=str(archive), **settings)))
    records = [json.loads(line) for line in log.read_text().splitlines()]
    original_u = [r["u"] for r in records]
    assert archive.stat().st_size == 5 * 7
    assert {(r["signal_amplifier_type"], r["sample_count"]) for r in records} == {
        ("uniform_bits", 7)
    }
    report = verify(str(log), str(archive))
    assert (report.checked, report.mismatches) == (5, [])
    # Without the bytes there is no mean to recompute u from: counted, not passed.
    assert verify(str(log)).unchecked == 5

    record = records[2]
    record["u"] += 1e-9
    lines = log.read_text().splitlines()
    lines[2] = json.dumps(record)
    log.write_text("\n".join(lines) + "\n")
    (mismatch,) = verify(str(log), str(archive)).mismatches
    assert (mismatch.line, mismatch.field) == (3, "u")

    monkeypatch.setenv("QR_REPLAY_PATH", str(archive))
    replay_log = tmp_path / "replayed.jsonl"
    replayed = QRSampler(
        load(
            tmp_path,
            entropy_source_type="replay",
            fallback_mode="error",
            log_path=str(replay_log),
            **settings,
        )
    )
    assert run(replayed) == tokens
    again = [json.loads(line) for line in replay_log.read_text().splitlines()]
    assert [r["u"] for r in again] == original_u
