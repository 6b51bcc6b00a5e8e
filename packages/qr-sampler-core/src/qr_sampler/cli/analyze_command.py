"""``qr-sampler analyze``: statistics, plots and a report from token records."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from qr_sampler.errors import QRSamplerError
from qr_sampler.settings.names import did_you_mean

EXTRA_HINT = (
    "qr-sampler analyze needs the analysis extra (scipy, matplotlib): "
    "pip install 'qr-sampler-core[analysis]'"
)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "analyze",
        help="statistics and an HTML report from token records",
        description="Stream JSON-lines token records and write report.html (plots embedded), "
        "summary.json and a short summary on stdout: u against U(0,1) (KS, 20-bin chi-square, "
        "histogram, QQ), the cumulative deviation of z, token ranks, probability and "
        "surprisal, fetch latency per source and, with --by, pairwise group comparisons "
        "(two-sample KS on u; Welch t, Mann-Whitney and TOST equivalence on z). Needs "
        "qr-sampler-core[analysis].",
    )
    parser.add_argument("records", nargs="+", metavar="RECORDS", help="records files (QR_LOG_PATH)")
    parser.add_argument("--by", metavar="FIELD", help="group by this record field, e.g. tag")
    parser.add_argument("--out", metavar="DIR", default="qr-analysis", help="output folder")
    parser.add_argument(
        "--margin",
        type=float,
        default=None,
        help="TOST equivalence margin on the mean of z, in SD units (default 0.1)",
    )
    parser.add_argument(
        "--alpha", type=float, default=None, help="significance level for flags (default 0.01)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        from qr_sampler.analysis import report, statistics
    except ImportError:
        raise QRSamplerError(EXTRA_HINT) from None
    from qr_sampler.analysis.collect import collect

    margin = statistics.DEFAULT_MARGIN if args.margin is None else args.margin
    alpha = statistics.DEFAULT_ALPHA if args.alpha is None else args.alpha
    if margin <= 0 or not 0 < alpha < 1:
        raise QRSamplerError("--margin must be positive and --alpha between 0 and 1")
    try:
        collection = collect(args.records, args.by)
    except OSError as exc:
        raise QRSamplerError(f"cannot read {exc.filename}: {exc.strerror}") from None
    if not collection.groups:
        raise QRSamplerError("no token records found in " + ", ".join(args.records))
    if args.by is not None and not collection.by_present:
        fields = collection.fields
        raise QRSamplerError(
            f"--by {args.by}: no record has this field{did_you_mean(args.by, fields)} "
            f"(the records' fields: {', '.join(sorted(fields))})"
        )
    summary = statistics.analyse(collection, margin, alpha)
    out = Path(args.out)
    report.write(collection, summary, out)
    print(report.text(summary))
    print(f"wrote {out / 'report.html'} and {out / 'summary.json'}")
    return 0
