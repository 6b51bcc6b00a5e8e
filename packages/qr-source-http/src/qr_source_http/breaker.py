"""The two reasons to fail a draw without calling the service.

An open breaker: draws kept failing on network errors or 5xx, so the service is taken
to be down until a recovery window has passed; then one draw probes it. A quota hold:
the service answered 429 with a ``Retry-After`` longer than a draw can wait, so calling
before that time would only be refused again (and may count against the quota).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from qr_sampler import EntropyUnavailableError
from qr_source_http.failures import QuotaExceededError

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class Gate:
    """Admits draws; thread-safe. ``clock`` returns seconds (tests step a fake one)."""

    def __init__(
        self, failures: int, recovery_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit = failures
        self._recovery_s = recovery_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self._quota_until = 0.0

    def admit(self) -> None:
        """Return to let a draw call the service; raise to fail it at once."""
        with self._lock:
            now = self._clock()
            if now < self._quota_until:
                raise QuotaExceededError(
                    "the service's quota or rate limit is reached (HTTP 429), not an outage; "
                    f"it asked for no calls before {self._quota_until - now:.0f} s from now"
                )
            if self._state == CLOSED:
                return
            waited = now - self._opened_at
            if self._state == OPEN and waited >= self._recovery_s:
                self._state = HALF_OPEN
            if self._state == HALF_OPEN and not self._probing:
                self._probing = True
                return
            raise EntropyUnavailableError(
                f"circuit breaker open after {self._failures} failed draws in a row; next "
                f"probe in {max(0.0, self._recovery_s - waited):.1f} s"
            )

    def succeeded(self) -> None:
        with self._lock:
            self._state, self._failures, self._probing = CLOSED, 0, False

    def failed(self) -> None:
        """A draw failed because the service seems down (network, timeout, 5xx)."""
        with self._lock:
            self._failures += 1
            if self._state == HALF_OPEN or self._failures >= self._limit:
                self._state = OPEN
                self._opened_at = self._clock()
            self._probing = False

    def refused(self, retry_after_s: float | None = None) -> None:
        """The service answered but gave no bytes: not an outage, yet a probe is over."""
        with self._lock:
            self._probing = False
            if retry_after_s is not None:
                self._quota_until = max(self._quota_until, self._clock() + retry_after_s)

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            held = max(0.0, self._quota_until - self._clock())
            return {
                "breaker_state": self._state,
                "consecutive_failures": self._failures,
                "quota_hold_s": round(held, 3),
            }
