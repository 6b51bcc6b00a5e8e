"""Uniformity p-values for bytes and u, with numpy and the standard library.

Used by the conformance suite and by ``qr-sampler calibrate``. Core must not depend
on scipy, so the two distributions they need are computed here: the chi-square upper
tail (through the regularized incomplete gamma function) and the Kolmogorov
distribution of the one-sample KS statistic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Relative precision at which the series and the continued fraction stop; the
# p-values are compared with thresholds around 1e-6, so double precision is ample.
_PRECISION = 1e-15
# A continued fraction that has not converged by then is fed a value it was not
# meant for (the iteration count needed grows like sqrt(a) for the degrees of
# freedom used here, a few dozen terms).
_MAX_TERMS = 10_000
_TINY = 1e-300


@dataclass(frozen=True)
class StatisticResult:
    """A test statistic and the probability of one at least as extreme under the null."""

    statistic: float
    p_value: float


def chi_square_sf(statistic: float, df: int) -> float:
    """P(X >= statistic) for X chi-square with ``df`` degrees of freedom."""
    if statistic <= 0:
        return 1.0
    return _upper_regularized_gamma(df / 2.0, statistic / 2.0)


def _upper_regularized_gamma(a: float, x: float) -> float:
    """Q(a, x) = Gamma(a, x) / Gamma(a).

    Below x = a + 1 the series for P = 1 - Q converges fast and Q is not small, so
    the subtraction loses nothing; above it Legendre's continued fraction for Q
    converges fast and keeps full relative precision deep into the tail, which is
    where a biased source's p-value lands.
    """
    log_prefactor = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        denominator = a
        while abs(term) > abs(total) * _PRECISION:
            denominator += 1.0
            term *= x / denominator
            total += term
        return max(0.0, 1.0 - total * math.exp(log_prefactor))
    # Modified Lentz evaluation of 1 / (x + 1 - a - 1 (1 - a) / (x + 3 - a - ...)).
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    fraction = d
    for i in range(1, _MAX_TERMS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = d if abs(d) > _TINY else _TINY
        c = b + an / c
        c = c if abs(c) > _TINY else _TINY
        d = 1.0 / d
        step = d * c
        fraction *= step
        if abs(step - 1.0) < _PRECISION:
            break
    return math.exp(log_prefactor) * fraction


def kolmogorov_sf(statistic: float, n: int) -> float:
    """P(D_n >= statistic) for the KS distance of n uniform draws from their CDF.

    Kolmogorov's limit Q(l) = 2 sum_k (-1)^(k-1) exp(-2 k^2 l^2) with Stephens'
    finite-n scaling l = (sqrt(n) + 0.12 + 0.11 / sqrt(n)) * D, accurate to a few
    percent of p for n in the thousands, which is what a threshold test needs.
    """
    root = math.sqrt(n)
    scaled = (root + 0.12 + 0.11 / root) * statistic
    # Below this the alternating series converges too slowly to sum and Q is 1 to
    # double precision anyway.
    if scaled < 0.2:
        return 1.0
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * scaled * scaled)
        total += term if k % 2 else -term
        if term < _PRECISION * total:
            break
    return min(1.0, max(0.0, 2.0 * total))


def byte_chi_square(data: npt.NDArray[np.uint8]) -> StatisticResult:
    """Pearson's chi-square of the 256 byte-value counts against equal frequencies."""
    counts = np.bincount(data, minlength=256).astype(np.float64)
    expected = data.size / 256.0
    statistic = float(((counts - expected) ** 2).sum() / expected)
    return StatisticResult(statistic, chi_square_sf(statistic, 255))


def uniform_ks(u: npt.NDArray[np.float64]) -> StatisticResult:
    """The one-sample Kolmogorov-Smirnov test of ``u`` against uniform on (0, 1)."""
    ordered = np.sort(u)
    n = ordered.size
    ranks = np.arange(1, n + 1, dtype=np.float64)
    statistic = float(max((ranks / n - ordered).max(), (ordered - (ranks - 1) / n).max()))
    return StatisticResult(statistic, kolmogorov_sf(statistic, n))
