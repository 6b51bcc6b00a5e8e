"""The built-in ``replay`` source: serves the bytes of a ``QR_BYTES_PATH`` archive
again, in their original order, so a run can be reproduced token for token."""

from __future__ import annotations

import os
import threading
from typing import Any, BinaryIO

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from qr_sampler.entropy.base import EntropySource, check_byte_count
from qr_sampler.errors import ConfigValidationError, EntropyUnavailableError
from qr_sampler.settings.base import QRSettings


class ReplaySettings(QRSettings):
    model_config = SettingsConfigDict(env_prefix="QR_REPLAY_")

    path: str = Field(default="", description="Archive written by QR_BYTES_PATH to serve again")


class ReplayEntropySource(EntropySource):
    """Reads the archive front to back; ``EntropyUnavailableError`` once it runs out.

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
        try:
            self._file: BinaryIO | None = open(path, "rb")  # noqa: SIM115 - held until close
        except OSError as exc:
            raise ConfigValidationError(
                f"QR_REPLAY_PATH={path!r} cannot be read: {exc.strerror}"
            ) from None
        self._size = os.fstat(self._file.fileno()).st_size
        self._offset = 0
        self._lock = threading.Lock()

    def get_random_bytes(self, n: int) -> bytes:
        check_byte_count(n)
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
            return {
                "source": self.name,
                "healthy": self._file is not None and left > 0,
                "path": self.settings.path,
                "offset": self._offset,
                "bytes_left": left,
            }

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
