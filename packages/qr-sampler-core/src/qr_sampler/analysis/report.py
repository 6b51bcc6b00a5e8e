"""``report.html`` (plots embedded as PNG), ``summary.json`` and the text summary."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: the report is written to files

import matplotlib.pyplot as plt
import numpy as np

from qr_sampler.analysis.collect import RANK_BUCKETS, Collection
from qr_sampler.analysis.provenance import NOT_RECORDED
from qr_sampler.analysis.statistics import CHI_SQUARE_BINS

_STYLE = (
    "body{font-family:sans-serif;margin:1.5em 2em;max-width:none}"
    "table{border-collapse:collapse;margin:0.5em 0;font-size:0.9em}"
    "td,th{border:1px solid #999;padding:3px 8px;text-align:left;vertical-align:top}"
    ".facts th{background:#eee;white-space:nowrap}td{overflow-wrap:anywhere}"
    "figure{margin:1.5em 0}figure img{display:block;width:100%;height:auto}"
    "figcaption{color:#444;font-size:0.9em;margin-top:0.3em}"
)
#: Every figure spans the page: wide and short, read one per row.
_WIDE = (12, 3.6)

#: Points per plotted line: enough for the eye, small enough for the page.
_PLOT_POINTS = 2000


def write(collection: Collection, summary: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(
        json.dumps(_finite(summary), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    figures = [
        Figure(
            "Distribution of u",
            "Histogram of u per group in 20 bins; a uniform u follows the dashed line.",
            _histogram(collection),
        ),
        Figure(
            "QQ plot of u against U(0, 1)",
            "Empirical quantiles of u against those of U(0, 1); deviations small against "
            "the unit square are easier to see in the residual plot below.",
            _qq(collection),
        ),
        Figure(
            "QQ residuals with a 95% band",
            "Empirical minus expected quantile of u. The shaded band is the pointwise 95% "
            "range for a uniform sample of the group's size, +-1.96 sqrt(p(1-p)/n); a "
            "curve leaving it at many adjacent p is a real departure.",
            _qq_residuals(collection),
        ),
        Figure(
            "Cumulative deviation of z with its 95% envelope",
            "Running sum of z in record order; under the null it stays within +-1.96 sqrt(n) "
            "95% of the time at any one n.",
            _cumulative(collection),
        ),
        Figure(
            "Token rank distribution",
            "Share of tokens by the rank of the chosen token in the probability order.",
            _ranks(collection),
        ),
        Figure(
            "Entropy fetch latency",
            "Cumulative distribution of fetch time per arm and source, one point per draw "
            "(a step draws once per arm).",
            _latency_plot(collection),
        ),
    ]
    (out / "report.html").write_text(_html(summary, figures), encoding="utf-8")


@dataclass(frozen=True)
class Figure:
    title: str
    caption: str
    png: str


def text(summary: dict[str, Any]) -> str:
    """The short summary printed on stdout."""
    overall = summary["overall"]
    uniform = overall["uniformity"]
    lines = [
        f"tokens {summary['tokens']}, requests {summary['requests']}, steps {summary['steps']}; "
        f"fallback tokens {summary['fallback_tokens']} ({summary['fallback_share']:.2%})"
        + (
            f"; greedy tokens (no bytes, not in the statistics) {summary['greedy_tokens']}"
            if summary.get("greedy_tokens")
            else ""
        ),
        "entropy sources: "
        + ", ".join(f"{k} ({v} tokens)" for k, v in summary["entropy_sources"].items()),
    ]
    if "ks_p" in uniform:
        lines.append(
            f"u vs U(0,1): KS D={uniform['ks_statistic']:.4f} p={uniform['ks_p']:.4g}; "
            f"chi-square({CHI_SQUARE_BINS} bins)={uniform['chi_square']:.2f} "
            f"p={uniform['chi_square_p']:.4g}" + ("  FLAGGED" if uniform["flagged"] else "")
        )
    lines.append(
        f"mean z {_number(overall['mean_z'])}, sd z {_number(overall['sd_z'])}; mean token "
        f"prob {_number(overall['mean_token_prob'])}, mean surprisal "
        f"{_number(overall['mean_surprisal_bits'])} bits"
    )
    if summary["grouped_by"] is not None:
        for name, group in summary["groups"].items():
            result = group["uniformity"]
            lines.append(
                f"  {summary['grouped_by']}={name}: n={group['tokens']} mean z "
                f"{_number(group['mean_z'])} KS p={_number(result.get('ks_p'))}"
                + ("  FLAGGED" if result.get("flagged") else "")
            )
        for pair in summary["pairs"]:
            lines.append(
                f"  {pair['a']} vs {pair['b']}: KS(u) p={pair['ks_u']['p']:.4g}, Welch(z) "
                f"p={pair['welch_t_z']['p']:.4g} d={pair['welch_t_z']['cohens_d']:.4f}, "
                f"MW(z) p={pair['mann_whitney_z']['p']:.4g}, TOST(+-{pair['tost_z']['margin']}) "
                f"p={pair['tost_z']['p']:.4g} "
                + ("equivalent" if pair["tost_z"]["equivalent"] else "not shown equivalent")
                + ("  FLAGGED" if pair["flagged"] else "")
            )
    for source, latency in summary["fetch_latency"].items():
        lines.append(f"fetch latency {source}: {_latency(latency)}")
    by_arm = summary["fetch_latency_by_arm"]
    if len(by_arm) > 1:
        for arm, sources in by_arm.items():
            for source, latency in sources.items():
                lines.append(f"  arm {arm}, {source}: {_latency(latency)}")
    return "\n".join(lines)


def _latency(latency: dict[str, Any]) -> str:
    if latency["p50_ms"] is None:
        return f"no fetch times in {latency['draws']} draws"
    return (
        f"p50 {latency['p50_ms']:.3f} ms, p99 {latency['p99_ms']:.3f} ms "
        f"over {latency['draws']} draws"
    )


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _finite(value: Any) -> Any:
    """Strict JSON: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _histogram(collection: Collection) -> str:
    figure, axes = plt.subplots(figsize=_WIDE)
    for name, group in collection.groups.items():
        axes.hist(
            group.u.values(),
            bins=CHI_SQUARE_BINS,
            range=(0, 1),
            density=True,
            histtype="step",
            label=name,
        )
    axes.axhline(1.0, color="black", linestyle="--", linewidth=1, label="U(0,1)")
    axes.set(xlabel="u", ylabel="density")
    axes.legend(fontsize="small")
    return _png(figure)


