"""``qr-sampler verify``: check token records against the bytes that chose them."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from qr_sampler.errors import QRSamplerError
from qr_sampler.records.run_files import RunReport, verify_run
from qr_sampler.records.signing import load_public_key
from qr_sampler.records.verify import RELATIVE_TOLERANCE

#: One wrong archive makes every record a mismatch: the first few say what is wrong.
SHOWN = 20


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "verify",
        help="check token records against their archived entropy bytes",
        description="Recompute every record's entropy_sha256, sample mean, z and u from its "
        "bytes in the QR_BYTES_PATH archive, with the record's own amplifier and parameters "
        f"(floats agree to a relative {RELATIVE_TOLERANCE:g}). Without --bytes, z and u are "
        "recomputed from the recorded sample mean. Prints the first mismatches (--show), "
        "a count of them by field, and the number checked; exits 1 if there is any. A run "
        "of several engine processes (vLLM data parallelism) wrote one records file and one "
        "archive per engine: give them all, archives in the same order as the records files; "
        "a request id found in two engines' files is a mismatch too. A rotated run "
        "(QR_LOG_ROTATE_MB) wrote each engine's records and archive in parts: give every "
        "part, in order, each with its archive part; each part must go on from the last "
        "line of the part before. Each file's hash chain is checked against the "
        "RECORDS.manifest and RECORDS.heads files beside it, naming the first broken link; "
        "with --public-key, every manifest and chain head must carry a valid signature by "
        "that key.",
    )
    parser.add_argument(
        "records",
        nargs="+",
        metavar="RECORDS",
        help="JSON-lines files written by QR_LOG_PATH (one per engine process and part)",
    )
    parser.add_argument(
        "--bytes",
        nargs="+",
        metavar="FILE",
        help="the archives (and archive parts) written by QR_BYTES_PATH, one per records file",
    )
    parser.add_argument(
        "--public-key",
        metavar="FILE",
        help="the run's public key (PEM, from qr-sampler keys new): refuse a manifest or "
        "chain head it did not sign",
    )
    parser.add_argument(
        "--show",
        type=int,
        default=SHOWN,
        metavar="N",
        help=f"print the first N mismatches (default {SHOWN}; 0 prints all)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    key = load_public_key(args.public_key) if args.public_key else None
    try:
        run_report = verify_run(args.records, args.bytes, public_key=key)
    except OSError as exc:
        raise QRSamplerError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except ValueError as exc:
        raise QRSamplerError(f"--bytes: {exc}") from None
    several = len(args.records) > 1
    mismatches = [
        f"{path}: {mismatch}" if several else str(mismatch)
        for path, report in run_report.files
        for mismatch in report.mismatches
    ]
    mismatches += [
        f"request id {request_id!r} is in {' and '.join(paths)}, files of different "
        "engines: files of different runs?"
        for request_id, paths in sorted(run_report.shared_ids.items())
    ]
    mismatches += [
        f"{path}: {problem}" if several else str(problem)
        for path, report in run_report.chains
        for problem in report.problems
    ]
    shown = mismatches if args.show <= 0 else mismatches[: args.show]
    for line in shown:
        print(line)
    if len(shown) < len(mismatches):
        print(f"... and {len(mismatches) - len(shown)} more (--show 0 prints them all)")
    by_field = Counter(
        mismatch.field for _, report in run_report.files for mismatch in report.mismatches
    )
    if run_report.shared_ids:
        by_field["request_id"] = len(run_report.shared_ids)
    chain_problems = sum(len(report.problems) for _, report in run_report.chains)
    if chain_problems:
        by_field["chain"] = chain_problems
    if len(mismatches) > 1:
        counts = by_field.most_common()
        print("mismatches by field: " + ", ".join(f"{name} {n}" for name, n in counts))
    checked = sum(report.checked for _, report in run_report.files)
    unchecked = sum(report.unchecked for _, report in run_report.files)
    ended = sum(report.ended for _, report in run_report.files)
    greedy = sum(report.greedy for _, report in run_report.files)
    archives = " ".join(args.bytes) if args.bytes else ""
    against = f"against {archives}" if archives else "from their sample means"
    files = f" in {len(args.records)} files" if several else ""
    print(
        f"checked {checked} record(s){files} {against}: {len(mismatches)} mismatch(es)"
        + (f"; {unchecked} need the bytes to check (use --bytes)" if unchecked else "")
        + (f"; {ended} ended a request in strict mode (no bytes)" if ended else "")
        + (f"; {greedy} greedy (the argmax, no bytes)" if greedy else "")
    )
    print(_chain_summary(run_report))
    return 1 if mismatches else 0


def _chain_summary(run_report: RunReport) -> str:
    reports = [report for _, report in run_report.chains]
    linked = sum(report.linked for report in reports)
    unchained = sum(report.unchained for report in reports)
    signatures = sum(report.signatures for report in reports)
    text = (
        f"chain: {linked} record(s) linked in {sum(r.runs for r in reports)} run(s), "
        f"{sum(r.heads for r in reports)} head(s)"
    )
    continued = sum(report.continues is not None for report in reports)
    if continued:
        text += f", {continued} part(s) continuing a rotated run"
    if signatures:
        text += f", {signatures} signature(s) checked"
    if any(report.signed_unchecked for report in reports):
        text += "; the run is signed: give --public-key to check its signatures"
    if unchained:
        text += f"; {unchained} record(s) written before records were chained"
    return text
