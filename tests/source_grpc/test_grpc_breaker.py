"""The adaptive deadline and the circuit breaker, stepped with a fake clock."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_test_servers import CallCounter, field1_reply, raw_server, requested_count

from qr_sampler import EntropyUnavailableError
from qr_source_grpc import CircuitBreakerSettings, GrpcEntropySource, GrpcSourceSettings
from qr_source_grpc.breaker import CircuitBreaker

UNARY = "/qr_entropy.EntropyService/GetEntropy"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: FakeClock, **settings: float) -> CircuitBreaker:
    return CircuitBreaker(CircuitBreakerSettings(**settings), timeout_cap_ms=5000, clock=clock)


def test_deadline_is_the_cap_until_there_is_a_sample() -> None:
    assert _breaker(FakeClock()).deadline_s(20480) == 5.0


def test_deadline_is_p99_times_multiplier_with_a_floor_and_a_cap() -> None:
    breaker = _breaker(FakeClock(), min_timeout_ms=5, timeout_multiplier=1.5)
    breaker.record_success(2.0, 100)
    assert breaker.deadline_s(100) == pytest.approx(0.005)  # 3 ms is under the floor
    for latency in [10.0] * 97 + [40.0, 40.0]:
        breaker.record_success(latency, 100)
    # Nearest rank: the p99 of 100 samples is the 99th smallest, here 40 ms.
    assert breaker.deadline_s(100) == pytest.approx(0.060)
    breaker.record_success(9000.0, 100)
    breaker.record_success(9000.0, 100)
    assert breaker.deadline_s(100) == 5.0  # never above QR_GRPC_TIMEOUT_MS


def test_deadline_scales_with_the_bytes_asked_for() -> None:
    breaker = _breaker(FakeClock(), min_timeout_ms=1, timeout_multiplier=2)
    breaker.record_success(4.0, 20480)
    assert breaker.deadline_s(20480) == pytest.approx(0.008)
    assert breaker.deadline_s(4 * 20480) == pytest.approx(0.032)
    assert breaker.deadline_s(10) == pytest.approx(0.008)  # never scaled down


def test_window_forgets_old_samples() -> None:
    breaker = _breaker(FakeClock(), window_size=2, min_timeout_ms=1, timeout_multiplier=1)
    for latency in (900.0, 10.0, 20.0):
        breaker.record_success(latency, 1)
    assert breaker.deadline_s(1) == pytest.approx(0.020)
    assert breaker.snapshot()["p99_latency_ms"] == 20.0
    assert breaker.snapshot()["last_latency_ms"] == 20.0


def test_opens_after_consecutive_failures_and_fails_fast() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, max_consecutive_failures=3, recovery_window_s=10)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success(1.0, 1)  # a success resets the count
    for _ in range(2):
        breaker.admit()
        breaker.record_failure()
    assert breaker.snapshot()["breaker_state"] == "closed"
    breaker.admit()
    breaker.record_failure()
    assert breaker.snapshot()["breaker_state"] == "open"
    clock.now += 4
    with pytest.raises(EntropyUnavailableError, match=r"open after 3 .*next probe in 6\.0 s"):
        breaker.admit()


def test_half_open_lets_one_probe_through_and_closes_on_success() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, max_consecutive_failures=1, recovery_window_s=10)
    breaker.record_failure()
    clock.now += 10
    breaker.admit()  # the probe
    assert breaker.snapshot()["breaker_state"] == "half_open"
    with pytest.raises(EntropyUnavailableError):
        breaker.admit()  # everyone else fails fast while the probe is out
    breaker.record_success(1.0, 1)
    assert breaker.snapshot()["breaker_state"] == "closed"
    breaker.admit()


def test_failed_probe_reopens_for_a_full_window() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, max_consecutive_failures=5, recovery_window_s=10)
    for _ in range(5):
        breaker.record_failure()
    clock.now += 10
    breaker.admit()
    breaker.record_failure()  # one failure in half-open is enough
    assert breaker.snapshot()["breaker_state"] == "open"
    clock.now += 9.9
    with pytest.raises(EntropyUnavailableError):
        breaker.admit()
    clock.now += 0.1
    breaker.admit()


def test_rejected_probe_frees_the_probe_slot() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, max_consecutive_failures=1, recovery_window_s=1)
    breaker.record_failure()
    clock.now += 1
    breaker.admit()
    breaker.record_rejection()
    assert breaker.snapshot()["breaker_state"] == "half_open"
    breaker.admit()  # the next caller may probe


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
        assert time.monotonic() - start < 0.05
        assert calls.count == 3  # no call while open

        healthy[0] = True
        clock.now += 10
        assert source.get_random_bytes(8) == b"\x01" * 8  # the probe
        assert source.health_check()["breaker_state"] == "closed"
        source.close()
