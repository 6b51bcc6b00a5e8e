"""``qr-sampler verify``: check token records against the bytes that chose them."""

from __future__ import annotations

import argparse
from typing import Any

from qr_sampler.errors import QRSamplerError
from qr_sampler.records.verify import RELATIVE_TOLERANCE, verify


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "verify",
        help="check token records against their archived entropy bytes",
        description="Recompute every record's entropy_sha256, sample mean, z and u from its "
        "bytes in the QR_BYTES_PATH archive, with the record's own amplifier and parameters "
        f"(floats agree to a relative {RELATIVE_TOLERANCE:g}). Without --bytes, z and u are "
        "recomputed from the recorded sample mean. Prints the number checked and every "
        "mismatch; exits 1 if there is any.",
    )
    parser.add_argument("records", metavar="RECORDS", help="JSON-lines file written by QR_LOG_PATH")
    parser.add_argument("--bytes", metavar="FILE", help="the archive written by QR_BYTES_PATH")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        report = verify(args.records, args.bytes)
    except OSError as exc:
        raise QRSamplerError(f"cannot read {exc.filename}: {exc.strerror}") from None
    for mismatch in report.mismatches:
        print(mismatch)
    against = f"against {args.bytes}" if args.bytes else "from their sample means"
    print(
        f"checked {report.checked} record(s) {against}: {len(report.mismatches)} mismatch(es)"
        + (
            f"; {report.unchecked} need the bytes to check (use --bytes)"
            if report.unchecked
            else ""
        )
        + (f"; {report.ended} ended a request in strict mode (no bytes)" if report.ended else "")
    )
    return 1 if report.mismatches else 0
