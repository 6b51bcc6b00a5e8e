"""The adaptive deadline and the circuit breaker, stepped with a fake clock."""

from __future__ import annotations

import os
import time
from typing import Any

import grpc
import pytest
from grpc_test_servers import CallCounter, field1_reply, raw_server, requested_count

from qr_sampler import EntropyUnavailableError, FallbackEntropySource, SystemEntropySource
from qr_source_grpc import CircuitBreakerSettings, GrpcEntropySource, GrpcSourceSettings
from qr_source_grpc.breaker import CircuitBreaker
from qr_urandom_server.launch import serve_in_background

UNARY = "/qr_entropy.EntropyService/GetEntropy"
MODES = ["unary", "server_streaming", "bidi_streaming"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: FakeClock, cap_ms: float = 5000, **settings: float) -> CircuitBreaker:
    return CircuitBreaker(CircuitBreakerSettings(**settings), timeout_cap_ms=cap_ms, clock=clock)


def test_deadline_is_the_cap_until_there_is_a_sample() -> None:
    assert _breaker(FakeClock()).deadline_s(20480) == 5.0


def test_deadline_is_p99_times_multiplier_with_a_floor_and_a_cap() -> None:
    breaker = _breaker(FakeClock(), cap_ms=50, min_timeout_ms=5, timeout_multiplier=1.5)
    breaker.record_success(2.0, 100)
    assert breaker.deadline_s(100) == pytest.approx(0.005)  # 3 ms is under the floor
    for latency in [10.0] * 97 + [40.0, 40.0]:
        breaker.record_success(latency, 100)
    # Nearest rank: the p99 of 100 samples is the 99th smallest, here 40 ms.
    assert breaker.deadline_s(100) == 0.050  # 60 ms, but never above QR_GRPC_TIMEOUT_MS


def test_deadline_floor_is_a_share_of_the_timeout() -> None:
    # A loopback server answers in about a millisecond; a loaded machine's hiccups are
    # tens of ms. A deadline of a few ms made half the tokens fall back (issue 9).
    breaker = _breaker(FakeClock(), cap_ms=2000, min_timeout_ms=5)
    for _ in range(100):
        breaker.record_success(1.0, 100)
    assert breaker.deadline_s(100) == pytest.approx(0.100)  # 5% of 2000 ms
    assert _breaker(FakeClock(), cap_ms=100).deadline_s(1) == 0.1  # no sample: the cap
    defaults = _breaker(FakeClock(), cap_ms=200)
    defaults.record_success(1.0, 1)
    assert defaults.deadline_s(1) == pytest.approx(0.050)  # QR_CB_MIN_TIMEOUT_MS default


def test_deadline_scales_with_the_bytes_asked_for() -> None:
    breaker = _breaker(FakeClock(), cap_ms=20, min_timeout_ms=1, timeout_multiplier=2)
    breaker.record_success(4.0, 20480)
    assert breaker.deadline_s(20480) == pytest.approx(0.008)
    assert breaker.deadline_s(2 * 20480) == pytest.approx(0.016)
    assert breaker.deadline_s(10) == pytest.approx(0.008)  # never scaled down


def test_window_forgets_old_samples() -> None:
    breaker = _breaker(
        FakeClock(), cap_ms=20, window_size=2, min_timeout_ms=1, timeout_multiplier=1
    )
    for latency in (900.0, 10.0, 15.0):
        breaker.record_success(latency, 1)
    assert breaker.deadline_s(1) == pytest.approx(0.015)
    assert breaker.snapshot()["p99_latency_ms"] == 15.0
    assert breaker.snapshot()["last_latency_ms"] == 15.0


def test_opens_after_consecutive_failures_and_fails_fast() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, max_consecutive_failures=3, recovery_window_s=10)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success(1.0, 1)  # a success resets the count
    for _ in range(2):
        breaker.admit(1)
        breaker.record_failure()
    assert breaker.snapshot()["breaker_state"] == "closed"
    breaker.admit(1)
    breaker.record_failure()
    assert breaker.snapshot()["breaker_state"] == "open"
    clock.now += 4
    with pytest.raises(EntropyUnavailableError, match=r"open after 3 .*next probe in 6\.0 s"):
        breaker.admit(1)


def test_calls_in_flight_together_count_as_one_failure() -> None:
    """A server dying fails every call it held at once: one event, not one per call."""
    breaker = _breaker(FakeClock(), max_consecutive_failures=3)
    in_flight = [breaker.admit(1) for _ in range(8)]
    for attempt in in_flight:
        breaker.record_failure(attempt)
    assert breaker.snapshot()["consecutive_failures"] == 1
    for _ in range(2):  # retries, each let through after the last failure was counted
        breaker.record_failure(breaker.admit(1))
    assert breaker.snapshot()["breaker_state"] == "open"


def test_half_open_lets_one_probe_through_and_closes_on_success() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, max_consecutive_failures=1, recovery_window_s=10)
    breaker.record_failure()
    clock.now += 10
    breaker.admit(1)  # the probe
    assert breaker.snapshot()["breaker_state"] == "half_open"
    with pytest.raises(EntropyUnavailableError):
        breaker.admit(1)  # everyone else fails fast while the probe is out
    breaker.record_success(1.0, 1)
    assert breaker.snapshot()["breaker_state"] == "closed"
    breaker.admit(1)


