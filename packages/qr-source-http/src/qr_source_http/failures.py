"""What can go wrong in one call, sorted by what the source does about it.

Network errors, timeouts and 5xx replies are the service being down or overloaded:
retried, and they feed the breaker. A 429 is a quota or rate limit, not an outage:
retried only when the wait it asks for fits the draw's deadline, and never held against
the service. Rejections (401, 403, other 4xx) and replies that carry no usable bytes fail
the draw at once: asking again would get the same answer.
"""

from __future__ import annotations

from qr_sampler import EntropyUnavailableError


class CallError(Exception):
    """One call failed; the message names the likely cause."""


class TransientError(CallError):
    """Retried up to QR_HTTP_RETRY_COUNT; counts toward the breaker."""


class RateLimitedError(CallError):
    """HTTP 429; ``retry_after_s`` is the wait the service asked for, if it said."""

    def __init__(self, message: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RejectedError(CallError):
    """The service refused the request; not retried."""


class MalformedReplyError(RejectedError):
    """A 2xx reply without the bytes its format promises; not retried."""


class ServiceFailedError(MalformedReplyError):
    """The reply says the service failed (``success: false``, an ``error`` field)."""


class QuotaExceededError(EntropyUnavailableError):
    """The draw failed on a 429: records of fallback tokens say so."""

    reason = "quota or rate limit"
