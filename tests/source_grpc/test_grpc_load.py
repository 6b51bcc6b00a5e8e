"""A healthy server on a busy machine: no fallback under sustained load, and a short
pause costs at most about a second of fallback (issue 9: a deadline that had shrunk to a
few ms made half the tokens fall back, and a 150 ms pause all of them for good)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import pytest
from grpc_test_servers import SourceFactory

from qr_sampler import FallbackEntropySource, SystemEntropySource
from qr_source_grpc import CircuitBreakerSettings
from qr_urandom_server.launch import serve_in_background

MODES = ["unary", "server_streaming", "bidi_streaming"]
THREADS = 4
ROW_BYTES = 20480


class _Draw(NamedTuple):
    started: float
    fallback: bool


@contextmanager
def _drawing(fallback: FallbackEntropySource) -> Iterator[list[_Draw]]:
    """THREADS threads drawing one row's bytes each, back to back, until the block ends."""
    draws: list[_Draw] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            started = time.monotonic()
            draws.append(_Draw(started, fallback.draw(ROW_BYTES).fallback))

    threads = [threading.Thread(target=loop) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        yield draws
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)


def _pausable_supply() -> tuple[Callable[[int], bytes], Callable[[float], float]]:
    """A byte supply, and ``pause(seconds)`` that holds every reply made in that window
    until it ends; ``pause`` returns the monotonic time the pause ends."""
    resume_at = [0.0]

    def supply(n: int) -> bytes:
        delay = resume_at[0] - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return os.urandom(n)

    def pause(seconds: float) -> float:
        resume_at[0] = time.monotonic() + seconds
        return resume_at[0]

    return supply, pause


@pytest.mark.usefixtures("cpu_hog")
@pytest.mark.parametrize("mode", MODES)
def test_healthy_server_under_load_gives_no_fallback(make_source: SourceFactory, mode: str) -> None:
    with serve_in_background() as server:
        # The shipped defaults, as a profile that sets nothing gets them.
        entropy = make_source(server.address, CircuitBreakerSettings(), mode=mode)
        with _drawing(FallbackEntropySource(entropy, SystemEntropySource())) as draws:
            time.sleep(3.0)
    assert len(draws) >= 20
    assert sum(draw.fallback for draw in draws) == 0


@pytest.mark.usefixtures("cpu_hog")
@pytest.mark.parametrize("mode", MODES)
def test_short_pause_costs_at_most_a_second_of_fallback(
    make_source: SourceFactory, mode: str
) -> None:
    supply, pause = _pausable_supply()
    with serve_in_background(byte_supply=supply) as server:
        entropy = make_source(server.address, CircuitBreakerSettings(), mode=mode)
        fallback = FallbackEntropySource(entropy, SystemEntropySource())
        with _drawing(fallback) as draws:
            time.sleep(1.0)  # the server's usual latency is learned
            resumed_at = pause(0.15)
            while time.monotonic() < resumed_at + 2.5:
                time.sleep(0.1)
    late = [draw for draw in draws if draw.started > resumed_at + 1.0]
    assert late  # draws went on after the pause
    assert not any(draw.fallback for draw in late)
