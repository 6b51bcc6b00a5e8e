"""``QR_BYTES_PATH``: every entropy byte that chose a token, appended in draw order.

Each step's whole draw is appended at once, so the file is exactly the stream the
source delivered (what the ``replay`` source serves back; with several arms, every
arm's bytes laid out in row order), and a record's
``bytes_offset`` is where its row's ``sample_count`` bytes start. The file grows by
``sample_count`` bytes per token (20,480 by default: about 20 MB per 1,000 tokens).
When the records file is rotated, the archive is split with it (``parts``): each
draw goes to the archive part of its records' part, and offsets count from that
part's start.
"""

from __future__ import annotations

import logging
import threading
from typing import BinaryIO

from qr_sampler.records.parts import part_path

logger = logging.getLogger(__name__)


class BytesArchive:
    """Appends draws and flushes each one before the step's records are written, so
    no record ever points past the end of the archive."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: BinaryIO | None = None
        self._part = 0
        self._failed = False
        self._lock = threading.Lock()

    def append(self, data: bytes, part: int = 0) -> int | None:
        """Write ``data`` to archive part ``part`` and return the offset it starts at
        there; ``None`` if the file cannot be written (logged once: a full disk must
        not stop sampling)."""
        with self._lock:
            if self._failed:
                return None
            try:
                if self._file is not None and part != self._part:
                    self._file.close()
                    self._file = None
                if self._file is None:
                    # Held across steps, until the records move on to another part.
                    self._file = open(part_path(self.path, part), "ab")  # noqa: SIM115
                    self._part = part
                offset = self._file.tell()
                self._file.write(data)
                self._file.flush()
            except OSError as exc:
                self._failed = True
                logger.error(
                    "cannot write the entropy archive %s (%s); records from now on carry "
                    "bytes_offset null and cannot be checked against bytes",
                    part_path(self.path, part),
                    exc,
                )
                return None
            return offset

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
