"""Adaptive deadline and circuit breaker.

The adaptive deadline notices a reply that is late by the server's own recent standard,
so that a lost or stuck request is asked again early; it is never evidence that the server
is down. Only failures at the full ``QR_GRPC_TIMEOUT_MS`` (or errors such as UNAVAILABLE)
count toward opening the breaker, and a dead server then costs nothing until the next
probe.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from qr_sampler import EntropyUnavailableError

from qr_source_grpc.settings import CircuitBreakerSettings

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

#: The adaptive deadline is never below this share of QR_GRPC_TIMEOUT_MS: on a loaded
#: machine a healthy server's reply is often several times later than its p99.
FLOOR_SHARE_OF_TIMEOUT = 0.05


class Attempt(NamedTuple):
    """What ``admit`` allows one call."""

    timeout_s: float
    #: The adaptive deadline, below QR_GRPC_TIMEOUT_MS: missing it only means "slower
    #: than learned", so the caller asks again with the full timeout.
    shortened: bool
    #: The half-open probe, which decides whether the breaker closes.
    probe: bool
    #: Failures counted before this call was let through (see ``record_failure``).
    epoch: int = 0


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
        self._counted = 0
        self._opened_at = 0.0
        self._probing = False

    def admit(self, count: int, *, full_timeout: bool = False) -> Attempt:
        """Let a call for ``count`` bytes through with its timeout, or raise at once while
        the breaker is open.

        After the recovery window one caller becomes the half-open probe, with the full
        QR_GRPC_TIMEOUT_MS (a deadline learned before the server slowed down would fail
        it every time); the others keep failing fast until the probe has answered.
        """
        with self._lock:
            probe = self._admit_probe() if self._state != CLOSED else False
            epoch = self._counted
        timeout_s = self._cap_ms / 1000.0 if probe or full_timeout else self.deadline_s(count)
        return Attempt(timeout_s, timeout_s * 1000.0 < self._cap_ms, probe, epoch)

    def _admit_probe(self) -> bool:
        """With the lock held and the breaker not closed: True for the probe, else raise."""
        waited = self._clock() - self._opened_at
        if self._state == OPEN and waited >= self._settings.recovery_window_s:
            self._state = HALF_OPEN
        if self._state == HALF_OPEN and not self._probing:
            self._probing = True
            return True
        retry_in = max(0.0, self._settings.recovery_window_s - waited)
        raise EntropyUnavailableError(
            f"circuit breaker open after {self._failures} consecutive transport failures; "
            f"next probe in {retry_in:.1f} s"
        )

    def deadline_s(self, count: int) -> float:
        """The deadline for a call asking for ``count`` bytes.

        max(floor, p99 x multiplier), capped by QR_GRPC_TIMEOUT_MS, which also applies
        until there is a sample. The floor is QR_CB_MIN_TIMEOUT_MS or 5% of
        QR_GRPC_TIMEOUT_MS, whichever is larger. A sample is scaled up when the call asks
        for more bytes than it carried: a whole batch takes longer than one row, and a p99
        learned on small draws would otherwise time out every large one.
        """
        with self._lock:
            scaled = [ms * max(1.0, count / size) for ms, size in self._samples]
        if not scaled:
            return self._cap_ms / 1000.0
        floor = max(self._settings.min_timeout_ms, self._cap_ms * FLOOR_SHARE_OF_TIMEOUT)
        adaptive = max(floor, _p99(scaled) * self._settings.timeout_multiplier)
        return min(adaptive, self._cap_ms) / 1000.0

    def record_success(self, latency_ms: float, size: int, *, relearn: bool = False) -> None:
        """A call that delivered; ``relearn`` (a probe, or a call that needed the full
        timeout) drops the latencies learned before, which no longer describe the server."""
        with self._lock:
            if relearn:
                self._samples.clear()
            self._samples.append((latency_ms, size))
            self._state = CLOSED
            self._failures = 0
            self._probing = False

    def record_failure(self, attempt: Attempt | None = None) -> None:
        """A transport failure of ``attempt``. Calls that were already in flight when
        another failure was counted are not counted again: a server that dies fails every
        call it held at the same moment, and behind a balanced target the other servers
        still answer, so one event must not open the breaker for the whole set."""
        with self._lock:
            if attempt is not None and attempt.epoch != self._counted:
                return
            self._counted += 1
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
