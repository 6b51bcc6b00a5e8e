"""Printing helpers shared by the commands."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for line in (header, *rows):
        print(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)
            ).rstrip()
        )


def setting_text(value: Any) -> str:
    """A value as it would be written in a dotenv file: ``true``, not ``True``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def flat_rows(value: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """A nested mapping as (dotted name, readable value) rows, for a two-column table."""
    rows: list[tuple[str, str]] = []
    for name, item in value.items():
        if isinstance(item, Mapping) and item:
            rows += flat_rows(item, f"{prefix}{name}.")
        else:
            rows.append((f"{prefix}{name}", readable(item)))
    return rows


def readable(value: Any) -> str:
    """A value for people: ``true``, ``1.235`` rather than ``1.2345678901234``, lists joined."""
    if isinstance(value, float):
        # Four significant digits are more than a latency or a rate can mean.
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(readable(item) for item in value) or "-"
    if isinstance(value, Mapping):
        return "-"
    return setting_text(value) or "-"
