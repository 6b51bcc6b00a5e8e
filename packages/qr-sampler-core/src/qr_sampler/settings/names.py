"""Names a user typed: lists of them in one setting, and did-you-mean hints."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, known: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The known name ``name`` was most likely meant to be, if one is close enough."""
    matches = difflib.get_close_matches(name, sorted(known), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def did_you_mean(name: str, known: Iterable[str], cutoff: float = 0.6) -> str:
    """``"; did you mean 'x'?"`` or ``""``, to append to a message."""
    match = closest(name, known, cutoff)
    return f"; did you mean {match!r}?" if match else ""


def comma_list(value: str) -> list[str]:
    """The items of a comma-separated setting, in order, stripped, blanks dropped."""
    return [item for item in (part.strip() for part in value.split(",")) if item]
