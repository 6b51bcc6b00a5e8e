"""Fixtures for the qr-source-device tests: a clean environment and real streams
(pseudo-terminals, FIFOs, files) fed by writer threads that tests can pause."""

from __future__ import annotations

import os
import select
import sys
import threading
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qr_sampler.testing import isolated_environment  # noqa: F401 - applies to every test here
from qr_source_device import DeviceEntropySource, DeviceSourceSettings

sys.path.insert(0, str(Path(__file__).parent))

SourceFactory = Callable[..., DeviceEntropySource]


@pytest.fixture
def make_source() -> Iterator[SourceFactory]:
    """Sources from keyword settings, closed after the test; the deadline is generous so
    that a loaded machine never turns a slow write into a failure."""
    built: list[DeviceEntropySource] = []

    def make(**settings: object) -> DeviceEntropySource:
        source = DeviceEntropySource(DeviceSourceSettings(**{"timeout_ms": 30_000, **settings}))
        built.append(source)
        return source

    yield make
    for source in built:
        source.close()


class Writer:
    """Writes random bytes to ``fd`` from a thread while ``flowing`` is set; first it
    waits for ``wait_for`` (start-up commands) to be read from the same fd."""

    def __init__(self, fd: int, wait_for: bytes = b"") -> None:
        self.fd = fd
        self.flowing = threading.Event()
        self.flowing.set()
        self.received = b""
        self._wait_for = wait_for
        self._stop = threading.Event()
        os.set_blocking(fd, False)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self._wait_for not in self.received:
            if select.select([self.fd], [], [], 0.05)[0]:
                self.received += os.read(self.fd, 1024)
        while not self._stop.is_set():
            if not self.flowing.wait(0.05):
                continue
            if select.select([], [self.fd], [], 0.05)[1]:
                try:
                    os.write(self.fd, os.urandom(4096))
                except BlockingIOError:
                    continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def pty_device() -> Iterator[tuple[str, Writer]]:
    """A pseudo-terminal whose far end streams random bytes, like a TrueRNG's port."""
    master, slave = os.openpty()
    tty.setraw(master)
    writer = Writer(master)
    yield os.ttyname(slave), writer
    writer.stop()
    os.close(slave)
    os.close(master)


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[tuple[str, Writer]]:
    """A named pipe with a program writing random bytes into it."""
    path = tmp_path / "qrng.fifo"
    os.mkfifo(path)
    # Read-write: the writer end is open at once, with no reader yet.
    fd = os.open(path, os.O_RDWR)
    writer = Writer(fd)
    yield str(path), writer
    writer.stop()
    os.close(fd)
