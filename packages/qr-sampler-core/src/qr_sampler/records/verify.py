"""Checks token records against the bytes that chose them, with no engine involved.

For every record: the SHA-256 of its bytes in the archive, then the sample mean, z
and u recomputed from those bytes by the record's own amplifier and parameters.
Without the archive, z and u are recomputed from the recorded sample mean where
the amplifier allows it (``zscore_mean`` does). Then the token's place: u must lie
in the CDF interval the record gives the token (``cdf_low`` to ``cdf_low +
token_prob``, the distribution after the recorded policy), and a greedy token,
chosen by no bytes, must be the most probable one.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from qr_sampler.plugins.registry import Registry, get_registry
from qr_sampler.records.provenance import sha256_hex
from qr_sampler.settings.config import NUMERIC_FIELDS, SamplingOptions

#: Recomputed floats must agree to this relative tolerance: a few units in the last
#: place, so another machine's libm may differ but no edited value passes.
RELATIVE_TOLERANCE = 1e-12
#: u may sit this far outside its token's recorded interval: the interval's ends are
#: float64 sums over the vocabulary, the walk's own (see the README's tolerance).
INTERVAL_TOLERANCE = 1e-9

_AMPLIFIER_FIELDS = ("population_mean", "population_std", "uniform_clamp_epsilon")
_NEEDED = (
    "sample_count",
    "sample_mean",
    "z_score",
    "u",
    "signal_amplifier_type",
    *_AMPLIFIER_FIELDS,
)
_DEFAULTS = SamplingOptions()


@dataclass(frozen=True)
class Mismatch:
    line: int
    field: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: expected {self.expected}, found {self.found}"


@dataclass
class VerifyReport:
    checked: int = 0
    #: Records whose u could not be recomputed (no archive and an amplifier that
    #: needs the bytes).
    unchecked: int = 0
    #: Strict-mode records of tokens that ended a request for want of entropy: no
    #: bytes chose them, so there is nothing to recompute.
    ended: int = 0
    #: Greedy tokens (the argmax, no bytes): checked to be rank 0 and carry no u.
    greedy: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)


def verify(
    records_path: str, bytes_path: str | None = None, registry: Registry | None = None
) -> VerifyReport:
    """Check every record of ``records_path``; ``bytes_path`` is the ``QR_BYTES_PATH`` archive."""
    registry = registry if registry is not None else get_registry()
    report = VerifyReport()
    archive: BinaryIO | None = open(bytes_path, "rb") if bytes_path else None  # noqa: SIM115
    try:
        size = os.fstat(archive.fileno()).st_size if archive is not None else 0
        for number, record in _records(records_path, report):
            if record.get("end_reason"):
                report.ended += 1
                continue
            if record.get("greedy") and record.get("sample_count") == 0:
                report.greedy += 1
                report.mismatches.extend(_check_greedy(number, record))
                continue
            problems = _check(number, record, archive, size, registry)
            if problems is None:
                report.unchecked += 1
                continue
            report.checked += 1
            report.mismatches.extend(problems)
    finally:
        if archive is not None:
            archive.close()
    return report


def _records(path: str, report: VerifyReport) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                report.mismatches.append(
                    Mismatch(
                        number,
                        "(line)",
                        "a JSON record",
                        f"text that is not JSON ({exc.msg.lower()} at column {exc.colno}: "
                        f"{_excerpt(line)}); a records file holds one JSON object per line",
                    )
                )
                continue
            if not isinstance(record, dict):
                report.mismatches.append(
                    Mismatch(
                        number,
                        "(line)",
                        "a JSON record (an object)",
                        f"a JSON {_JSON_TYPES.get(type(record), type(record).__name__)}",
                    )
                )
                continue
            yield number, record


_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}
_JSON_TYPES[type(None)] = "null"


def _excerpt(line: str, width: int = 40) -> str:
    text = line.strip()
    return repr(text if len(text) <= width else text[:width] + "...")


def _check(
    number: int, record: Mapping[str, Any], archive: BinaryIO | None, size: int, registry: Registry
) -> list[Mismatch] | None:
    missing = [name for name in _NEEDED if not isinstance(record.get(name), (int, float, str))]
    if missing:
        return [Mismatch(number, name, "a value", "missing") for name in missing]
    name = record["signal_amplifier_type"]
    component = registry.amplifiers.get(name)
    if component is None:
        installed = ", ".join(sorted(registry.amplifiers))
        return [Mismatch(number, "signal_amplifier_type", f"one of {installed}", repr(name))]
    count = int(record["sample_count"])
    params = _params(record)
    if archive is not None:
        data, problems = _bytes_of(number, record, archive, size, count)
        if data is None:
            return problems
        amplified = component.value.amplify(
            np.frombuffer(data, dtype=np.uint8),
            np.zeros(1, dtype=np.int64),
            np.full(1, count, dtype=np.int64),
            params,
        )
    elif hasattr(component.value, "from_means"):
        problems = []
        amplified = component.value.from_means(
            np.array([float(record["sample_mean"])]), np.array([float(count)]), params
        )
    else:
        return None
    for key, value in (
        ("sample_mean", amplified.sample_mean[0]),
        ("z_score", amplified.z_score[0]),
        ("u", amplified.u[0]),
    ):
        found = float(record[key])
        if not math.isclose(found, float(value), rel_tol=RELATIVE_TOLERANCE, abs_tol=0.0):
            problems.append(Mismatch(number, key, repr(float(value)), repr(found)))
    return problems + _check_interval(number, record)


def _check_interval(number: int, record: Mapping[str, Any]) -> list[Mismatch]:
    """u inside the token's CDF interval, as the record gives it (records written
    before intervals were recorded have no ``cdf_low`` and pass)."""
    low, prob, u = record.get("cdf_low"), record.get("token_prob"), float(record["u"])
    if record.get("greedy") or not isinstance(low, (int, float)):
        return []
    if not isinstance(prob, (int, float)) or not 0 < prob <= 1:
        return [Mismatch(number, "token_prob", "a probability in (0, 1]", repr(prob))]
    if not low - INTERVAL_TOLERANCE <= u <= low + prob + INTERVAL_TOLERANCE:
        return [
            Mismatch(
                number,
                "u",
                f"a value in the token's interval [{low!r}, {low + prob!r})",
                repr(u),
            )
        ]
    return []


def _check_greedy(number: int, record: Mapping[str, Any]) -> list[Mismatch]:
    """A greedy token took no bytes, is the most probable token and says so."""
    expected = {"u": None, "entropy_sha256": None, "token_rank": 0, "token_prob": 1.0}
    return [
        Mismatch(number, name, repr(value), repr(record.get(name)))
        for name, value in expected.items()
        if record.get(name) != value
    ]


def _params(record: Mapping[str, Any]) -> dict[str, np.ndarray[Any, np.dtype[np.float64]]]:
    """Every numeric option as a one-row column: the record's value where it has one."""
    return {
        name: np.array([float(record.get(name, getattr(_DEFAULTS, name)))])
        for name in NUMERIC_FIELDS
    }


def _bytes_of(
    number: int, record: Mapping[str, Any], archive: BinaryIO, size: int, count: int
) -> tuple[bytes | None, list[Mismatch]]:
    offset = record.get("bytes_offset")
    if not isinstance(offset, int) or offset < 0:
        return None, [Mismatch(number, "bytes_offset", "an offset into the archive", repr(offset))]
    if offset + count > size:
        return None, [
            Mismatch(
                number,
                "bytes_offset",
                f"bytes {offset} to {offset + count} in the archive",
                f"an archive of {size} bytes (cut short, or not this run's QR_BYTES_PATH?)",
            )
        ]
    archive.seek(offset)
    data = archive.read(count)
    digest = sha256_hex(data)
    if digest != record.get("entropy_sha256"):
        return data, [
            Mismatch(number, "entropy_sha256", digest, repr(record.get("entropy_sha256")))
        ]
    return data, []
