"""The built-in ``replay`` source: serves the bytes of a ``QR_BYTES_PATH`` archive
again, so a run can be reproduced token for token: in their original order, or,
given the run's records (``QR_REPLAY_RECORDS``), to the very tokens they chose
(``qr_sampler.entropy.replay_book``)."""

from __future__ import annotations

import os
import threading
from typing import Any, BinaryIO

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from qr_sampler.entropy.base import EntropySource, TokenBytes, check_byte_count
from qr_sampler.entropy.replay_book import RecordedTokens
from qr_sampler.errors import ConfigValidationError, EntropyUnavailableError
from qr_sampler.settings.base import QRSettings
from qr_sampler.settings.names import comma_list


class ReplaySettings(QRSettings):
    model_config = SettingsConfigDict(env_prefix="QR_REPLAY_")

    path: str = Field(
        default="",
        description="Archive written by QR_BYTES_PATH to serve again (with records: "
        "a rotated run's parts, comma-separated)",
    )
    records: str = Field(
        default="",
        description="The run's records (QR_LOG_PATH; a rotated run's parts, "
        "comma-separated): serve each token the bytes it had",
    )


class ReplayEntropySource(EntropySource):
    """Reads the archive front to back, ``EntropyUnavailableError`` once it runs out;
    with ``QR_REPLAY_RECORDS``, serves each token its own bytes and nothing else.

    Run replays with ``QR_FALLBACK_MODE=error``: with the default fallback an
    exhausted archive silently (though flagged) turns into fresh OS bytes.
    """

    name = "replay"

    def __init__(self, settings: ReplaySettings | None = None) -> None:
        self.settings = settings if settings is not None else ReplaySettings.load()
        path = self.settings.path
        if not path:
            raise ConfigValidationError(
                "QR_REPLAY_PATH is empty: set it to the archive a run wrote with QR_BYTES_PATH"
            )
        self._lock = threading.Lock()
        self._offset = self._size = 0
        self._file: BinaryIO | None = None
        self._book: RecordedTokens | None = None
        if self.settings.records:
            self._book = RecordedTokens(comma_list(self.settings.records), comma_list(path))
            return
        try:
            self._file = open(path, "rb")  # noqa: SIM115 - held until close
        except OSError as exc:
            raise ConfigValidationError(
                f"QR_REPLAY_PATH={path!r} cannot be read: {exc.strerror}"
            ) from None
        self._size = os.fstat(self._file.fileno()).st_size

    def token_bytes(self) -> TokenBytes | None:
        return self._book

    def get_random_bytes(self, n: int) -> bytes:
        check_byte_count(n)
        if self._book is not None:
            if not n:
                return b""
            # In archive order these would be some other token's bytes.
            raise EntropyUnavailableError(
                "replay by records (QR_REPLAY_RECORDS) serves bytes only to the tokens "
                "that drew them; unset it to read the archive in order"
            )
        with self._lock:
            if self._file is None:
                raise EntropyUnavailableError("the replay source is closed")
            left = self._size - self._offset
            if n > left:
                # Nothing is consumed: the archive ends here for every later draw too.
                raise EntropyUnavailableError(
                    f"replay archive {self.settings.path!r} is exhausted: {n} bytes asked "
                    f"for at offset {self._offset}, {left} left"
                )
            data = self._file.read(n)
            self._offset += len(data)
        if len(data) != n:  # the file shrank under us
            raise EntropyUnavailableError(
                f"replay archive {self.settings.path!r} ended early at offset {self._offset}"
            )
        return data

    def health_check(self) -> dict[str, Any]:
        with self._lock:
            left = self._size - self._offset
            health: dict[str, Any] = {
                "source": self.name,
                "healthy": self._book is not None or (self._file is not None and left > 0),
                "path": self.settings.path,
                "offset": self._offset,
                "bytes_left": left,
            }
        if self._book is not None:
            health.update(records=self.settings.records, requests_left=self._book.requests)
        return health

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
        if self._book is not None:
            self._book.close()
