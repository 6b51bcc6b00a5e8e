"""``quantum_grpc``: random bytes from any gRPC server that speaks the field-1 layout."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any

import grpc
from qr_sampler import DeviceWord, EntropySource, EntropyUnavailableError, mask_secret
from qr_sampler.entropy.base import check_byte_count

from qr_source_grpc.breaker import OPEN, CircuitBreaker
from qr_source_grpc.channel import open_channel
from qr_source_grpc.failures import (
    CapacityRefusedError,
    DeadlineExceededError,
    OutOfTimeError,
    ServerRejectedError,
    TransportError,
)
from qr_source_grpc.settings import CircuitBreakerSettings, GrpcSourceSettings
from qr_source_grpc.targets import is_local
from qr_source_grpc.transports import (
    BidiStreamingTransport,
    Exchange,
    Metadata,
    ServerStreamingTransport,
    Transport,
    UnaryTransport,
)
from qr_source_grpc.wire import ReplyFields, Said

logger = logging.getLogger(__name__)

#: Pieces of one large draw in flight at once, and the smallest piece worth a request.
PIECES_IN_FLIGHT = 4
MIN_PIECE = 256 * 1024
#: How far past its deadline a draw waits for its chunks' own verdict.
POOL_WAIT_SLACK_S = 0.1
#: After a server refused a stream for capacity, how long draws go by unary calls
#: before a stream is tried again (each refusal costs a round trip).
STREAM_RETRY_AFTER_S = 5.0

# mode -> (transport, the settings field that names its method)
_MODES: dict[
    str, tuple[Callable[[grpc.Channel, str, str, Metadata, ReplyFields], Transport], str]
] = {
    "unary": (UnaryTransport, "method_path"),
    "server_streaming": (ServerStreamingTransport, "stream_method_path"),
    "bidi_streaming": (BidiStreamingTransport, "stream_method_path"),
}


class GrpcEntropySource(EntropySource):
    """Fetches exactly ``n`` bytes per draw, in chunks, with retries and a circuit breaker.

    Built with no arguments it reads ``QR_GRPC_*`` and ``QR_CB_*``; a bad value is a
    ``ConfigValidationError``. Every failure to deliver is an ``EntropyUnavailableError``
    so the core's fallback can take over. Safe to call from several threads.
    """

    name = "quantum_grpc"

    def __init__(
        self,
        settings: GrpcSourceSettings | None = None,
        breaker_settings: CircuitBreakerSettings | None = None,
        *,
        breaker_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings if settings is not None else GrpcSourceSettings.load()
        breaker_settings = (
            breaker_settings if breaker_settings is not None else CircuitBreakerSettings.load()
        )
        cfg = self._settings
        self._breaker = CircuitBreaker(breaker_settings, cfg.timeout_ms, breaker_clock)
        transport_class, method_field = _MODES[cfg.mode]
        method = getattr(cfg, method_field)
        setting = f"{GrpcSourceSettings.env_prefix_value()}{method_field}".upper()
        metadata = ((cfg.api_key_header, cfg.api_key),) if cfg.api_key else ()
        self._channel = open_channel(cfg)
        fields = ReplyFields(cfg.sequence_id_field, cfg.timestamp_field, cfg.device_id_field)
        self._transport = transport_class(self._channel, method, setting, metadata, fields)
        # A server at its stream limit still answers unary calls: a refused stream is
        # no outage, so its draw goes by the unary method instead of to the fallback.
        self._unary = (
            UnaryTransport(self._channel, cfg.method_path, "QR_GRPC_METHOD_PATH", metadata, fields)
            if cfg.mode != "unary"
            else None
        )
        self._streams_refused_at = -math.inf
        self._served = threading.local()
        # Unary and server-streaming calls are independent of each other, so pieces of a
        # draw can be in flight together; the bidi stream serves one exchange at a time.
        self._pool = (
            ThreadPoolExecutor(PIECES_IN_FLIGHT, thread_name_prefix="qr-source-grpc")
            if cfg.mode != "bidi_streaming"
            else None
        )
        if cfg.api_key and not cfg.tls and not is_local(cfg.server_address):
            logger.warning(
                "QR_GRPC_API_KEY is sent in plaintext to %s; anyone on the network path can "
                "read it — set QR_GRPC_TLS=true",
                cfg.server_address,
            )

    def get_random_bytes(self, n: int) -> bytes:
        check_byte_count(n)
        self._served.by = None
        self._served.said = None
        if n == 0:
            return b""
        cfg = self._settings
        sizes = self._chunk_sizes(n)
        # Short replies are topped up by further calls; this bound keeps a server that
        # trickles one byte per reply from holding an engine step indefinitely.
        budget_s = len(sizes) * (cfg.retry_count + 1) * cfg.timeout_ms / 1000.0
        give_up_at = time.monotonic() + budget_s

        servers: set[str] = set()
        said: list[Said] = []

        def fetch_chunk(size: int) -> tuple[bytes, list[Said]]:
            # Each chunk keeps its own word, so the draw's stays in chunk order.
            chunk_said: list[Said] = []
            return self._fetch_exactly(size, give_up_at, n, servers, chunk_said), chunk_said

        pool = self._pool
        if pool is not None and len(sizes) > 1:
            # Chunks may queue behind other draws' chunks; the wait for them is bounded
            # too, with a little slack so that a chunk's own error (more telling) wins.
            wait_s = give_up_at - time.monotonic() + POOL_WAIT_SLACK_S
            try:
                chunks = list(pool.map(fetch_chunk, sizes, timeout=wait_s))
            except FuturesTimeout:
                raise self._unavailable(
                    f"a draw of {n} bytes ran out of time waiting for its chunks"
                ) from None
            except RuntimeError as exc:  # the pool was shut down: the source is closed
                raise self._unavailable(str(exc)) from None
        else:
            # One exchange (on a stream, every piece requested up front), then top-ups.
            pieces = self._fetch(sizes, give_up_at, n, servers, said)
            chunks = [
                (piece + self._fetch_exactly(size - len(piece), give_up_at, n, servers, said), [])
                for piece, size in zip(pieces, sizes, strict=True)
            ]
        data = b"".join(chunk for chunk, _ in chunks)
        said += [word for _, chunk_said in chunks for word in chunk_said]
        # A server that does not name itself is known only as the configured address.
        self._served.by = ",".join(sorted({name or cfg.server_address for name in servers}))
        self._served.said = _device_word(said)
        return data

    def served_by(self) -> str | None:
        """The server that answered this thread's last draw, as it names itself (the
        reference server: ``DEVICE@HOST:PORT``), else the configured address; several,
        comma-separated, when the draw's chunks went to different servers."""
        served: str | None = getattr(self._served, "by", None)
        return served

    def device_said(self) -> DeviceWord | None:
        """What the server said about this thread's last draw, by the configured fields
        (``QR_GRPC_*_FIELD``); a field it did not send stays None."""
        said: DeviceWord | None = getattr(self._served, "said", None)
        return said

    def _chunk_sizes(self, n: int) -> list[int]:
        # Pieces in flight together let the server produce one while another crosses
        # the wire; pieces below ~256 KiB cost more in calls than they save.
        size = min(
            self._settings.max_bytes_per_request, max(MIN_PIECE, math.ceil(n / PIECES_IN_FLIGHT))
        )
        return [size] * (n // size) + ([n % size] if n % size else [])

    def _fetch_exactly(
        self, size: int, give_up_at: float, n: int, servers: set[str], said: list[Said]
    ) -> bytes:
        pieces = []
        remaining = size
        while remaining:
            piece = self._fetch([remaining], give_up_at, n, servers, said)[0]
            pieces.append(piece)
            remaining -= len(piece)
        return b"".join(pieces)

    def _fetch(
        self,
        counts: list[int],
        give_up_at: float,
        n: int,
        servers: set[str],
        said: list[Said],
    ) -> list[bytes]:
        """Between 1 and ``count`` bytes for each count, from one successful exchange,
        retrying transport failures; adds the servers that answered to ``servers`` and
        what the replies said to ``said``.

        A reply later than the adaptive deadline is asked for again at once with the full
        QR_GRPC_TIMEOUT_MS; that costs no retry and no breaker failure (the server is
        slower than learned, not down), and its success replaces what was learned.
        """
        count = sum(counts)
        failures = 0
        full_timeout = False
        while True:
            if give_up_at <= time.monotonic():
                raise self._unavailable(
                    f"a draw of {n} bytes ran out of time: the server's replies were short "
                    "or slow (a draw may take QR_GRPC_TIMEOUT_MS x (QR_GRPC_RETRY_COUNT + 1) "
                    "per chunk)"
                )
            attempt = self._breaker.admit(count, full_timeout=full_timeout)
            try:
                exchange = self._exchange(counts, attempt.timeout_s, give_up_at)
            except TransportError as exc:
                if attempt.shortened and isinstance(exc, DeadlineExceededError):
                    full_timeout = True
                    logger.debug("no reply for %d bytes within the adaptive deadline", count)
                    continue
                self._breaker.record_failure(attempt)
                failures += 1
                logger.debug(
                    "attempt %d for %d bytes failed: %s", failures, count, self._redact(exc)
                )
                if failures > self._settings.retry_count:
                    raise self._unavailable(f"{exc} (attempts: {failures})") from None
                continue
            except (ServerRejectedError, OutOfTimeError) as exc:
                self._breaker.record_rejection()
                raise self._unavailable(str(exc)) from None
            except Exception as exc:  # e.g. a call on a channel closed by another thread
                self._breaker.record_rejection()
                raise self._unavailable(f"{type(exc).__name__}: {exc}") from None
            data = exchange.pieces
            self._breaker.record_success(
                exchange.latency_s * 1000.0,
                sum(map(len, data)),
                relearn=attempt.probe or full_timeout,
            )
            servers.update(exchange.servers)
            said.extend(exchange.said)
            return data

    def _exchange(self, counts: list[int], timeout_s: float, give_up_at: float) -> Exchange:
        """One exchange on the configured mode's transport, or by unary calls while the
        servers refuse streams for capacity."""
        unary = self._unary
        if unary is None:
            return self._transport.fetch(counts, timeout_s, give_up_at)
        if time.monotonic() - self._streams_refused_at < STREAM_RETRY_AFTER_S:
            return unary.fetch(counts, timeout_s, give_up_at)
        try:
            return self._transport.fetch(counts, timeout_s, give_up_at)
        except CapacityRefusedError as exc:
            first = self._streams_refused_at == -math.inf
            self._streams_refused_at = time.monotonic()
            # INFO once: a server at its stream limit is normal with many replicas.
            logger.log(
                logging.INFO if first else logging.DEBUG,
                "a server refused a stream (%s); draws go by unary calls to %s for %.0f s",
                self._redact(exc),
                unary.method,
                STREAM_RETRY_AFTER_S,
            )
            return unary.fetch(counts, timeout_s, give_up_at)

    def _redact(self, text: object) -> str:
        # A server may echo what it was sent in its error details.
        key = self._settings.api_key
        return str(text).replace(key, mask_secret(key)) if key else str(text)

    def _unavailable(self, reason: str) -> EntropyUnavailableError:
        return EntropyUnavailableError(
            self._redact(f"quantum_grpc at {self._settings.server_address}: {reason}")
        )

    def health_check(self) -> dict[str, Any]:
        cfg = self._settings
        breaker = self._breaker.snapshot()
        return {
            "source": self.name,
            "healthy": breaker["breaker_state"] != OPEN,
            "address": cfg.server_address,
            "mode": cfg.mode,
            "method_path": cfg.method_path,
            "stream_method_path": cfg.stream_method_path,
            "tls": cfg.tls,
            "authenticated": bool(cfg.api_key),
            "timeout_ms": cfg.timeout_ms,
            "max_bytes_per_request": cfg.max_bytes_per_request,
            "reply_fields": {
                "sequence_id": cfg.sequence_id_field,
                "timestamp": cfg.timestamp_field,
                "device_id": cfg.device_id_field,
            },
            **breaker,
        }

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        self._transport.close()
        self._channel.close()

    def __repr__(self) -> str:
        cfg = self._settings
        return (
            f"GrpcEntropySource(address={cfg.server_address!r}, mode={cfg.mode!r}, "
            f"authenticated={bool(cfg.api_key)})"
        )


def _device_word(said: list[Said]) -> DeviceWord:
    """One draw's word from its replies' (in the order of the bytes they made)."""
    devices = dict.fromkeys(word.device_id for word in said if word.device_id is not None)
    stamps = [word.timestamp for word in said if word.timestamp is not None]
    numbers = [word.sequence_id for word in said if word.sequence_id is not None]
    return DeviceWord(
        ",".join(devices) if devices else None,
        stamps[0] if stamps else None,
        numbers[0] if numbers else None,
    )
