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
    #: Which records file (and so which archive) of the run the token is in.
    part: int
    #: None: the run archived no bytes for this token (its archive could not be written).
    offset: int | None
    size: int
    sha256: str | None


class RecordedTokens(TokenBytes):
    """The tokens of a run's records files and where their bytes lie in the archives:
    one file and archive, or a rotated run's parts in order, archive k beside file k."""

    def __init__(self, records_paths: Sequence[str], archive_paths: Sequence[str]) -> None:
        if len(records_paths) != len(archive_paths):
            raise ConfigValidationError(
                f"QR_REPLAY_RECORDS names {len(records_paths)} file(s) and QR_REPLAY_PATH "
                f"{len(archive_paths)}: give each records part its archive part, in order"
            )
        self.records_paths = list(records_paths)
        self.archive_paths = list(archive_paths)
        self._tokens: dict[tuple[str, int], _Archived] = {}
        self._waiting: dict[str, collections.deque[str]] = collections.defaultdict(
            collections.deque
        )
        self._seen: set[str] = set()
        for part, path in enumerate(self.records_paths):
            self._read_records(part, path)
        self._fds: list[int] = []
        for path in self.archive_paths:
            try:
                self._fds.append(os.open(path, os.O_RDONLY))
            except OSError as exc:
                self.close()
                raise ConfigValidationError(
                    f"QR_REPLAY_PATH={path!r} cannot be read: {exc.strerror}"
                ) from None
        self._lock = threading.Lock()

    @property
    def requests(self) -> int:
        """How many requests of the run are still to be claimed."""
        return sum(len(waiting) for waiting in self._waiting.values())

    def _read_records(self, part: int, path: str) -> None:
        try:
            handle = open(path, encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise ConfigValidationError(
                f"QR_REPLAY_RECORDS={path!r} cannot be read: {exc.strerror}"
            ) from None
        with handle:
            for number, line in enumerate(handle, 1):
                try:
                    record = json.loads(line)
                    request_id, position = record["request_id"], record["position"]
                    count = int(record["sample_count"])
                except (ValueError, KeyError, TypeError):
                    raise ConfigValidationError(
                        f"QR_REPLAY_RECORDS={path!r}, line {number}: not a token record of "
                        "an engine run (QR_LOG_PATH)"
                    ) from None
                if request_id is None or position is None:
                    continue  # a token outside any request: nothing will ask for it
                if request_id not in self._seen:
                    self._seen.add(request_id)
                    self._waiting[str(record.get("tag", ""))].append(request_id)
                if count > 0:  # greedy and ended tokens drew nothing
                    self._tokens[(request_id, int(position))] = _Archived(
                        part, record.get("bytes_offset"), count, record.get("entropy_sha256")
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
                f"replay: the run's records hold no drawn token for {where} "
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
        archive = self.archive_paths[archived.part]
        try:
            data = os.pread(self._fds[archived.part], archived.size, archived.offset)
        except (OSError, IndexError) as exc:
            raise EntropyUnavailableError(
                f"replay: {archive!r} cannot be read ({getattr(exc, 'strerror', 'closed')})"
            ) from None
        if len(data) != archived.size or (
            archived.sha256 is not None and hashlib.sha256(data).hexdigest() != archived.sha256
        ):
            raise EntropyUnavailableError(
                f"replay: the bytes of {where} in {archive!r} are not the ones its record "
                "hashed (another run's archive, a damaged one, or parts out of order)"
            )
        return data

    def close(self) -> None:
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)
