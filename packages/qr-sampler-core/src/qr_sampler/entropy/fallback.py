"""Wraps the configured source so that an outage is flagged, never hidden."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qr_sampler.entropy.base import (
    DeviceWord,
    EntropySource,
    TokenBytes,
    TokenKey,
    check_byte_count,
)
from qr_sampler.entropy.health import HealthTests
from qr_sampler.errors import EntropyUnavailableError, HealthTestError

logger = logging.getLogger(__name__)

# Strict-mode retry pauses: quick enough to ride out a blip, capped so that a
# recovered source is noticed within a fraction of a second.
_FIRST_PAUSE_S = 0.02
_MAX_PAUSE_S = 0.5


@dataclass(frozen=True)
class EntropyDraw:
    """Bytes together with where they came from, for the token records."""

    data: bytes
    source: str
    fallback: bool
    fetch_ms: float
    #: Why the primary was not used (``EntropyUnavailableError.reason``); None if it was.
    fallback_reason: str | None = None
    #: The primary's ``served_by()`` for this draw.
    server: str | None = None
    #: The primary's ``device_said()`` for this draw.
    device: DeviceWord | None = None


class FallbackEntropySource(EntropySource):
    """Serves from ``primary``; on ``EntropyUnavailableError`` serves from ``fallback``.

    With ``fallback=None`` (``QR_FALLBACK_MODE=error``) no other source is ever used,
    which is what a strict experiment wants: the draw retries the primary with backoff
    for up to ``strict_wait_s`` (a short outage only delays the step), then the error
    propagates and the caller ends the step's requests. ``health`` tests every byte
    the primary delivers; a draw that fails them is not used.
    """

    def __init__(
        self,
        primary: EntropySource,
        fallback: EntropySource | None,
        health: HealthTests | None = None,
        strict_wait_s: float = 0.0,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.health = health
        self.strict_wait_s = strict_wait_s
        self.name = primary.name
        self._lock = threading.Lock()
        self._failing = False
        self._fallback_draws = 0

    def draw(self, n: int, tokens: Sequence[TokenKey] | None = None) -> EntropyDraw:
        """Fetch ``n`` bytes and say which source delivered them. ``tokens`` says whose
        they are (their counts add up to ``n``), for a primary that serves bytes token
        by token (``token_bytes``); any other source ignores it."""
        check_byte_count(n)
        start = time.perf_counter()
        book = self.primary.token_bytes() if tokens is not None else None
        try:
            data = (
                self._from_primary(n, tokens, book)
                if self.fallback is not None
                else self._strict(n, start, tokens, book)
            )
        except EntropyUnavailableError as exc:
            if self.fallback is None:
                raise
            self._note_failure(exc)
            data = self.fallback.get_random_bytes(n)
            return EntropyDraw(data, self.fallback.name, True, _ms_since(start), exc.reason)
        self._note_recovery()
        return EntropyDraw(
            data,
            self.primary.name,
            False,
            _ms_since(start),
            server=self.primary.served_by(),
            device=self.primary.device_said(),
        )

    def get_random_bytes(self, n: int) -> bytes:
        return self.draw(n).data

    def token_bytes(self) -> TokenBytes | None:
        return self.primary.token_bytes()

    def _from_primary(
        self, n: int, tokens: Sequence[TokenKey] | None, book: TokenBytes | None
    ) -> bytes:
        data = (
            book.bytes_for(tokens)
            if book is not None and tokens is not None
            else self.primary.get_random_bytes(n)
        )
        if len(data) != n:
            raise EntropyUnavailableError(
                f"source {self.primary.name!r} returned {len(data)} bytes, expected {n}"
            )
        if self.health is not None:
            self.health.check(data)
        return data

    def _strict(
        self,
        n: int,
        start: float,
        tokens: Sequence[TokenKey] | None,
        book: TokenBytes | None,
    ) -> bytes:
        """The primary's bytes, retried with doubling pauses until ``strict_wait_s``."""
        deadline = start + self.strict_wait_s
        pause = _FIRST_PAUSE_S
        while True:
            try:
                return self._from_primary(n, tokens, book)
            except EntropyUnavailableError as exc:
                left = deadline - time.perf_counter()
                if left <= 0:
                    # A failed health test stays one, so records and callers see why.
                    kind = (
                        HealthTestError
                        if isinstance(exc, HealthTestError)
                        else EntropyUnavailableError
                    )
                    raise kind(
                        f"{exc} (strict mode, QR_FALLBACK_MODE=error: source "
                        f"{self.primary.name!r} retried for {self.strict_wait_s:g} s, "
                        "QR_STRICT_WAIT_S)"
                    ) from exc
                time.sleep(min(pause, left))
                pause = min(pause * 2, _MAX_PAUSE_S)

    def _note_failure(self, exc: EntropyUnavailableError) -> None:
        # One warning per outage, not one per token: a dead server must not flood logs.
        with self._lock:
            self._fallback_draws += 1
            first = not self._failing
            self._failing = True
        if first:
            assert self.fallback is not None
            logger.warning(
                "entropy source %r unavailable (%s); drawing from %r, every such token "
                "is flagged fallback=true",
                self.primary.name,
                exc,
                self.fallback.name,
            )

    def _note_recovery(self) -> None:
        with self._lock:
            recovered = self._failing
            self._failing = False
        if recovered:
            logger.warning("entropy source %r recovered", self.primary.name)

    def health_check(self) -> dict[str, Any]:
        return {
            "source": self.primary.name,
            "primary": self.primary.health_check(),
            "fallback": self.fallback.name if self.fallback is not None else None,
            "fallback_draws": self._fallback_draws,
            "health_tests": None if self.health is None else self.health.summary(),
        }

    def close(self) -> None:
        self.primary.close()
        if self.fallback is not None:
            self.fallback.close()


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
