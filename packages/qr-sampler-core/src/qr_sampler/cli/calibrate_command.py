"""``qr-sampler calibrate``: is the configured source's output what the amplifier assumes?"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from qr_sampler.cli.output import print_json
from qr_sampler.cli.probe_command import whole_number_up_to
from qr_sampler.entropy.factory import build_entropy_source
from qr_sampler.entropy.health import HealthCutoffs
from qr_sampler.errors import EntropyUnavailableError, QRSamplerError
from qr_sampler.experiments.calibration import calibrate
from qr_sampler.settings.config import QRSamplerConfig

_CHUNK = 1 << 20
# Every byte is held for the statistics: a bound that any machine can hold.
MAX_BYTES = 1 << 30


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "calibrate",
        help="check the configured source's bytes against what the amplifier assumes",
        description="Draw N bytes from the source named by QR_ENTROPY_SOURCE_TYPE (no "
        "fallback) and report their mean and std against QR_POPULATION_MEAN/STD, a "
        "most-common-value min-entropy estimate, a byte chi-square, the health tests' "
        "verdict, and what the measured offset does to z at QR_SAMPLE_COUNT. Exits 1 "
        "when something is wrong, printing the settings that would correct an offset.",
    )
    parser.add_argument(
        "--bytes",
        type=whole_number_up_to(MAX_BYTES),
        default=4 << 20,
        metavar="N",
        help=f"bytes to draw, 1 to {MAX_BYTES} (default 4 MiB)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = QRSamplerConfig.load()
    source = build_entropy_source(config).primary
    chunks = []
    try:
        for start in range(0, args.bytes, _CHUNK):
            size = min(_CHUNK, args.bytes - start)
            data = source.get_random_bytes(size)
            if len(data) != size:
                raise EntropyUnavailableError(f"returned {len(data)} bytes, expected {size}")
            chunks.append(np.frombuffer(data, dtype=np.uint8))
    except EntropyUnavailableError as exc:
        raise QRSamplerError(f"entropy source {source.name!r} failed: {exc}") from None
    finally:
        source.close()
    result = calibrate(
        chunks,
        HealthCutoffs.for_min_entropy(config.health_min_entropy),
        config.sample_count,
        config.population_mean,
        config.population_std,
    )
    problems = result.problems()
    if args.json:
        print_json({"source": source.name, **result.to_dict()})
    else:
        print(f"source:          {source.name}, {result.bytes} bytes")
        print(f"mean:            {result.mean:.4f} (expected {result.expected_mean})")
        print(f"std:             {result.std:.4f} (expected {result.expected_std:.4f})")
        print(f"MCV min-entropy: {result.mcv_min_entropy:.3f} bits/byte")
        print(f"chi-square:      {result.chi_square:.1f} (255 df, p={result.chi_square_p:.3g})")
        verdict = result.health_first_failure or "pass"
        print(f"health tests:    {verdict}")
        print(
            f"z at n={result.sample_count}: shift {result.z_shift:+.3f}, scale "
            f"{result.z_scale:.4f}; u is {result.u_ks_distance:.3f} from uniform (KS)"
        )
        print("verdict:         " + ("; ".join(problems) if problems else "ok"))
    return 1 if problems else 0
