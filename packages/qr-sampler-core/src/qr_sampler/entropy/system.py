"""The built-in ``system`` source: the operating system's CSPRNG."""

from __future__ import annotations

import os

from qr_sampler.entropy.base import EntropySource, check_byte_count


class SystemEntropySource(EntropySource):
    """``os.urandom``: always available, needs no configuration."""

    name = "system"

    def get_random_bytes(self, n: int) -> bytes:
        check_byte_count(n)
        return os.urandom(n)
