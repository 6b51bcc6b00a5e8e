"""Token records: one per sampled token, to logs, a JSON-lines file and a bounded memory."""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import IO

logger = logging.getLogger("qr_sampler")


@dataclass(frozen=True)
class TokenRecord:
    """Everything needed to trace one token back to the bytes that chose it."""

    step: int
    row: int
    u: float
    z_score: float
    sample_mean: float
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
    #: The arm's name, or its opaque label under QR_BLIND_ARMS.
    arm: str = ""
    #: Why the fallback served this token ("health test", "source unavailable").
    fallback_reason: str | None = None
    #: The seed of the prng source that chose this token; reproduces its bytes.
    prng_seed: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


class RecordSink:
    """Writes each step's records in row order and flushes once per step.

    A crash therefore loses at most the step in flight. Memory stays bounded:
    only the last ``keep_recent`` records of diagnostic-mode requests are held.
    """

    def __init__(self, log_path: str, keep_recent: int = 10_000) -> None:
        self.log_path = log_path
        self._file: IO[str] | None = None
        self._recent: collections.deque[TokenRecord] = collections.deque(maxlen=keep_recent)
        self._lock = threading.Lock()

    def write_step(
        self,
        records: list[TokenRecord],
        log_full: list[bool],
        keep: list[bool],
    ) -> None:
        """``log_full[i]``/``keep[i]``: log record i in full / keep it in memory."""
        with self._lock:
            if self.log_path:
                if self._file is None:
                    self._file = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115
                self._file.write("".join(record.to_json() + "\n" for record in records))
                self._file.flush()
            for record, full, kept in zip(records, log_full, keep, strict=True):
                if full:
                    logger.info("qr-sampler token %s", record.to_json())
                if kept:
                    self._recent.append(record)

    def recent(self) -> list[TokenRecord]:
        """The most recent records of diagnostic-mode requests, oldest first."""
        with self._lock:
            return list(self._recent)

    def close(self) -> None:
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