def _qq(collection: Collection) -> str:
    figure, axes = plt.subplots(figsize=(12, 5))
    levels = np.linspace(0, 1, min(_PLOT_POINTS, 1001))
    for name, group in collection.groups.items():
        u = group.u.values()
        if u.size:
            axes.plot(levels, np.quantile(u, levels), ".", markersize=2, label=name)
    axes.plot([0, 1], [0, 1], color="black", linewidth=1)
    axes.set(xlabel="U(0,1) quantile", ylabel="u quantile")
    axes.legend(fontsize="small")
    return _png(figure)


def _qq_residuals(collection: Collection) -> str:
    figure, axes = plt.subplots(figsize=_WIDE)
    levels = np.linspace(0, 1, min(_PLOT_POINTS, 1001))
    for name, group in collection.groups.items():
        u = group.u.values()
        if not u.size:
            continue
        (line,) = axes.plot(levels, np.quantile(u, levels) - levels, linewidth=1, label=name)
        band = 1.96 * np.sqrt(levels * (1 - levels) / u.size)
        axes.fill_between(levels, -band, band, color=line.get_color(), alpha=0.15)
    axes.axhline(0, color="black", linewidth=0.5)
    axes.set(xlabel="p (U(0,1) quantile)", ylabel="u quantile - p", xlim=(0, 1))
    axes.legend(fontsize="small")
    return _png(figure)


