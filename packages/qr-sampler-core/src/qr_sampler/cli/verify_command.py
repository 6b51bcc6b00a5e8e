"""``qr-sampler verify``: check token records against the bytes that chose them."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from qr_sampler.errors import QRSamplerError
from qr_sampler.records.verify import RELATIVE_TOLERANCE, verify

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
        "a count of them by field, and the number checked; exits 1 if there is any.",
    )
    parser.add_argument("records", metavar="RECORDS", help="JSON-lines file written by QR_LOG_PATH")
    parser.add_argument("--bytes", metavar="FILE", help="the archive written by QR_BYTES_PATH")
    parser.add_argument(
        "--show",
        type=int,
        default=SHOWN,
        metavar="N",
        help=f"print the first N mismatches (default {SHOWN}; 0 prints all)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        report = verify(args.records, args.bytes)
    except OSError as exc:
        raise QRSamplerError(f"cannot read {exc.filename}: {exc.strerror}") from None
    mismatches = report.mismatches
    shown = mismatches if args.show <= 0 else mismatches[: args.show]
    for mismatch in shown:
        print(mismatch)
    if len(shown) < len(mismatches):
        print(f"... and {len(mismatches) - len(shown)} more (--show 0 prints them all)")
    if len(mismatches) > 1:
        by_field = Counter(mismatch.field for mismatch in mismatches).most_common()
        print("mismatches by field: " + ", ".join(f"{name} {n}" for name, n in by_field))
    against = f"against {args.bytes}" if args.bytes else "from their sample means"
    print(
        f"checked {report.checked} record(s) {against}: {len(report.mismatches)} mismatch(es)"
        + (
            f"; {report.unchecked} need the bytes to check (use --bytes)"
            if report.unchecked
            else ""
        )
        + (f"; {report.ended} ended a request in strict mode (no bytes)" if report.ended else "")
        + (f"; {report.greedy} greedy (the argmax, no bytes)" if report.greedy else "")
    )
    return 1 if report.mismatches else 0
