"""The syntax of ``QR_ARMS``: ``name=source,name=source``."""

from __future__ import annotations

import re

from qr_sampler.settings.names import comma_list

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def parse_arms(value: str) -> tuple[tuple[str, str], ...]:
    """(arm, source) pairs in the order given; ``ValueError`` saying what is wrong."""
    arms: list[tuple[str, str]] = []
    for item in comma_list(value):
        name, sep, source = (text.strip() for text in item.partition("="))
        if not sep or not source:
            raise ValueError(f"{item!r} is not name=source, e.g. 'qrng=quantum_grpc,control=prng'")
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"arm name {name!r} must be 1-64 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
        if name in (arm for arm, _ in arms):
            raise ValueError(f"arm {name!r} is listed twice")
        arms.append((name, source))
    return tuple(arms)