def _latency_plot(collection: Collection) -> str:
    figure, axes = plt.subplots(figsize=_WIDE)
    for (arm, source), column in sorted(collection.fetch_ms.items()):
        values = np.sort(column.values())
        values = values[np.isfinite(values) & (values > 0)]
        if not values.size:
            continue
        every = max(1, values.size // _PLOT_POINTS)
        share = np.arange(1, values.size + 1) / values.size
        label = source if arm == "(none)" else f"{arm}: {source}"
        axes.step(values[::every], share[::every], where="post", label=label)
    axes.set_xscale("log")
    axes.set(xlabel="fetch time per draw (ms, log scale)", ylabel="share of draws", ylim=(0, 1))
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small")
    return _png(figure)


def _cumulative(collection: Collection) -> str:
    figure, axes = plt.subplots(figsize=_WIDE)
    longest = 0
    for name, group in collection.groups.items():
        z = group.z.values()
        z = z[np.isfinite(z)]
        if not z.size:
            continue
        every = max(1, z.size // _PLOT_POINTS)
        index = np.arange(1, z.size + 1)[::every]
        axes.plot(index, np.cumsum(z)[::every], linewidth=1, label=name)
        longest = max(longest, z.size)
    if longest:
        n = np.linspace(1, longest, _PLOT_POINTS)
        envelope = 1.96 * np.sqrt(n)
        axes.fill_between(n, -envelope, envelope, color="grey", alpha=0.2, label="95% envelope")
    axes.axhline(0, color="black", linewidth=0.5)
    axes.set(xlabel="token (in record order)", ylabel="cumulative sum of z")
    axes.legend(fontsize="small")
    return _png(figure)


def _ranks(collection: Collection) -> str:
    figure, axes = plt.subplots(figsize=_WIDE)
    names = list(collection.groups)
    width = 0.8 / max(1, len(names))
    positions = np.arange(RANK_BUCKETS + 1)
    for i, name in enumerate(names):
        counts = collection.groups[name].ranks
        axes.bar(positions + i * width, counts / max(1, counts.sum()), width, label=name)
    axes.set_xticks(positions, [*map(str, range(RANK_BUCKETS)), f"{RANK_BUCKETS}+"], fontsize=7)
    axes.set(xlabel="rank of the chosen token (0 = most probable)", ylabel="share of tokens")
    axes.legend(fontsize="small")
    return _png(figure)


def _table(rows: Sequence[Sequence[str]], head: Sequence[str]) -> str:
    cells = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{cells}</tr>{body}</table>"


def _provenance(facts: dict[str, Any]) -> str:
    """The header: what was analysed, from which run, when and with what."""
    run = facts["run"]
    tools = ", ".join(
        f"{name} {version or '?'}" for name, version in facts["analyzed_with"].items()
    )
    about = [
        ("Model", run.get("model")),
        ("vLLM", run.get("vllm_version")),
        ("qr-sampler (run)", run.get("qr_sampler_version")),
        ("Run started", run.get("started_at")),
        (
            "Settings hash (config_hash)",
            ", ".join(f"{h} ({n} records)" for h, n in facts["config_hashes"].items()),
        ),
        ("Record integrity", facts["integrity"]),
        ("Analysed", f"{facts['analyzed_at']} with {tools}"),
    ]
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(str(value or NOT_RECORDED))}</td></tr>"
        for name, value in about
    )
    files = _table(
        [
            (
                f["path"],
                str(f["records"]),
                str(f["skipped_lines"]),
                ", ".join(f"{arm} ({n})" for arm, n in f["arms"].items()),
                f"{f['size_bytes']:,}",
                f["modified"],
                f["sha256"],
            )
            for f in facts["files"]
        ],
        ("input file", "records", "skipped lines", "arms", "bytes", "modified (UTC)", "SHA-256"),
    )
    return f"<section class='provenance'><table class='facts'>{rows}</table>{files}</section>"


def _html(summary: dict[str, Any], figures: list[Figure]) -> str:
    groups = [
        (
            name,
            str(g["tokens"]),
            str(g["requests"]),
            _number(g["mean_z"]),
            _number(g["uniformity"].get("ks_p")),
            _number(g["uniformity"].get("chi_square_p")),
            _number(g["mean_token_prob"]),
            _number(g["mean_surprisal_bits"]),
            "yes" if g["uniformity"].get("flagged") else "no",
        )
        for name, g in summary["groups"].items()
    ]
    pairs = [
        (
            f"{p['a']} vs {p['b']}",
            f"{p['n_a']} / {p['n_b']}",
            f"D={p['ks_u']['statistic']:.4f} p={p['ks_u']['p']:.4g}",
            f"d={p['welch_t_z']['cohens_d']:.4f} p={p['welch_t_z']['p']:.4g}",
            f"r={p['mann_whitney_z']['rank_biserial']:.4f} p={p['mann_whitney_z']['p']:.4g}",
            f"p={p['tost_z']['p']:.4g} "
            + ("(equivalent)" if p["tost_z"]["equivalent"] else "(not shown equivalent)"),
            "yes" if p["flagged"] else "no",
        )
        for p in summary["pairs"]
    ]
    images = "".join(
        f'<figure><h2>{html.escape(f.title)}</h2><img alt="{html.escape(f.title)}" '
        f'src="data:image/png;base64,{f.png}"><figcaption>{html.escape(f.caption)}'
        "</figcaption></figure>"
        for f in figures
    )
    comparison = (
        "<h2>Pairwise comparisons</h2>"
        + _table(
            pairs,
            (
                "groups",
                "n",
                "KS on u",
                "Welch t on z",
                "Mann-Whitney on z",
                f"TOST on z (margin {summary['tost_margin_z']})",
                "flagged",
            ),
        )
        if pairs
        else ""
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>qr-sampler analysis</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>qr-sampler analysis</h1>"
        + _provenance(summary["provenance"])
        + f"<pre>{html.escape(text(summary))}</pre>"
        f"<p>Flags at alpha = {summary['alpha']}; grouped by "
        f"{html.escape(str(summary['grouped_by']))}.</p>"
        "<h2>Groups</h2>"
        + _table(
            groups,
            (
                "group",
                "tokens",
                "requests",
                "mean z",
                "KS p (u)",
                "chi-square p (u)",
                "mean prob",
                "mean surprisal (bits)",
                "flagged",
            ),
        )
        + comparison
        + images
        + "</body></html>\n"
    )
