"""The tests: u against U(0, 1) per group, and pairwise comparisons between groups."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from qr_sampler.analysis.collect import Collection, Group
from qr_sampler.analysis.provenance import provenance

Floats = npt.NDArray[np.float64]

#: Default TOST margin, in units of z (whose standard deviation is 1 under the
#: null), so it is also a standardized mean difference: groups whose mean z
#: differ by less than 0.1 SD are called equivalent.
DEFAULT_MARGIN = 0.1
#: Default significance level for flags and for the TOST.
DEFAULT_ALPHA = 0.01
CHI_SQUARE_BINS = 20


def uniformity(u: Floats, alpha: float) -> dict[str, Any]:
    """KS and a 20-bin chi-square of u against U(0, 1)."""
    if u.size < 2:
        return {"n": int(u.size)}
    ks = stats.kstest(u, "uniform")
    observed = np.histogram(u, bins=CHI_SQUARE_BINS, range=(0.0, 1.0))[0]
    chi = stats.chisquare(observed)
    return {
        "n": int(u.size),
        "ks_statistic": float(ks.statistic),
        "ks_p": float(ks.pvalue),
        "chi_square": float(chi.statistic),
        "chi_square_bins": CHI_SQUARE_BINS,
        "chi_square_p": float(chi.pvalue),
        "flagged": bool(min(ks.pvalue, chi.pvalue) < alpha),
    }


def describe(group: Group, z: Floats) -> dict[str, Any]:
    tokens = group.tokens
    return {
        "tokens": tokens,
        "requests": len(group.requests),
        "fallback_tokens": group.fallback,
        "fallback_share": group.fallback / tokens if tokens else 0.0,
        "mean_z": float(z.mean()) if z.size else None,
        "sd_z": float(z.std(ddof=1)) if z.size > 1 else None,
        "mean_token_prob": group.prob_sum / tokens if tokens else None,
        "mean_surprisal_bits": group.surprisal_bits_sum / tokens if tokens else None,
        "rank_counts": group.ranks.tolist(),
    }


def compare(
    u_a: Floats, z_a: Floats, u_b: Floats, z_b: Floats, margin: float, alpha: float
) -> dict[str, Any]:
    """Two-sample KS on u; Welch t, Mann-Whitney and TOST equivalence on z."""
    n_a, n_b = z_a.size, z_b.size
    ks = stats.ks_2samp(u_a, u_b)
    welch = stats.ttest_ind(z_a, z_b, equal_var=False)
    mann = stats.mannwhitneyu(z_a, z_b, alternative="two-sided")
    var_a, var_b = z_a.var(ddof=1), z_b.var(ddof=1)
    difference = float(z_a.mean() - z_b.mean())
    pooled = math.sqrt(((n_a - 1) * var_a + (n_b - 1) * var_b) / (n_a + n_b - 2))
    spread = float(var_a / n_a + var_b / n_b)
    if spread > 0:
        se = math.sqrt(spread)
        df = spread**2 / ((var_a / n_a) ** 2 / (n_a - 1) + (var_b / n_b) ** 2 / (n_b - 1))
        # Two one-sided Welch tests: H0 difference <= -margin, and H0 difference >= margin.
        p_lower = float(stats.t.sf((difference + margin) / se, df))
        p_upper = float(stats.t.cdf((difference - margin) / se, df))
        tost_p = max(p_lower, p_upper)
    else:
        # Neither group's z varies: the difference is known exactly, so it is
        # equivalent exactly when it lies inside the margin (Welch's t is undefined).
        tost_p = 0.0 if abs(difference) < margin else 1.0
    p_values = [p for p in (ks.pvalue, welch.pvalue, mann.pvalue) if math.isfinite(p)]
    return {
        "n_a": int(n_a),
        "n_b": int(n_b),
        "ks_u": {"statistic": float(ks.statistic), "p": float(ks.pvalue)},
        "welch_t_z": {
            "statistic": float(welch.statistic),
            "p": float(welch.pvalue),
            "mean_difference": difference,
            "cohens_d": difference / pooled if pooled > 0 else 0.0,
        },
        "mann_whitney_z": {
            "statistic": float(mann.statistic),
            "p": float(mann.pvalue),
            # Probability that a's z exceeds b's, minus the reverse.
            "rank_biserial": float(2 * mann.statistic / (n_a * n_b) - 1),
        },
        "tost_z": {"margin": margin, "p": tost_p, "equivalent": bool(tost_p < alpha)},
        "flagged": bool(p_values) and bool(min(p_values) < alpha),
    }


def analyse(collection: Collection, margin: float, alpha: float) -> dict[str, Any]:
    """The whole ``summary.json``."""
    arrays = {name: (g.u.values(), g.z.values()) for name, g in collection.groups.items()}
    all_u = np.concatenate([u for u, _ in arrays.values()]) if arrays else np.empty(0)
    all_z = np.concatenate([z for _, z in arrays.values()]) if arrays else np.empty(0)
    total = collection.total
    groups = {
        name: {**describe(group, arrays[name][1]), "uniformity": uniformity(arrays[name][0], alpha)}
        for name, group in collection.groups.items()
    }
    pairs = [
        {"a": a, "b": b, **compare(*arrays[a], *arrays[b], margin, alpha)}
        for a, b in itertools.combinations(sorted(arrays), 2)
        if min(arrays[a][0].size, arrays[b][0].size) > 1
    ]
    latency = _latency(collection)
    return {
        "provenance": provenance(collection),
        "grouped_by": collection.by,
        "alpha": alpha,
        "tost_margin_z": margin,
        "tokens": total.tokens,
        "requests": len(total.requests),
        "steps": collection.steps,
        "fallback_tokens": total.fallback,
        "fallback_share": total.fallback / total.tokens if total.tokens else 0.0,
        "entropy_sources": dict(collection.sources),
        "skipped_lines": collection.skipped_lines,
        "greedy_tokens": collection.greedy,
        "overall": {**describe(total, all_z), "uniformity": uniformity(all_u, alpha)},
        "groups": groups,
        "pairs": pairs,
        "fetch_latency": latency["per_source"],
        "fetch_latency_by_arm": latency["per_arm"],
    }


def _by_source(collection: Collection) -> dict[str, Floats]:
    """Every draw's fetch time, per source whatever the arm."""
    per_source: dict[str, list[Floats]] = {}
    for (_, source), column in sorted(collection.fetch_ms.items()):
        per_source.setdefault(source, []).append(column.values())
    return {source: np.concatenate(parts) for source, parts in per_source.items()}


def _latency(collection: Collection) -> dict[str, dict[str, Any]]:
    """p50/p99 of fetch time per source, and per source within each arm, each draw once."""
    per_arm: dict[str, dict[str, Any]] = {}
    for (arm, source), column in sorted(collection.fetch_ms.items()):
        per_arm.setdefault(arm, {})[source] = _percentiles(column.values())
    per_source = {source: _percentiles(values) for source, values in _by_source(collection).items()}
    return {"per_source": per_source, "per_arm": per_arm}


def _percentiles(values: Floats) -> dict[str, Any]:
    known = values[np.isfinite(values)]
    return {
        "draws": int(values.size),
        "p50_ms": float(np.percentile(known, 50)) if known.size else None,
        "p99_ms": float(np.percentile(known, 99)) if known.size else None,
    }
