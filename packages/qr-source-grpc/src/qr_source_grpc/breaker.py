"""Adaptive deadline and circuit breaker: a slow or dead server costs milliseconds, not
seconds, before the core's fallback takes over."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from qr_sampler import EntropyUnavailableError

from qr_source_grpc.settings import CircuitBreakerSettings

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


def _p99(values: list[float]) -> float:
    """Nearest-rank 99th percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


class CircuitBreaker:
    """Rolling p99 latency, and the closed / open / half-open state of the server.

    ``clock`` returns seconds; tests pass a fake one to step through the recovery window.
    """

    def __init__(
        self,
        settings: CircuitBreakerSettings,
        timeout_cap_ms: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._cap_ms = timeout_cap_ms
        self._clock = clock
        self._lock = threading.Lock()
        # (latency ms, bytes delivered) of recent successful calls.
        self._samples: deque[tuple[float, int]] = deque(maxlen=settings.window_size)
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    def admit(self) -> None:
        """Let a call through, or raise at once while the breaker is open.

        After the recovery window one caller becomes the half-open probe; the others keep
        failing fast until the probe has answered.
        """
        with self._lock:
            if self._state == CLOSED:
                return
            waited = self._clock() - self._opened_at
            if self._state == OPEN and waited >= self._settings.recovery_window_s:
                self._state = HALF_OPEN
            if self._state == HALF_OPEN and not self._probing:
                self._probing = True
                return
            retry_in = max(0.0, self._settings.recovery_window_s - waited)
            failures = self._failures
        raise EntropyUnavailableError(
            f"circuit breaker open after {failures} consecutive transport failures; "
            f"next probe in {retry_in:.1f} s"
        )

    def deadline_s(self, count: int) -> float:
        """The deadline for a call asking for ``count`` bytes.

        max(min timeout, p99 x multiplier), capped by QR_GRPC_TIMEOUT_MS, which also applies
        until there is a sample. A sample is scaled up when the call asks for more bytes than
        it carried: a whole batch takes longer than one row, and a p99 learned on small
        draws would otherwise time out every large one.
        """
        with self._lock:
            scaled = [ms * max(1.0, count / size) for ms, size in self._samples]
        if not scaled:
            return self._cap_ms / 1000.0
        adaptive = max(
            self._settings.min_timeout_ms, _p99(scaled) * self._settings.timeout_multiplier
        )
        return min(adaptive, self._cap_ms) / 1000.0

    def record_success(self, latency_ms: float, size: int) -> None:
        with self._lock:
            self._samples.append((latency_ms, size))
            self._state = CLOSED
            self._failures = 0
            self._probing = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if (
                self._state == HALF_OPEN
                or self._failures >= self._settings.max_consecutive_failures
            ):
                self._state = OPEN
                self._opened_at = self._clock()
            self._probing = False

    def record_rejection(self) -> None:
        """The server answered but refused: not a transport failure, yet the probe is over."""
        with self._lock:
            self._probing = False

    def snapshot(self) -> dict[str, Any]:
        """State and latency figures for ``health_check()``."""
        with self._lock:
            latencies = [ms for ms, _ in self._samples]
            return {
                "breaker_state": self._state,
                "consecutive_failures": self._failures,
                "last_latency_ms": latencies[-1] if latencies else None,
                "p99_latency_ms": _p99(latencies) if latencies else None,
            }
