"""A replay by records: each token of a run gets back the very bytes that chose it.

A run's batches cannot be repeated: concurrent requests, preemption and chunked
prefill put other rows side by side in every step. So, with the run's records
(``QR_REPLAY_RECORDS``), the replay serves bytes by token instead of in archive
order: the token at ``position`` of request R gets the ``sample_count`` bytes at
``bytes_offset`` that R's record names there, whichever step and row it falls in.

A replayed request takes over the id of a request of the run, so its tokens find
their bytes (and its records line up with the run's by ``request_id`` and
``position``): the k-th request admitted with tag T takes the k-th request of the
run with tag T, in the order their first records appear. Give concurrent requests
distinct ``qr_tag`` values to pair them whatever order the replay admits them in.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import threading
from collections.abc import Sequence
from typing import NamedTuple

from qr_sampler.entropy.base import TokenBytes, TokenKey
from qr_sampler.errors import ConfigValidationError, EntropyUnavailableError


class _Archived(NamedTuple):
    #: None: the run archived no bytes for this token (its archive could not be written).
    offset: int | None
    size: int
    sha256: str | None


class RecordedTokens(TokenBytes):
    """The tokens of one records file and where their bytes lie in its archive."""

    def __init__(self, records_path: str, archive_path: str) -> None:
        self.records_path = records_path
        self.archive_path = archive_path
        self._tokens: dict[tuple[str, int], _Archived] = {}
        self._waiting: dict[str, collections.deque[str]] = collections.defaultdict(
            collections.deque
        )
        self._read_records()
        try:
            self._fd = os.open(archive_path, os.O_RDONLY)
        except OSError as exc:
            raise ConfigValidationError(
                f"QR_REPLAY_PATH={archive_path!r} cannot be read: {exc.strerror}"
            ) from None
        self._lock = threading.Lock()

    @property
    def requests(self) -> int:
        """How many requests of the run are still to be claimed."""
        return sum(len(waiting) for waiting in self._waiting.values())

    def _read_records(self) -> None:
        try:
            handle = open(self.records_path, encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise ConfigValidationError(
                f"QR_REPLAY_RECORDS={self.records_path!r} cannot be read: {exc.strerror}"
            ) from None
        seen: set[str] = set()
        with handle:
            for number, line in enumerate(handle, 1):
                try:
                    record = json.loads(line)
                    request_id, position = record["request_id"], record["position"]
                    count = int(record["sample_count"])
                except (ValueError, KeyError, TypeError):
                    raise ConfigValidationError(
                        f"QR_REPLAY_RECORDS={self.records_path!r}, line {number}: not a token "
                        "record of an engine run (QR_LOG_PATH)"
                    ) from None
                if request_id is None or position is None:
                    continue  # a token outside any request: nothing will ask for it
                if request_id not in seen:
                    seen.add(request_id)
                    self._waiting[str(record.get("tag", ""))].append(request_id)
                if count > 0:  # greedy and ended tokens drew nothing
                    self._tokens[(request_id, int(position))] = _Archived(
                        record.get("bytes_offset"), count, record.get("entropy_sha256")
                    )

    def claim(self, tag: str) -> str | None:
        with self._lock:
            waiting = self._waiting.get(tag)
            return waiting.popleft() if waiting else None

    def bytes_for(self, tokens: Sequence[TokenKey]) -> bytes:
        return b"".join(self._one(token) for token in tokens)

    def _one(self, token: TokenKey) -> bytes:
        where = f"request {token.request_id!r} at position {token.position}"
        if token.request_id is None or token.position is None:
            archived = None
        else:
            archived = self._tokens.get((token.request_id, token.position))
        if archived is None:
            raise EntropyUnavailableError(
                f"replay: the records {self.records_path!r} hold no drawn token for {where} "
                "(a request the run did not have, or a longer one: pair replayed requests "
                "with the run's by giving each the qr_tag it had)"
            )
        if archived.size != token.size:
            raise EntropyUnavailableError(
                f"replay: {where} draws {token.size} bytes, the run drew {archived.size} "
                "(give the request the settings it had, sample_count above all)"
            )
        if archived.offset is None:
            raise EntropyUnavailableError(
                f"replay: the run archived no bytes for {where} (bytes_offset is null)"
            )
        try:
            data = os.pread(self._fd, archived.size, archived.offset)
        except OSError as exc:
            raise EntropyUnavailableError(
                f"replay: {self.archive_path!r} cannot be read ({exc.strerror})"
            ) from None
        if len(data) != archived.size or (
            archived.sha256 is not None and hashlib.sha256(data).hexdigest() != archived.sha256
        ):
            raise EntropyUnavailableError(
                f"replay: the bytes of {where} in {self.archive_path!r} are not the ones its "
                "record hashed (another run's archive, or a damaged one)"
            )
        return data

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
