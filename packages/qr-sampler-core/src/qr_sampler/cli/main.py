"""``qr-sampler``: inspect sources, check configuration, probe the entropy source,
manage deployment profiles, scaffold new source packages, and check, analyse or
simulate token records."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from qr_sampler.cli import (
    analyze_command,
    calibrate_command,
    config_command,
    keys_command,
    probe_command,
    profile_command,
    simulate_command,
    source_command,
    sources_command,
    verify_command,
)
from qr_sampler.errors import QRSamplerError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qr-sampler",
        description="Tools for the qr-sampler vLLM plugin.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (
        sources_command,
        config_command,
        probe_command,
        source_command,
        profile_command,
        verify_command,
        keys_command,
        analyze_command,
        calibrate_command,
        simulate_command,
    ):
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
        # Flushed here, a reader that left surfaces below rather than at interpreter exit.
        sys.stdout.flush()
    except QRSamplerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader left (`qr-sampler config | head`): that is not an error. Point stdout
        # at nothing so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
