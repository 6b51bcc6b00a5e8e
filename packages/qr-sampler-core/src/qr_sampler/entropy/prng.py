"""The built-in ``prng`` source: a seeded, reproducible control for experiments.

The bytes are numpy's PCG64 bit generator (PCG XSL RR 128/64, O'Neill 2014) seeded
through ``numpy.random.SeedSequence(QR_PRNG_SEED)``: each 64-bit output is written
little-endian, and the source's bytes are those outputs concatenated, one stream
across all draws of one source instance. The first ``n`` bytes of a run are
therefore::

    numpy.random.PCG64(seed).random_raw(-(-n // 8)).astype("<u8").tobytes()[:n]

numpy keeps every bit generator's stream fixed across releases, so a seed
reproduces a run's bytes on any machine. Not for secrets: it is a control arm.
"""

from __future__ import annotations

import logging
import secrets
import threading

import numpy as np
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from qr_sampler.entropy.base import EntropySource, check_byte_count
from qr_sampler.settings.base import QRSettings

logger = logging.getLogger(__name__)

_WORD = 8


class PRNGSettings(QRSettings):
    """``QR_PRNG_*``: the seed of the ``prng`` source."""

    model_config = SettingsConfigDict(env_prefix="QR_PRNG_")

    seed: int | None = Field(
        default=None,
        ge=0,
        lt=1 << 63,
        description="PCG64 seed; unset draws a random one, logged and written to records",
    )


class PRNGEntropySource(EntropySource):
    """Bytes of PCG64 seeded by ``QR_PRNG_SEED`` (see the module docstring to reproduce)."""

    name = "prng"

    def __init__(self, settings: PRNGSettings | None = None) -> None:
        settings = settings if settings is not None else PRNGSettings.load()
        chosen = settings.seed is None
        #: The seed in use; every token record of this source carries it.
        self.seed: int = secrets.randbits(63) if settings.seed is None else settings.seed
        self._generator = np.random.PCG64(self.seed)
        self._leftover = b""
        self._lock = threading.Lock()
        logger.info(
            "prng entropy source seeded with %d%s",
            self.seed,
            " (QR_PRNG_SEED unset: set it to this value to reproduce the run)" if chosen else "",
        )

    def separate(self, key: tuple[int, ...]) -> None:
        """Draw from the ``key`` child of the seed instead, whose own seed (the
        records' ``prng_seed``) reproduces it as any seed does."""
        child = np.random.SeedSequence(self.seed, spawn_key=key)
        seed = int(child.generate_state(1, np.uint64)[0] >> np.uint64(1))
        with self._lock:
            self.seed, self._generator, self._leftover = seed, np.random.PCG64(seed), b""
        logger.info("prng entropy source for engine and arm %s seeded with %d", key, seed)

    def get_random_bytes(self, n: int) -> bytes:
        check_byte_count(n)
        with self._lock:
            # Whole 64-bit outputs are drawn; bytes left over open the next draw, so
            # the stream does not depend on how it was cut into draws.
            missing = n - len(self._leftover)
            words = -(-missing // _WORD) if missing > 0 else 0
            fresh = self._generator.random_raw(words).astype("<u8").tobytes()
            stream = self._leftover + fresh
            self._leftover = stream[n:]
            return stream[:n]

    def health_check(self) -> dict[str, object]:
        return {"source": self.name, "healthy": True, "seed": self.seed}
