"""``device``: random bytes from a QRNG on this machine, every read bounded by a deadline."""

from __future__ import annotations

import os
import select
import threading
import time
from typing import Any

from qr_sampler import EntropySource, EntropyUnavailableError
from qr_sampler.entropy.base import check_byte_count
from qr_source_device.settings import DeviceSourceSettings
from qr_source_device.streams import Stream, StreamError, open_stream

#: A device that polls readable but has nothing yet (/dev/hwrng ignores poll) is asked
#: again after this pause.
NOT_READY_PAUSE_S = 0.002


class DeviceEntropySource(EntropySource):
    """Reads exactly ``n`` bytes per draw from the configured device, FIFO, file, serial
    QRNG or command, or raises ``EntropyUnavailableError`` by the draw's deadline.

    The stream is opened at the first draw and again after it fails, so a device plugged
    in (or a program restarted) later is picked up. After a draw times out the device is
    taken to be stalled: later draws wait only ``QR_DEVICE_STALL_PROBE_MS`` until bytes
    flow again, so a stuck device costs each engine step milliseconds, not the timeout.
    """

    name = "device"

    def __init__(self, settings: DeviceSourceSettings | None = None) -> None:
        self._settings = settings if settings is not None else DeviceSourceSettings.load()
        self._lock = threading.Lock()
        self._stream: Stream | None = None
        self._stalled = False
        self._closed = False
        self._bytes = 0
        self._last_error: str | None = None
        self._last_ms: float | None = None

    def get_random_bytes(self, n: int) -> bytes:
        check_byte_count(n)
        if n == 0:
            return b""
        start = time.monotonic()
        cfg = self._settings
        wait_ms = cfg.stall_probe_ms if self._stalled else cfg.timeout_ms
        deadline = start + min(wait_ms, cfg.timeout_ms) / 1000.0
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise EntropyUnavailableError(
                f"device: other draws held {self._where()} past this draw's deadline"
            )
        try:
            data = self._draw(n, deadline)
        except (StreamError, OSError) as exc:
            self._drop_stream()
            raise self._failed(str(exc)) from None
        finally:
            self._lock.release()
        self._bytes += n
        self._last_ms = (time.monotonic() - start) * 1000.0
        self._stalled = False
        self._last_error = None
        return data

    def _draw(self, n: int, deadline: float) -> bytes:
        if self._closed:
            raise StreamError("the source is closed")
        if self._stream is None:
            self._stream = open_stream(self._settings)
        elif self._settings.discard_buffered:
            self._stream.discard_buffered()
        stream = self._stream
        poller = select.poll()
        poller.register(stream.fd, select.POLLIN)
        pieces: list[bytes] = []
        got = 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0:
                self._stalled = True
                raise StreamError(
                    f"{stream.describe()} delivered {got} of {n} bytes before the draw's "
                    f"deadline ({self._settings.timeout_ms:g} ms, QR_DEVICE_TIMEOUT_MS): it "
                    "stopped writing, or is slower than the timeout allows"
                )
            if not poller.poll(max(1, int(left * 1000))):
                continue
            try:
                piece = os.read(stream.fd, n - got)
            except BlockingIOError:
                time.sleep(min(NOT_READY_PAUSE_S, max(0.0, left)))
                continue
            if not piece:
                raise StreamError(stream.ended())
            pieces.append(piece)
            got += len(piece)
        stream.offset += n
        return b"".join(pieces)

    def _where(self) -> str:
        cfg = self._settings
        return f"command {cfg.command!r}" if cfg.mode == "program" else cfg.path

    def _failed(self, reason: str) -> EntropyUnavailableError:
        self._last_error = reason
        return EntropyUnavailableError(f"device: {reason}")

    def _drop_stream(self) -> None:
        # A stalled stream stays open (its bytes may yet come); one that ended or failed
        # is opened afresh by the next draw (a FIFO's new writer, a restarted program).
        if self._stream is not None and not self._stalled:
            self._stream.close()
            self._stream = None

    def health_check(self) -> dict[str, Any]:
        cfg = self._settings
        return {
            "source": self.name,
            "healthy": self._last_error is None and not self._closed,
            "mode": cfg.mode,
            "reads": self._where(),
            "open": self._stream is not None,
            "stalled": self._stalled,
            "timeout_ms": cfg.timeout_ms,
            "bytes_delivered": self._bytes,
            "last_draw_ms": None if self._last_ms is None else round(self._last_ms, 3),
            "last_error": self._last_error,
        }

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._stream is not None:
                self._stream.close()
                self._stream = None

    def __repr__(self) -> str:
        return f"DeviceEntropySource(mode={self._settings.mode!r}, reads={self._where()!r})"
