"""qr-sampler's conformance suite against the device source on a pseudo-terminal (as a
serial QRNG, through pyserial), a FIFO fed by a program, and /dev/urandom."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SourceFactory, Writer

from qr_sampler import EntropySource
from qr_sampler.testing import EntropySourceConformance


class TestSerialPtyConformance(EntropySourceConformance):
    @pytest.fixture
    def source(self, pty_device: tuple[str, Writer], make_source: SourceFactory) -> EntropySource:
        return make_source(mode="serial", path=pty_device[0])

    @pytest.fixture
    def unavailable_source(self, tmp_path: Path, make_source: SourceFactory) -> EntropySource:
        return make_source(mode="serial", path=str(tmp_path / "ttyACM9"))


class TestPlainPtyConformance(EntropySourceConformance):
    """The same port read as a plain character device (its line set raw by the far end)."""

    @pytest.fixture
    def source(self, pty_device: tuple[str, Writer], make_source: SourceFactory) -> EntropySource:
        return make_source(path=pty_device[0])


class TestFifoConformance(EntropySourceConformance):
    @pytest.fixture
    def source(self, fifo: tuple[str, Writer], make_source: SourceFactory) -> EntropySource:
        return make_source(path=fifo[0])

    @pytest.fixture
    def unavailable_source(self, tmp_path: Path, make_source: SourceFactory) -> EntropySource:
        return make_source(path=str(tmp_path / "nobody-made-this.fifo"))


class TestUrandomConformance(EntropySourceConformance):
    @pytest.fixture
    def source(self, make_source: SourceFactory) -> EntropySource:
        return make_source(path="/dev/urandom")