def test_failed_probe_reopens_for_a_full_window() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, max_consecutive_failures=5, recovery_window_s=10)
    for _ in range(5):
        breaker.record_failure()
    clock.now += 10
    breaker.admit(1)
    breaker.record_failure()  # one failure in half-open is enough
    assert breaker.snapshot()["breaker_state"] == "open"
    clock.now += 9.9
    with pytest.raises(EntropyUnavailableError):
        breaker.admit(1)
    clock.now += 0.1
    breaker.admit(1)


def test_rejected_probe_frees_the_probe_slot() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, max_consecutive_failures=1, recovery_window_s=1)
    breaker.record_failure()
    clock.now += 1
    breaker.admit(1)
    breaker.record_rejection()
    assert breaker.snapshot()["breaker_state"] == "half_open"
    breaker.admit(1)  # the next caller may probe


def test_source_opens_its_breaker_and_recovers() -> None:
    clock = FakeClock()
    healthy = [False]
    calls = CallCounter()

    def flaky(request: bytes, context: grpc.ServicerContext) -> bytes:
        calls.hit()
        if not healthy[0]:
            context.abort(grpc.StatusCode.UNAVAILABLE, "device warming up")
        return field1_reply(b"\x01" * requested_count(request))

    settings = CircuitBreakerSettings(
        min_timeout_ms=2000, max_consecutive_failures=3, recovery_window_s=10
    )
    with raw_server(unary={UNARY: flaky}) as address:
        source = GrpcEntropySource(
            GrpcSourceSettings(server_address=address, retry_count=5), settings, breaker_clock=clock
        )
        with pytest.raises(EntropyUnavailableError, match="circuit breaker open"):
            source.get_random_bytes(8)
        assert calls.count == 3  # the breaker stopped the retries
        assert source.health_check()["healthy"] is False

        start = time.monotonic()
        with pytest.raises(EntropyUnavailableError, match="circuit breaker open"):
            source.get_random_bytes(8)
        assert time.monotonic() - start < 1  # no call, no wait (a call would take 2 s)
        assert calls.count == 3  # no call while open

        healthy[0] = True
        clock.now += 10
        assert source.get_random_bytes(8) == b"\x01" * 8  # the probe
        assert source.health_check()["breaker_state"] == "closed"
        source.close()


def test_half_open_probe_gets_the_full_timeout_and_relearns() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, cap_ms=2000, min_timeout_ms=5, max_consecutive_failures=1)
    for _ in range(50):
        breaker.record_success(1.0, 1)
    assert breaker.admit(1)[:3] == (0.1, True, False)  # learned: 5% of the timeout
    breaker.record_failure()
    clock.now += 10
    probe = breaker.admit(1)
    assert probe[:3] == (2.0, False, True)  # the probe may take the full QR_GRPC_TIMEOUT_MS
    breaker.record_success(200.0, 1, relearn=True)
    assert breaker.snapshot()["p99_latency_ms"] == 200.0  # the 1 ms samples are gone
    assert breaker.admit(1)[:3] == (pytest.approx(0.3), True, False)
    assert breaker.admit(1, full_timeout=True)[:3] == (2.0, False, False)


def _slowable_server(delay_s: list[float], failing: list[bool]) -> Any:
    """The urandom server, answering after ``delay_s[0]``, or UNAVAILABLE while failing."""

    def supply(n: int) -> bytes:
        if failing[0]:
            raise RuntimeError("device offline")
        time.sleep(delay_s[0])
        return os.urandom(n)

    return serve_in_background(byte_supply=supply)


def _served(fallback: FallbackEntropySource) -> bool:
    return not fallback.draw(64).fallback


@pytest.mark.parametrize("mode", MODES)
def test_server_that_slows_down_is_used_at_once(mode: str) -> None:
    delay, failing = [0.001], [False]
    with _slowable_server(delay, failing) as server:
        # The settings of the report: 1 ms, then 200 ms, against a 2 s timeout.
        source = GrpcEntropySource(
            GrpcSourceSettings(server_address=server.address, mode=mode, timeout_ms=2000),
            CircuitBreakerSettings(min_timeout_ms=5),
        )
        fallback = FallbackEntropySource(source, SystemEntropySource())
        assert all(_served(fallback) for _ in range(30))
        delay[0] = 0.2
        served = [_served(fallback) for _ in range(8)]
        source.close()
    assert all(served)  # before: none, the breaker opened and its probe failed forever
    assert source.health_check()["p99_latency_ms"] >= 200


@pytest.mark.parametrize("mode", MODES)
def test_probe_trusts_a_slowed_server_again_within_seconds(mode: str) -> None:
    delay, failing = [0.001], [False]
    with _slowable_server(delay, failing) as server:
        source = GrpcEntropySource(
            GrpcSourceSettings(server_address=server.address, mode=mode, timeout_ms=2000),
            CircuitBreakerSettings(min_timeout_ms=5, recovery_window_s=0.5),
        )
        fallback = FallbackEntropySource(source, SystemEntropySource())
        assert all(_served(fallback) for _ in range(30))
        failing[0] = True
        assert not _served(fallback)
        assert source.health_check()["breaker_state"] == "open"
        failing[0], delay[0] = False, 0.2
        back_at = time.monotonic()
        while not _served(fallback) and time.monotonic() - back_at < 20:
            time.sleep(0.05)
        trusted_after = time.monotonic() - back_at
        served = [_served(fallback) for _ in range(5)]
        source.close()
    assert trusted_after < 5  # the 0.5 s window, one 200 ms probe, a loaded machine
    assert all(served)
