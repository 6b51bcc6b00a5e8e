"""``python tools/regen_protos.py``: its arguments, its messages and its exit statuses.

Exit status: 0 written or current, 1 stale (with ``--check``), 2 grpcio-tools or protoc
trouble (argparse's own 2 covers bad arguments).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from proto_stubs import toolchain
from proto_stubs.catalog import PACKAGES, REPO_ROOT
from proto_stubs.generate import render_all
from proto_stubs.on_disk import stale_files, write

#: How the command is run; error messages tell the user to run it again this way.
COMMAND = "python tools/regen_protos.py"


def build_parser() -> argparse.ArgumentParser:
    """``python tools/regen_protos.py [--check] [--out DIR] [PACKAGE...]``."""
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description=(
            "Regenerate the committed protobuf stubs with "
            f"grpcio-tools=={toolchain.GRPCIO_TOOLS_VERSION}. Exit status: 0 done or current, "
            "1 stale (with --check), 2 grpcio-tools or protoc trouble."
        ),
    )
    parser.add_argument(
        "packages",
        nargs="*",
        metavar="PACKAGE",
        help=f"which packages (default: all of {', '.join(PACKAGES)})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if a committed stub is missing or differs from a fresh run",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT,
        help="root to write to or check, laid out like the repository (default: the checkout)",
    )
    parser.add_argument(
        "--allow-version-mismatch",
        action="store_true",
        help=f"run with a grpcio-tools other than {toolchain.GRPCIO_TOOLS_VERSION}",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate, or with ``--check`` compare, the selected packages' stubs."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Checked here rather than with ``choices``: how argparse matches an empty ``nargs="*"``
    # against choices differs between Python releases.
    unknown = sorted(set(args.packages) - set(PACKAGES))
    if unknown:
        parser.error(f"unknown package {', '.join(unknown)}; choose from {', '.join(PACKAGES)}")
    selected = [PACKAGES[name] for name in args.packages or PACKAGES]
    mismatch_ok = args.allow_version_mismatch
    try:
        if not args.check:
            fresh = render_all(selected, allow_version_mismatch=mismatch_ok)
            for path in write(fresh, args.out):
                print(f"wrote {path}")
            return 0
        stale = stale_files(selected, args.out, allow_version_mismatch=mismatch_ok)
    except toolchain.RegenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for key in stale:
        print(f"stale: {args.out / key}", file=sys.stderr)
    if stale:
        print(f"regenerate with: {COMMAND} {' '.join(args.packages)}".rstrip(), file=sys.stderr)
        return 1
    print("generated stubs are up to date")
    return 0
