"""Token records: one per sampled token, to logs, a JSON-lines file and a bounded memory."""

from __future__ import annotations

import collections
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from qr_sampler.config import SamplingOptions
from qr_sampler.record_file import LOG_PATH_VARIABLE, RecordFile

logger = logging.getLogger("qr_sampler")


@dataclass(frozen=True)
class TokenRecord:
    """Everything needed to trace one token back to the bytes that chose it."""

    step: int
    row: int
    #: None on a token forced to end a request in strict mode (``end_reason`` says why).
    u: float | None
    z_score: float | None
    sample_mean: float | None
    sample_count: int
    token_id: int
    token_rank: int
    token_prob: float
    num_candidates: int
    temperature: float
    shannon_entropy: float | None
    entropy_source: str
    fallback: bool
    fetch_ms: float
    total_ms: float
    config_hash: str
    tag: str
    #: Provenance: the request (``None`` outside an engine adapter), the token's
    #: 0-based index in that request's output, and the bytes that chose it (``None``
    #: on a token that ended a request for want of entropy, see ``end_reason``).
    request_id: str | None
    position: int | None
    entropy_sha256: str | None
    #: Where this token's bytes start in ``QR_BYTES_PATH`` (``None`` when not archived).
    bytes_offset: int | None
    #: What ``qr-sampler verify`` needs to recompute u from the bytes alone.
    signal_amplifier_type: str
    population_mean: float
    population_std: float
    uniform_clamp_epsilon: float
    #: The arm's name, or its opaque label under QR_BLIND_ARMS.
    arm: str = ""
    #: Why the fallback served this token ("health test", "source unavailable").
    fallback_reason: str | None = None
    #: The seed of the prng source that chose this token; reproduces its bytes.
    prng_seed: int | None = None
    #: Set when qr-sampler ended the request with this token (strict-mode outage).
    end_reason: str | None = None

    def to_json(self) -> str:
        """Strict JSON: a value that is NaN or infinite is written as ``null``."""
        return json.dumps(_finite(asdict(self)), separators=(",", ":"), allow_nan=False)


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None``, at any depth."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def ended_record(
    step: int,
    row: int,
    token_id: int,
    options: SamplingOptions,
    reason: Exception,
    request_id: str | None,
    position: int | None,
    arm: str,
) -> TokenRecord:
    """The record of a token forced to end a request because entropy did not come
    (to the request's ``arm``, by its name or blind label)."""
    return TokenRecord(
        step=step,
        row=row,
        u=None,
        z_score=None,
        sample_mean=None,
        sample_count=0,
        token_id=token_id,
        token_rank=-1,
        token_prob=0.0,
        num_candidates=0,
        temperature=0.0,
        shannon_entropy=None,
        entropy_source="none",
        fallback=False,
        fetch_ms=0.0,
        total_ms=0.0,
        config_hash=options.config_hash,
        tag=options.tag,
        request_id=request_id,
        position=position,
        entropy_sha256=None,
        bytes_offset=None,
        signal_amplifier_type=options.signal_amplifier_type,
        population_mean=options.population_mean,
        population_std=options.population_std,
        uniform_clamp_epsilon=options.uniform_clamp_epsilon,
        arm=arm,
        end_reason=str(reason),
    )


@dataclass
class StepRecords:
    """One step's records, built and written off the engine's critical path.

    ``rows``/``positions`` say which logits row and which output index each record
    belongs to, so an emission gate can decide which to keep before any is built;
    ``options`` are the rows' request options (they say where each record goes);
    ``build`` makes the records (it may wait for the step's results to reach the
    host) and returns None for a row that got no token.
    """

    rows: list[int]
    positions: list[int | None]
    options: list[SamplingOptions | None]
    build: Callable[[], list[TokenRecord | None]]
    #: Which rows the engine kept (set by an emission gate); None keeps them all.
    kept: list[bool] | None = None

    @classmethod
    def ready(cls, records: list[TokenRecord], options: list[SamplingOptions]) -> StepRecords:
        """Records already built."""
        built: list[TokenRecord | None] = list(records)
        return cls(
            [r.row for r in records], [r.position for r in records], list(options), lambda: built
        )


