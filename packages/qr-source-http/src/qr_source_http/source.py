"""``http``: random bytes from a REST QRNG service whose format is configuration."""

from __future__ import annotations

import logging
import math
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlsplit

import httpx

from qr_sampler import ConfigValidationError, EntropySource, EntropyUnavailableError, mask_secret
from qr_sampler.entropy.base import check_byte_count
from qr_source_http.breaker import Gate
from qr_source_http.call import CallResult, OutOfTimeError, call
from qr_source_http.failures import (
    CallError,
    QuotaExceededError,
    RateLimitedError,
    TransientError,
)
from qr_source_http.settings import HttpApi, HttpSourceSettings

logger = logging.getLogger(__name__)

#: First pause before a retry; it doubles each time, always within the draw's deadline.
FIRST_BACKOFF_S = 0.05
#: Latencies kept for health_check's p50 and p99.
LATENCY_WINDOW = 200


class HttpEntropySource(EntropySource):
    """Fetches exactly ``n`` bytes per draw, split at the service's per-call cap.

    Built with no arguments it reads ``QR_HTTP_*``; a bad value is a
    ``ConfigValidationError``. Every failure to deliver is an ``EntropyUnavailableError``
    (``QuotaExceededError`` for a 429) so the core's fallback can take over. Safe to
    call from several threads.
    """

    name = "http"

    def __init__(
        self,
        settings: HttpSourceSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings if settings is not None else HttpSourceSettings.load()
        cfg = self._settings
        try:
            self._api: HttpApi = cfg.api()
        except ValueError as exc:
            raise ConfigValidationError(str(exc)) from None
        self._gate = Gate(cfg.breaker_failures, cfg.breaker_recovery_s, clock)
        self._client = httpx.Client(
            http2=True,
            verify=_tls_context(cfg.ca_file),
            headers=_auth_headers(self._api, cfg.api_key),
            limits=httpx.Limits(max_connections=cfg.max_concurrent_calls),
            follow_redirects=False,
        )
        self._pool = ThreadPoolExecutor(cfg.max_concurrent_calls, thread_name_prefix="qr-http")
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._last_call: dict[str, Any] | None = None
        self._calls = 0
        self._closed = False

    # --- drawing ------------------------------------------------------------------

    def get_random_bytes(self, n: int) -> bytes:
        check_byte_count(n)
        if n == 0:
            return b""
        if self._closed:
            raise self._unavailable("the source is closed")
        deadline = time.monotonic() + self._settings.timeout_ms / 1000.0
        try:
            self._gate.admit()
        except EntropyUnavailableError as exc:  # failing fast, with where and why
            raise self._unavailable(str(exc), type(exc)) from None
        try:
            data = self._draw(n, deadline)
        except RateLimitedError as exc:
            self._gate.refused(exc.retry_after_s)
            raise self._unavailable(str(exc), QuotaExceededError) from None
        except TransientError as exc:
            self._gate.failed()
            raise self._unavailable(str(exc)) from None
        except CallError as exc:
            self._gate.refused()
            raise self._unavailable(str(exc)) from None
        except Exception as exc:  # e.g. the pool shut down by close() on another thread
            self._gate.refused()
            raise self._unavailable(f"{type(exc).__name__}: {exc}") from None
        self._gate.succeeded()
        return data

    def _draw(self, n: int, deadline: float) -> bytes:
        """The pieces of one draw, in flight together; the wait ends at the deadline
        even if a call is stuck (its own timeouts end it later, in the background)."""
        api = self._api
        units = math.ceil(n / api.unit_bytes)
        pieces = [api.max_units_per_call] * (units // api.max_units_per_call)
        pieces += [units % api.max_units_per_call] if units % api.max_units_per_call else []
        futures: list[Future[bytes]] = [
            self._pool.submit(self._with_retries, size, deadline) for size in pieces
        ]
        done, pending = wait(futures, max(0.0, deadline - time.monotonic()), FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in done:
            error = future.exception()
            if error is not None:
                raise error
        if pending:
            raise OutOfTimeError(
                f"a draw of {n} bytes ({len(pieces)} calls) ran out of time after "
                f"{self._settings.timeout_ms:g} ms (QR_HTTP_TIMEOUT_MS)"
            )
        return b"".join(future.result() for future in futures)[:n]

    def _with_retries(self, units: int, deadline: float) -> bytes:
        failures = 0
        while True:
            try:
                result = call(self._client, self._api, units, deadline)
            except (TransientError, RateLimitedError) as exc:
                failures += 1
                pause = FIRST_BACKOFF_S * 2 ** (failures - 1)
                if isinstance(exc, RateLimitedError) and exc.retry_after_s is not None:
                    pause = exc.retry_after_s
                left = deadline - time.monotonic()
                if failures > self._settings.retry_count or pause >= left:
                    raise
                logger.debug(
                    "call %d for %d units failed: %s", failures, units, self._redact(str(exc))
                )
                time.sleep(pause)
                continue
            self._note(result, units)
            return result.data

    def _note(self, result: CallResult, units: int) -> None:
        with self._lock:
            self._calls += 1
            self._latencies.append(result.latency_ms)
            self._last_call = {
                "units": units,
                "bytes": len(result.data),
                "status": result.status,
                "http_version": result.http_version,
                "content_type": result.content_type,
                "reply_bytes": result.reply_bytes,
                "latency_ms": round(result.latency_ms, 3),
                "first_bytes_hex": result.data[:8].hex(),
            }

    def _unavailable(
        self, reason: str, kind: type[EntropyUnavailableError] = EntropyUnavailableError
    ) -> EntropyUnavailableError:
        where = urlsplit(self._api.url).netloc or self._api.url
        label = f"http ({self._api.preset} preset)" if self._api.preset else "http"
        return kind(self._redact(f"{label} at {where}: {reason}"))

    def _redact(self, text: str) -> str:
        # A service may echo what it was sent in its error body.
        key = self._settings.api_key
        return text.replace(key, mask_secret(key) or "****") if key else text

    # --- reporting and lifecycle ----------------------------------------------------

    def health_check(self) -> dict[str, Any]:
        api = self._api
        with self._lock:
            latencies = sorted(self._latencies)
            last = dict(self._last_call) if self._last_call else None
            calls = self._calls
        gate = self._gate.snapshot()
        return {
            "source": self.name,
            "healthy": gate["breaker_state"] != "open" and not gate["quota_hold_s"],
            "preset": api.preset or "generic",
            "url": api.url,
            "method": api.method,
            "encoding": api.encoding,
            "authenticated": bool(self._settings.api_key),
            "ca_file": self._settings.ca_file or None,
            "timeout_ms": self._settings.timeout_ms,
            "max_bytes_per_call": api.max_bytes_per_call,
            "calls": calls,
            "latency_ms_p50": _percentile(latencies, 0.50),
            "latency_ms_p99": _percentile(latencies, 0.99),
            "last_call": last,
            **gate,
        }

    def close(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def __repr__(self) -> str:
        return (
            f"HttpEntropySource(preset={self._api.preset or 'generic'!r}, "
            f"url={self._api.url!r}, authenticated={bool(self._settings.api_key)})"
        )


def _percentile(ordered: list[float], share: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[max(0, math.ceil(share * len(ordered)) - 1)], 3)


def _auth_headers(api: HttpApi, key: str) -> dict[str, str]:
    if not key or api.auth == "none":
        return {}
    if api.auth == "bearer":
        return {"Authorization": f"Bearer {key}"}
    return {api.api_key_header: key}


def _tls_context(ca_file: str) -> ssl.SSLContext | bool:
    if not ca_file:
        return True
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigValidationError(
            f"QR_HTTP_CA_FILE={ca_file!r} cannot be used: {getattr(exc, 'strerror', None) or exc}"
            " (name a readable PEM file holding the certificate that signs the server's)"
        ) from None
