"""The ``QR_LOG_PATH`` file: checked before the engine serves, appended to a step at a time.

A records file that cannot be written must stop start-up with a message naming the
setting, never fail inside an engine step, where vLLM would take the whole engine down.
"""

from __future__ import annotations

import os
import stat

from qr_sampler.errors import ConfigValidationError

LOG_PATH_VARIABLE = "QR_LOG_PATH"


class LogPathError(ConfigValidationError):
    """``QR_LOG_PATH`` names a place records cannot be appended to."""


def _refused(path: str, exc: OSError) -> LogPathError:
    reason = exc.strerror or str(exc)
    return LogPathError(
        f"{LOG_PATH_VARIABLE}={path!r}: cannot append token records there ({reason}); "
        "point it at a writable file in an existing directory, or leave it empty to "
        "write no records file"
    )


def _open(path: str) -> tuple[int, bool]:
    """An append-only descriptor for ``path`` and whether this call created the file."""
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o666), True
    except FileExistsError:
        return os.open(path, os.O_WRONLY | os.O_APPEND), False


def _probe(fd: int) -> None:
    # Writing nothing is harmless to a file or a pipe, but a device that refuses every
    # write (/dev/full) refuses this one too.
    os.write(fd, b"")


def check_log_path(path: str) -> None:
    """Raise :class:`LogPathError` unless records could be appended to ``path``.

    Leaves no file behind: a file this check had to create is removed again.
    """
    if not path:
        return
    try:
        fd, created = _open(path)
        try:
            _probe(fd)
        finally:
            os.close(fd)
        if created:
            os.unlink(path)
    except OSError as exc:
        raise _refused(path, exc) from None


class RecordFile:
    """An open ``QR_LOG_PATH``; in a regular file every append lands whole or not at all.

    A write cut short (a full disk) is undone, so the file never holds half a line
    that would merge with the next step's records.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._fd, _ = _open(path)
            try:
                _probe(self._fd)
                self._regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
            except OSError:
                os.close(self._fd)
                raise
        except OSError as exc:
            raise _refused(path, exc) from None

    def append(self, text: str) -> None:
        """Append ``text``; an ``OSError`` means none of it is in the file."""
        data = text.encode("utf-8")
        size = os.fstat(self._fd).st_size if self._regular else 0
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError:
            if written and self._regular:
                os.ftruncate(self._fd, size)
            raise

    def size(self) -> int:
        """The file's size in bytes (what rotation compares with its limit)."""
        return os.fstat(self._fd).st_size

    def close(self) -> None:
        os.close(self._fd)
