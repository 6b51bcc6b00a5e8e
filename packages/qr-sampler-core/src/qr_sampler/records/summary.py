"""The periodic summary line a sampler logs when ``QR_LOG_LEVEL`` is not ``none``."""

from __future__ import annotations

import logging
import time

logger = logging.getLogger("qr_sampler")


class SummaryLog:
    """One INFO line every ``interval_s`` with what the sampler did since the last."""

    def __init__(self, enabled: bool, interval_s: float = 10.0) -> None:
        self.enabled = enabled
        self.interval_s = interval_s
        self._reset(time.monotonic())

    def _reset(self, now: float) -> None:
        self._since = now
        self._tokens = 0
        self._fallback_tokens = 0
        self._steps = 0
        self._fetch_ms = 0.0
        self._max_fetch_ms = 0.0
        self._health_failures = 0

    def add_step(
        self, tokens: int, fallback_tokens: int, fetch_ms: float, health_failures: int = 0
    ) -> None:
        if not self.enabled:
            return
        self._steps += 1
        self._tokens += tokens
        self._fallback_tokens += fallback_tokens
        self._health_failures += health_failures
        self._fetch_ms += fetch_ms
        self._max_fetch_ms = max(self._max_fetch_ms, fetch_ms)
        now = time.monotonic()
        if now - self._since >= self.interval_s:
            logger.info(
                "qr-sampler: %d tokens in %d steps over %.1f s; fallback tokens %d; "
                "failed health tests %d; entropy fetch mean %.2f ms, max %.2f ms",
                self._tokens,
                self._steps,
                now - self._since,
                self._fallback_tokens,
                self._health_failures,
                self._fetch_ms / self._steps,
                self._max_fetch_ms,
            )
            self._reset(now)
