"""``QR_BYTES_PATH``: every entropy byte that chose a token, appended in draw order.

Each step's whole draw is appended at once, so the file is exactly the stream the
source delivered (what the ``replay`` source serves back; with several arms, every
arm's bytes laid out in row order), and a record's
``bytes_offset`` is where its row's ``sample_count`` bytes start. The file grows by
``sample_count`` bytes per token (20,480 by default: about 20 MB per 1,000 tokens).
"""

from __future__ import annotations

import logging
import threading
from typing import BinaryIO

logger = logging.getLogger(__name__)


class BytesArchive:
    """Appends draws and flushes each one before the step's records are written, so
    no record ever points past the end of the archive."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: BinaryIO | None = None
        self._failed = False
        self._lock = threading.Lock()

    def append(self, data: bytes) -> int | None:
        """Write ``data`` and return the offset it starts at; ``None`` if the file
        cannot be written (logged once: a full disk must not stop sampling)."""
        with self._lock:
            if self._failed:
                return None
            try:
                if self._file is None:
                    self._file = open(self.path, "ab")  # noqa: SIM115 - held across steps
                offset = self._file.tell()
                self._file.write(data)
                self._file.flush()
            except OSError as exc:
                self._failed = True
                logger.error(
                    "cannot write the entropy archive %s (%s); records from now on carry "
                    "bytes_offset null and cannot be checked against bytes",
                    self.path,
                    exc,
                )
                return None
            return offset

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
