"""What a sample of a source's bytes says about its fitness for the z-score amplifier."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

from qr_sampler.entropy.health import HealthCutoffs, HealthTests
from qr_sampler.errors import HealthTestError
from qr_sampler.experiments.uniformity import byte_chi_square

_STANDARD = NormalDist()
#: An offset counts as real only beyond this many standard errors of the sample.
SIGNIFICANT_SE = 4.0
#: u is called collapsed when its distribution is this far (Kolmogorov distance) from uniform.
COLLAPSE_KS = 0.05
#: The chi-square p-value below which byte frequencies are called non-uniform.
CHI_SQUARE_ALPHA = 1e-6


@dataclass(frozen=True)
class Calibration:
    bytes: int
    mean: float
    std: float
    expected_mean: float
    expected_std: float
    mcv_min_entropy: float
    chi_square: float
    chi_square_p: float
    health_failures: int
    health_first_failure: str | None
    sample_count: int
    z_shift: float
    z_scale: float
    u_ks_distance: float
    offset_significant: bool

    @property
    def collapses_u(self) -> bool:
        return self.offset_significant and self.u_ks_distance >= COLLAPSE_KS

    def problems(self) -> list[str]:
        found = []
        if self.health_failures:
            found.append(f"health tests failed {self.health_failures} time(s)")
        if self.chi_square_p < CHI_SQUARE_ALPHA:
            found.append(f"byte frequencies are not uniform (chi-square p={self.chi_square_p:.2e})")
        if self.collapses_u:
            found.append(
                f"the offset shifts z by {self.z_shift:+.2f} (scale {self.z_scale:.3f}) at "
                f"sample_count={self.sample_count}: u is {self.u_ks_distance:.2f} from "
                f"uniform; set QR_POPULATION_MEAN={self.mean:.4f} "
                f"QR_POPULATION_STD={self.std:.4f}"
            )
        return found

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "collapses_u": self.collapses_u, "problems": self.problems()}


def calibrate(
    chunks: list[npt.NDArray[np.uint8]],
    cutoffs: HealthCutoffs,
    sample_count: int,
    expected_mean: float,
    expected_std: float,
) -> Calibration:
    health = HealthTests(cutoffs)
    failures: list[str] = []
    for chunk in chunks:
        try:
            health.check(chunk.tobytes())
        except HealthTestError as exc:
            failures.append(str(exc))
    data = np.concatenate(chunks)
    n = len(data)
    counts = np.bincount(data, minlength=256).astype(np.float64)
    mean = float(np.dot(np.arange(256), counts) / n)
    std = float(math.sqrt(np.dot((np.arange(256) - mean) ** 2, counts) / n))
    chi_square = byte_chi_square(data)
    # z of one token: its sample mean's offset in units of the configured SEM.
    sem = expected_std / math.sqrt(sample_count)
    z_shift = (mean - expected_mean) / sem
    z_scale = std / expected_std
    # Standard errors of this sample's mean and std (uniform-like bytes: kurtosis 1.8).
    mean_se = std / math.sqrt(n)
    std_se = std * math.sqrt(0.8 / (4 * n))
    significant = (
        abs(mean - expected_mean) > SIGNIFICANT_SE * mean_se
        or abs(std - expected_std) > SIGNIFICANT_SE * std_se
    )
    return Calibration(
        bytes=n,
        mean=mean,
        std=std,
        expected_mean=expected_mean,
        expected_std=expected_std,
        mcv_min_entropy=mcv_min_entropy(int(counts.max()), n),
        chi_square=chi_square.statistic,
        chi_square_p=chi_square.p_value,
        health_failures=len(failures),
        health_first_failure=failures[0] if failures else None,
        sample_count=sample_count,
        z_shift=z_shift,
        z_scale=z_scale,
        u_ks_distance=u_ks_distance(z_shift, z_scale),
        offset_significant=significant,
    )


def mcv_min_entropy(most_common: int, n: int) -> float:
    """NIST SP 800-90B 6.3.1: -log2 of the 99% upper bound on the most common value's share."""
    p = most_common / n
    upper = min(1.0, p + 2.576 * math.sqrt(p * (1 - p) / (n - 1))) if n > 1 else 1.0
    return -math.log2(upper)


def u_ks_distance(z_shift: float, z_scale: float, points: int = 2001) -> float:
    """How far u = Phi(z) is from uniform when z ~ N(z_shift, z_scale^2)."""
    grid = np.linspace(1e-6, 1 - 1e-6, points)
    quantiles = np.array([_STANDARD.inv_cdf(u) for u in grid])
    cdf = np.array([_STANDARD.cdf(q) for q in (quantiles - z_shift) / z_scale])
    return float(np.abs(cdf - grid).max())
