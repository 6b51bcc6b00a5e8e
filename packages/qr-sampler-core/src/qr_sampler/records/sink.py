"""Where a step's records go: a JSON-lines file, the log and a bounded memory, written
on one thread off the engine's critical path."""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from qr_sampler.records.chain import ChainWriter
from qr_sampler.records.parts import last_part, part_path
from qr_sampler.records.record_file import LOG_PATH_VARIABLE, LogPathError, RecordFile
from qr_sampler.records.signing import Signer
from qr_sampler.records.token_record import TokenRecord
from qr_sampler.settings.config import SamplingOptions

logger = logging.getLogger("qr_sampler")


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
    #: The records file part the step goes to (``parts``): the sink's ``next_part``
    #: when the engine archived the step's bytes, into the archive part of that number.
    part: int = 0

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

    Lines written to the file are hash-chained (``qr_sampler.records.chain``);
    ``begin_run`` writes the run's manifest, which heads the chain, and a
    ``signer`` signs the manifest and the chain heads.

    With ``rotate_bytes``, once the file passes that size the run goes on in the
    next part (``parts``). The engine has archived the bytes of the steps it handed
    over since in the old archive part, so the sink only asks for the next part
    (``next_part``); the first step tagged with it starts the new file, and a step's
    records never span two files.
    """

    def __init__(
        self,
        log_path: str,
        keep_recent: int = 10_000,
        error_interval_s: float = 60.0,
        *,
        signer: Signer | None = None,
        head_interval_s: float = 0.0,
        rotate_bytes: int = 0,
    ) -> None:
        self.log_path = log_path
        self.rotate_bytes = rotate_bytes
        self._part = last_part(log_path)
        path = part_path(log_path, self._part)
        self._file = RecordFile(path) if log_path else None
        self._chain = ChainWriter(path, signer, head_interval_s) if log_path else None
        #: The part the engine archives the next step's bytes in and tags it with; the
        #: records thread moves it on, the engine thread reads it (one int: no lock).
        self.next_part = self._part
        self._recent: collections.deque[TokenRecord] = collections.deque(maxlen=keep_recent)
        self._lock = threading.Lock()
        self.error_interval_s = error_interval_s
        self.lost_records = 0
        self._lost_unreported = 0
        self._failing = False
        self._last_error_log = -math.inf
        self._in_flight: Future[None] | None = None

    def begin_run(self, manifest: dict[str, Any]) -> None:
        """Write the run's manifest before the first record (no file: nothing)."""
        if self._chain is not None:
            self._chain.begin(manifest)

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
                self._append([record.to_json() for record, _, _ in chosen], step.part)
            for record, full, keep in chosen:
                if full:
                    logger.info("qr-sampler token %s", record.to_json())
                if keep:
                    self._recent.append(record)

    def _append(self, records: list[str], part: int) -> None:
        assert self._file is not None
        assert self._chain is not None
        count = len(records)
        try:
            if part > self._part:
                self._rotate(part)
            text, head = self._chain.link(records)
            self._file.append(text)
        except (OSError, LogPathError) as exc:
            # A part that cannot be started loses the step too: its bytes are in the
            # new archive part, which no record in the old file may point into.
            self._lost(count, getattr(exc, "strerror", None) or str(exc))
            return
        # Lost records were never linked: the chain runs on from the last line written.
        self._chain.appended(head, count)
        try:
            self._chain.write_head(due=True)
        except OSError as exc:
            # The next head covers these records too; only a missing last head matters.
            logger.warning("qr-sampler could not write a chain head (%s)", exc.strerror or exc)
        if self._failing:
            self._failing = False
            logger.warning(
                "qr-sampler writes token records to %s=%r again; %d record(s) lost in all",
                LOG_PATH_VARIABLE,
                self.log_path,
                self.lost_records,
            )
            self._lost_unreported = 0
        if self.rotate_bytes and self._file.size() >= self.rotate_bytes:
            self.next_part = self._part + 1

    def _lost(self, count: int, reason: str) -> None:
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
                reason,
                self._lost_unreported,
                self.lost_records,
            )
            self._last_error_log = now
            self._lost_unreported = 0

    def _rotate(self, part: int) -> None:
        """Go on in ``part``: its manifest names the old file's last line, and the old
        file's chain ends with a head of all its records."""
        assert self._file is not None
        assert self._chain is not None
        path = part_path(self.log_path, part)
        new_file = RecordFile(path)
        try:
            new_chain = self._chain.continued(path)
        except BaseException:
            new_file.close()
            raise
        old_file, old_chain = self._file, self._chain
        self._file, self._chain, self._part = new_file, new_chain, part
        old_file.close()
        try:
            old_chain.close()
        except OSError as exc:
            # The next part's manifest still names the old file's last line.
            logger.warning(
                "qr-sampler could not write the last chain head of %s (%s)",
                old_chain.records_path,
                exc.strerror or exc,
            )

    def recent(self) -> list[TokenRecord]:
        """The most recent records of diagnostic-mode requests, oldest first."""
        self.flush()
        with self._lock:
            return list(self._recent)

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._file is not None and self._chain is not None:
                self._file.close()
                self._file = None
                self._chain.close()
                self._chain = None
