"""The suite's p-values, computed without scipy, against scipy's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from qr_sampler.experiments.uniformity import (
    byte_chi_square,
    chi_square_sf,
    kolmogorov_sf,
    uniform_ks,
)


@pytest.mark.parametrize("df", [1, 2, 10, 255])
@pytest.mark.parametrize("statistic", [0.01, 0.5, 3.0, 50.0, 200.0, 255.0, 320.0, 600.0, 2000.0])
def test_chi_square_tail_matches_scipy(df: int, statistic: float) -> None:
    # Both branches (series below a + 1, continued fraction above), deep into the tail.
    assert chi_square_sf(statistic, df) == pytest.approx(stats.chi2.sf(statistic, df), rel=1e-9)


def test_chi_square_of_nothing_is_certain() -> None:
    assert chi_square_sf(0.0, 255) == 1.0


@pytest.mark.parametrize("n", [200, 2000])
@pytest.mark.parametrize("statistic", [0.01, 0.02, 0.03, 0.04, 0.05, 0.07])
def test_kolmogorov_tail_is_close_to_the_exact_distribution(n: int, statistic: float) -> None:
    # The asymptotic series is within a few percent where thresholds are drawn.
    assert kolmogorov_sf(statistic, n) == pytest.approx(stats.kstwo.sf(statistic, n), rel=0.05)


def test_kolmogorov_tail_of_a_tiny_distance_is_one() -> None:
    assert kolmogorov_sf(0.001, 2000) == 1.0


def test_byte_chi_square_matches_scipy() -> None:
    data = np.random.default_rng(7).integers(0, 256, size=1 << 16, dtype=np.uint8)
    result = byte_chi_square(data)
    expected = stats.chisquare(np.bincount(data, minlength=256))
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)


def test_uniform_ks_matches_scipy() -> None:
    u = np.random.default_rng(11).random(2000)
    result = uniform_ks(u)
    expected = stats.kstest(u, "uniform")
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue, rel=0.05)


def test_uniform_ks_rejects_a_shifted_sample() -> None:
    u = np.random.default_rng(3).random(2000) * 0.9
    assert uniform_ks(u).p_value < 1e-6
