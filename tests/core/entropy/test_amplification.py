"""zscore_mean: exact arithmetic, per-row sizes, and u uniform under the null."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from qr_sampler.entropy.amplification import ZScoreMeanAmplifier, normal_cdf, row_sums
from qr_sampler.entropy.system import SystemEntropySource
from qr_sampler.settings.config import DISCRETE_UNIFORM_BYTE_STD

N = 20480


def amplify(rows: list[bytes], mean=127.5, std=DISCRETE_UNIFORM_BYTE_STD, eps=1e-10):
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    data = np.frombuffer(b"".join(rows), dtype=np.uint8)
    params = {
        "population_mean": np.full(len(rows), mean),
        "population_std": np.full(len(rows), std),
        "uniform_clamp_epsilon": np.full(len(rows), eps),
    }
    return ZScoreMeanAmplifier().amplify(data, offsets, counts, params)


def test_default_std_is_that_of_a_discrete_uniform_byte():
    values = np.arange(256)
    assert values.std() == pytest.approx(DISCRETE_UNIFORM_BYTE_STD, rel=1e-12)
    assert pytest.approx(73.9002, abs=1e-4) == DISCRETE_UNIFORM_BYTE_STD


def test_z_and_u_match_the_formula():
    row = bytes([200] * 10 + [100] * 30)
    result = amplify([row])
    mean = (200 * 10 + 100 * 30) / 40
    z = (mean - 127.5) / (DISCRETE_UNIFORM_BYTE_STD / math.sqrt(40))
    assert result.sample_mean[0] == mean
    assert result.z_score[0] == pytest.approx(z, rel=1e-12)
    assert result.u[0] == pytest.approx(stats.norm.cdf(z), rel=1e-12)


def test_rows_of_different_sizes_are_amplified_independently():
    rng = np.random.default_rng(3)
    rows = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (5, 1, 300, 20480, 7)]
    together = amplify(rows)
    for i, row in enumerate(rows):
        alone = amplify([row])
        assert together.u[i] == alone.u[0]
        assert together.z_score[i] == alone.z_score[0]


def test_u_is_clamped_away_from_zero_and_one():
    result = amplify([bytes([255]) * N, bytes([0]) * N, bytes([127, 128]) * (N // 2)], eps=1e-6)
    assert result.u.tolist() == [1 - 1e-6, 1e-6, 0.5]


def test_normal_cdf_is_accurate_in_the_tails():
    z = np.array([-30.0, -8.0, -1.0, 0.0, 2.5, 8.0])
    assert normal_cdf(z) == pytest.approx(stats.norm.cdf(z), rel=1e-12)


def test_u_from_the_system_source_is_uniform():
    """KS test of 4,000 u values, each from 20,480 fresh os.urandom bytes."""
    source, u = SystemEntropySource(), []
    for _ in range(8):
        u.extend(amplify([source.get_random_bytes(N) for _ in range(500)]).u)
    assert stats.kstest(u, "uniform").pvalue > 1e-4


def test_u_from_seeded_uniform_bytes_is_uniform():
    rng = np.random.default_rng(2024)
    rows = [rng.integers(0, 256, N, dtype=np.uint8).tobytes() for _ in range(3000)]
    result = amplify(rows)
    assert stats.kstest(result.u, "uniform").pvalue > 1e-4
    # z is standard normal: its variance is 1 within sampling error.
    assert result.z_score.var() == pytest.approx(1.0, abs=0.08)


@pytest.mark.parametrize(("value", "direction"), [(255, 1), (0, -1)])
def test_a_biased_source_shifts_u_in_the_direction_of_the_bias(value, direction):
    rng = np.random.default_rng(5)
    rows = []
    for _ in range(300):
        row = rng.integers(0, 256, N, dtype=np.uint8)
        row[rng.random(N) < 0.01] = value  # 1% of bytes stuck at one value
        rows.append(row.tobytes())
    u = amplify(rows).u
    assert np.sign(np.median(u) - 0.5) == direction
    assert stats.kstest(u, "uniform").pvalue < 1e-6


def test_row_sums_cover_rows_in_any_order_up_to_the_last_byte():
    generator = np.random.default_rng(5)
    data = generator.integers(0, 256, 5000, dtype=np.uint8)
    counts = generator.integers(1, 400, 12)
    # Rows laid out in a shuffled order, the last range ending at the last byte.
    starts = np.cumsum(counts) - counts + (data.size - counts.sum())
    order = generator.permutation(12)
    offsets, counts = starts[order], counts[order]
    expected = [int(data[o : o + c].sum()) for o, c in zip(offsets, counts, strict=True)]
    assert row_sums(data, offsets, counts).tolist() == expected
    assert row_sums(data, np.array([7, 0]), np.array([0, 3])).tolist() == [0, int(data[:3].sum())]
