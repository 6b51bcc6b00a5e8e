"""A healthy server on a busy machine: no fallback under sustained load, and a short
pause costs at most about a second of fallback (issue 9: a deadline that had shrunk to a
few ms made half the tokens fall back, and a 150 ms pause all of them for good)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

import pytest
from grpc_test_servers import SourceFactory

from qr_sampler import FallbackEntropySource, SystemEntropySource
from qr_source_grpc import CircuitBreakerSettings
from qr_urandom_server.server import serve_in_background

MODES = ["unary", "server_streaming", "bidi_streaming"]
THREADS = 4
ROW_BYTES = 20480


class _Draw(NamedTuple):
    started: float
    fallback: bool


def _draw_for(fallback: FallbackEntropySource, seconds: float) -> list[_Draw]:
    """THREADS threads drawing one row's bytes each, back to back, for ``seconds``."""
    draws: list[_Draw] = []
    stop_at = time.monotonic() + seconds

    def loop() -> None:
        while time.monotonic() < stop_at:
            started = time.monotonic()
            draws.append(_Draw(started, fallback.draw(ROW_BYTES).fallback))

    threads = [threading.Thread(target=loop) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    return draws


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
        draws = _draw_for(FallbackEntropySource(entropy, SystemEntropySource()), 3.0)
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
        _draw_for(fallback, 1.0)  # learn the server's usual latency
        ends = [0.0]
        pauser = threading.Timer(0.5, lambda: ends.__setitem__(0, pause(0.15)))
        pauser.start()
        draws = _draw_for(fallback, 3.0)
        pauser.join()
    late = [draw for draw in draws if draw.started > ends[0] + 1.0]
    assert len(late) >= 10
    assert not any(draw.fallback for draw in late)
