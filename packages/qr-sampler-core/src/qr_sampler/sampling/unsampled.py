"""Rows the sampler could not choose a token for, counted where they happen.

A row whose logits are all -inf or hold NaN/inf has no distribution to draw from;
it is left to the engine's own sampler. Knowing how many such rows a step had
means reading the device, and a step must not wait for that, so the count is
kept on the device and read at most once per interval (and at the first step).
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("qr_sampler")


class UnsampledRows:
    """Counts rows left to the engine's sampler; one WARNING per interval if any."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._count: torch.Tensor | None = None
        self._last_read = -math.inf
        #: Every row counted so far, as of the last read.
        self.total = 0

    def add(self, rows: torch.Tensor) -> None:
        """Count the rows where ``rows`` (a bool tensor) is True; read if due."""
        added = rows.sum()
        self._count = added if self._count is None else self._count + added
        if time.monotonic() - self._last_read >= self.interval_s:
            self.read()

    def read(self) -> None:
        """Read the count now (waits for the device) and warn if it is not zero."""
        self._last_read = time.monotonic()
        if self._count is None:
            return
        count, self._count = int(self._count), None
        if count:
            self.total += count
            logger.warning(
                "left %d row(s) to vLLM's sampler: their logits are all -inf or hold "
                "NaN/inf, so no token can be chosen from a distribution",
                count,
            )
