"""One HTTP call for ``units`` units: the request the API describes, the reply sorted
into bytes or a ``CallError``, and every wait bounded by the draw's deadline."""

from __future__ import annotations

import email.utils
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx

from qr_source_http.decode import decode_reply, excerpt
from qr_source_http.failures import (
    CallError,
    MalformedReplyError,
    RateLimitedError,
    RejectedError,
    TransientError,
)
from qr_source_http.settings import COUNT, HttpApi

#: A reply may exceed what was asked for by this much (JSON, hex) before it is cut off.
REPLY_SIZE_FACTOR = 8
REPLY_SIZE_SLACK = 64 * 1024


class OutOfTimeError(TransientError):
    """The draw's deadline passed before or during the call."""


@dataclass(frozen=True)
class CallResult:
    """What one call returned, for the draw and for ``health_check`` / ``probe``."""

    data: bytes
    status: int
    http_version: str
    content_type: str
    latency_ms: float
    reply_bytes: int


def _fill(template: Any, count: int) -> Any:
    """The body template with each string value ``{count}`` replaced by the number."""
    if template == COUNT:
        return count
    if isinstance(template, dict):
        return {key: _fill(value, count) for key, value in template.items()}
    if isinstance(template, list):
        return [_fill(value, count) for value in template]
    return template


def build_request(
    client: httpx.Client, api: HttpApi, units: int, timeout_s: float
) -> httpx.Request:
    text = str(units)
    params = tuple((name, text if value == COUNT else value) for name, value in api.query)
    body = _fill(api.body, units)
    return client.build_request(
        api.method,
        api.url.replace(COUNT, text),
        params=params or None,
        json=body if body is not None else None,
        # httpx's timeouts bound each read, not the whole reply: _read bounds the total.
        timeout=httpx.Timeout(timeout_s),
    )


def call(client: httpx.Client, api: HttpApi, units: int, deadline: float) -> CallResult:
    """``units`` units' bytes (``units * unit_bytes``, exactly) or a ``CallError``."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise OutOfTimeError("the draw's deadline passed before the call could start")
    wanted = units * api.unit_bytes
    start = time.perf_counter()
    try:
        reply = client.send(build_request(client, api, units, remaining), stream=True)
        try:
            _check_status(reply)
            body = _read(reply, deadline, wanted * REPLY_SIZE_FACTOR + REPLY_SIZE_SLACK)
        finally:
            reply.close()
    except httpx.TimeoutException:
        raise OutOfTimeError(f"no complete reply within the draw's {remaining:.2f} s") from None
    except httpx.TransportError as exc:
        raise _transport_error(exc) from None
    content_type = reply.headers.get("content-type", "")
    data = decode_reply(api, body, content_type)
    if len(data) < wanted:
        raise MalformedReplyError(
            f"short reply: {len(data)} bytes where {units} units of {api.unit_bytes} "
            f"({wanted} bytes) were asked for"
        )
    return CallResult(
        data=data[:wanted],
        status=reply.status_code,
        http_version=reply.http_version,
        content_type=content_type,
        latency_ms=(time.perf_counter() - start) * 1000.0,
        reply_bytes=len(body),
    )


def _read(reply: httpx.Response, deadline: float, limit: int) -> bytes:
    chunks, size = [], 0
    for chunk in reply.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise MalformedReplyError(f"the reply is larger than {limit} bytes; cut off")
        if time.monotonic() > deadline:
            raise OutOfTimeError(
                f"the reply came too slowly: {size} bytes when the draw's deadline passed"
            )
    return b"".join(chunks)


def _said(reply: httpx.Response) -> str:
    """The start of an error reply's body, to quote in the message."""
    try:
        reply.read()
    except httpx.HTTPError:
        return ""
    return f": {excerpt(reply.content)}" if reply.content else ""


def _check_status(reply: httpx.Response) -> None:
    status = reply.status_code
    if 200 <= status < 300:
        return
    if status == 429:
        wait = retry_after_s(reply.headers.get("retry-after"))
        asked = f"; it asks to wait {wait:.0f} s" if wait is not None else ""
        raise RateLimitedError(
            f"HTTP 429: the service's quota or rate limit is reached (not an outage){asked}",
            wait,
        )
    if status >= 500:
        raise TransientError(f"HTTP {status} from the service{_said(reply)}")
    if status in (401, 403):
        raise RejectedError(
            f"HTTP {status}: the service did not accept the credentials — check "
            f"QR_HTTP_API_KEY (and QR_HTTP_AUTH / QR_HTTP_API_KEY_HEADER){_said(reply)}"
        )
    if 300 <= status < 400:
        target = reply.headers.get("location", "elsewhere")
        raise RejectedError(
            f"HTTP {status}: the service moved to {target}; set QR_HTTP_URL to the new address"
        )
    raise RejectedError(
        f"HTTP {status}: the service refused the request — check QR_HTTP_URL, QR_HTTP_QUERY "
        f"or QR_HTTP_BODY, and QR_HTTP_MAX_UNITS_PER_CALL against its cap{_said(reply)}"
    )


def retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _transport_error(exc: httpx.TransportError) -> CallError:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return RejectedError(
                f"the server's TLS certificate is not trusted ({cause.verify_message}): if it "
                "is self-signed, set QR_HTTP_CA_FILE to the PEM that signed it"
            )
        cause = cause.__cause__ or cause.__context__
    return TransientError(f"{type(exc).__name__}: {exc or 'connection failed'}")