_writer: ThreadPoolExecutor | None = None


def _records_thread() -> ThreadPoolExecutor:
    """The one thread that builds and writes every sink's records, in hand-over order.
    The executor finishes queued work when the interpreter exits."""
    global _writer
    if _writer is None:
        _writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qr-sampler-records")
    return _writer


class RecordSink:
    """Writes each step's records in row order, in one write per step, on a thread.

    The engine hands a step over and goes on; the thread builds the records, then
    writes, logs and keeps them. A step is handed over only once the previous one is
    written, so a crash loses at most the step in flight and memory stays bounded:
    besides that, only the last ``keep_recent`` records of diagnostic-mode requests
    are held.

    The file is opened here, so a ``log_path`` that cannot be written fails at
    start-up (``LogPathError``). A write that fails later (a full disk) never fails
    the step: the step's records are dropped and counted in ``lost_records``, and an
    ERROR is logged at most once per ``error_interval_s``.
    """

    def __init__(
        self, log_path: str, keep_recent: int = 10_000, error_interval_s: float = 60.0
    ) -> None:
        self.log_path = log_path
        self._file = RecordFile(log_path) if log_path else None
        self._recent: collections.deque[TokenRecord] = collections.deque(maxlen=keep_recent)
        self._lock = threading.Lock()
        self.error_interval_s = error_interval_s
        self.lost_records = 0
        self._lost_unreported = 0
        self._failing = False
        self._last_error_log = -math.inf
        self._in_flight: Future[None] | None = None

    def write_step(self, step: StepRecords) -> None:
        """Hand a step's records over; returns once the previous step is written."""
        if not step.rows:
            return
        self.flush()
        self._in_flight = _records_thread().submit(self._write, step)

    def flush(self) -> None:
        """Wait until every step handed over is written."""
        if self._in_flight is not None:
            self._in_flight.result()
            self._in_flight = None

    def _write(self, step: StepRecords) -> None:
        kept = step.kept if step.kept is not None else [True] * len(step.rows)
        try:
            self._write_kept(step, kept)
        except Exception:
            # A records bug must not reach the engine; say so loudly instead.
            logger.exception("qr-sampler could not build or write a step's token records")
            self.lost_records += sum(kept)

    def _write_kept(self, step: StepRecords, kept: list[bool]) -> None:
        chosen = [
            (record, options.log_level == "full", options.diagnostic_mode)
            for record, options, wanted in zip(step.build(), step.options, kept, strict=True)
            if wanted and record is not None and options is not None
        ]
        with self._lock:
            if self._file is not None and chosen:
                text = "".join(record.to_json() + "\n" for record, _, _ in chosen)
                self._append(text, len(chosen))
            for record, full, keep in chosen:
                if full:
                    logger.info("qr-sampler token %s", record.to_json())
                if keep:
                    self._recent.append(record)

    def _append(self, text: str, count: int) -> None:
        assert self._file is not None
        try:
            self._file.append(text)
        except OSError as exc:
            self.lost_records += count
            self._lost_unreported += count
            self._failing = True
            now = time.monotonic()
            if now - self._last_error_log >= self.error_interval_s:
                logger.error(
                    "qr-sampler could not write token records to %s=%r (%s): %d record(s) "
                    "lost since the last report, %d in all; sampling goes on without them",
                    LOG_PATH_VARIABLE,
                    self.log_path,
                    exc.strerror or exc,
                    self._lost_unreported,
                    self.lost_records,
                )
                self._last_error_log = now
                self._lost_unreported = 0
            return
        if self._failing:
            self._failing = False
            logger.warning(
                "qr-sampler writes token records to %s=%r again; %d record(s) lost in all",
                LOG_PATH_VARIABLE,
                self.log_path,
                self.lost_records,
            )
            self._lost_unreported = 0

    def recent(self) -> list[TokenRecord]:
        """The most recent records of diagnostic-mode requests, oldest first."""
        self.flush()
        with self._lock:
            return list(self._recent)

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


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
