"""Fixtures for the qr-source-http tests: a clean environment and sources built for fakes."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qr_sampler.testing import isolated_environment  # noqa: F401 - applies to every test here
from qr_source_http import HttpEntropySource, HttpSourceSettings

# The test modules import http_fakes; this makes that work under any import mode.
sys.path.insert(0, str(Path(__file__).parent))

SourceFactory = Callable[..., HttpEntropySource]


@pytest.fixture
def make_source() -> Iterator[SourceFactory]:
    """Builds sources from keyword settings and closes them after the test. The
    deadline is generous: a loaded 2-core machine must not turn a reply into a timeout."""
    built: list[HttpEntropySource] = []

    def make(**settings: object) -> HttpEntropySource:
        source = HttpEntropySource(HttpSourceSettings(**{"timeout_ms": 30_000, **settings}))
        built.append(source)
        return source

    yield make
    for source in built:
        source.close()


def closed_port_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
