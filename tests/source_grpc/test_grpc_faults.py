"""Servers that die, stall, trickle, cap, reject or talk garbage: a clear error or exact
bytes, always within a bounded time."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_test_servers import CallCounter, SourceFactory, field1_reply, raw_server, requested_count

from qr_sampler import EntropyUnavailableError, FallbackEntropySource, SystemEntropySource
from qr_source_grpc import CircuitBreakerSettings
from qr_urandom_server.launch import serve_in_background

MODES = ["unary", "server_streaming", "bidi_streaming"]
UNARY = "/qr_entropy.EntropyService/GetEntropy"
STREAM = "/qr_entropy.EntropyService/StreamEntropy"


def _short_supply(n: int) -> bytes:
    return os.urandom(max(1, n // 3))


@pytest.mark.parametrize("mode", MODES)
def test_short_replies_are_topped_up(
    transport_address: str, make_source: SourceFactory, mode: str
) -> None:
    with serve_in_background(transport_address, byte_supply=_short_supply) as server:
        source = make_source(server.address, mode=mode)
        assert len(source.get_random_bytes(20480)) == 20480


def test_long_replies_are_cut_to_size(make_source: SourceFactory) -> None:
    with serve_in_background(byte_supply=lambda n: os.urandom(n + 10)) as server:
        for mode in MODES:
            assert len(make_source(server.address, mode=mode).get_random_bytes(100)) == 100


def test_server_stream_that_sends_pieces_is_read_to_the_end(make_source: SourceFactory) -> None:
    def pieces(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        wanted = requested_count(next(requests))
        for _ in range(wanted // 10):
            yield field1_reply(os.urandom(10))

    with raw_server(streams={STREAM: pieces}) as address:
        source = make_source(address, mode="server_streaming")
        assert len(source.get_random_bytes(1000)) == 1000


def test_endless_server_stream_is_cancelled_once_enough_arrived(
    make_source: SourceFactory,
) -> None:
    def endless(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        while context.is_active():
            yield field1_reply(os.urandom(64))

    with raw_server(streams={STREAM: endless}) as address:
        source = make_source(address, mode="server_streaming")
        assert len(source.get_random_bytes(1000)) == 1000


def test_empty_server_stream_is_an_error(make_source: SourceFactory) -> None:
    def silent(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        yield from ()

    with raw_server(streams={STREAM: silent}) as address:
        source = make_source(address, mode="server_streaming")
        with pytest.raises(EntropyUnavailableError, match="ended without a reply"):
            source.get_random_bytes(10)


def test_bidi_stream_closed_by_the_server_is_reopened(make_source: SourceFactory) -> None:
    def one_per_stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        yield field1_reply(os.urandom(requested_count(next(requests))))

    with raw_server(streams={STREAM: one_per_stream}) as address:
        source = make_source(address, mode="bidi_streaming")
        for _ in range(3):
            assert len(source.get_random_bytes(16)) == 16


def test_trickling_server_hits_the_draw_budget(make_source: SourceFactory) -> None:
    def one_byte(request: bytes, context: grpc.ServicerContext) -> bytes:
        time.sleep(0.02)
        return field1_reply(b"x")

    with raw_server(unary={UNARY: one_byte}) as address:
        # Budget 100 ms x 2 attempts; the call the budget cuts short leaves nothing to retry.
        source = make_source(address, timeout_ms=100, retry_count=1)
        start = time.monotonic()
        with pytest.raises(EntropyUnavailableError, match="ran out of time"):
            source.get_random_bytes(100_000)
        assert time.monotonic() - start < 5  # 0.2 s, with room for a loaded machine


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"\x0a\xff\xff\xff\xff\x0f\x00", "not a protobuf message"),
        (b"\x10\x05\x1a\x03dev", "no bytes in field 1"),  # fields 2 and 3 only
    ],
    ids=["garbage", "no field 1"],
)
@pytest.mark.parametrize("mode", MODES)
def test_a_malformed_reply_is_a_clear_error(
    make_source: SourceFactory, mode: str, reply: bytes, error: str
) -> None:
    def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
        return reply

    def stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for _ in requests:
            yield reply

    with raw_server(unary={UNARY: unary}, streams={STREAM: stream}) as address:
        source = make_source(address, mode=mode)
        with pytest.raises(EntropyUnavailableError, match=error):
            source.get_random_bytes(16)


@pytest.mark.parametrize("mode", MODES)
def test_stalled_server_fails_within_the_deadline(
    transport_address: str, make_source: SourceFactory, mode: str
) -> None:
    release = threading.Event()

    def stalled(n: int) -> bytes:
        release.wait(30)
        return os.urandom(n)

    with serve_in_background(transport_address, byte_supply=stalled) as server:
        source = make_source(server.address, mode=mode, timeout_ms=150, retry_count=1)
        start = time.monotonic()
        try:
            with pytest.raises(EntropyUnavailableError, match="DEADLINE_EXCEEDED") as caught:
                source.get_random_bytes(64)
        finally:
            release.set()
        assert time.monotonic() - start < 10  # 0.3 s budget; the stall is 30 s
        assert "(attempts: 2)" in str(caught.value)


@pytest.mark.parametrize("mode", MODES)
def test_server_killed_mid_draw(tmp_path: Path, make_source: SourceFactory, mode: str) -> None:
    entered, release = threading.Event(), threading.Event()

    def hanging(n: int) -> bytes:
        entered.set()
        release.wait(30)
        return os.urandom(n)

    address = f"unix://{tmp_path}/killed.sock"
    outcome: list[BaseException | bytes] = []
    with serve_in_background(address, byte_supply=hanging) as server:
        # Ended by the kill, not by the 30 s timeout nor the 30 s stall.
        source = make_source(server.address, mode=mode, timeout_ms=30_000, retry_count=0)
        worker = threading.Thread(
            target=lambda: outcome.append(_draw_or_error(source.get_random_bytes, 64))
        )
        worker.start()
        assert entered.wait(20)
        start = time.monotonic()
        server.stop(None)
        worker.join(20)
        release.set()
    assert not worker.is_alive()
    assert time.monotonic() - start < 15
    assert isinstance(outcome[0], EntropyUnavailableError)


@pytest.mark.parametrize("mode", MODES)
def test_recovers_when_the_server_comes_back(
    tmp_path: Path, make_source: SourceFactory, mode: str
) -> None:
    address = f"unix://{tmp_path}/restart.sock"
    with serve_in_background(address) as server:
        breaker = CircuitBreakerSettings(min_timeout_ms=2000, recovery_window_s=0)
        source = make_source(server.address, breaker, mode=mode, timeout_ms=500)
        assert len(source.get_random_bytes(32)) == 32  # a bidi stream is now open
    with pytest.raises(EntropyUnavailableError):
        source.get_random_bytes(32)
    with serve_in_background(address):
        assert _eventually(lambda: len(source.get_random_bytes(32)) == 32)


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED]
)
def test_per_call_cap_needs_chunking(make_source: SourceFactory, code: grpc.StatusCode) -> None:
    cap = 4096
    calls = CallCounter()

    def capped(request: bytes, context: grpc.ServicerContext) -> bytes:
        calls.hit()
        n = requested_count(request)
        if n > cap:
            context.abort(code, f"at most {cap} bytes per call")
        return field1_reply(os.urandom(n))

    with raw_server(unary={UNARY: capped}) as address:
        uncapped = make_source(address)
        with pytest.raises(EntropyUnavailableError, match="QR_GRPC_MAX_BYTES_PER_REQUEST") as err:
            uncapped.get_random_bytes(20480)
        assert code.name in str(err.value)
        assert calls.count == 1  # a rejection is not retried

        chunked = make_source(address, max_bytes_per_request=cap)
        assert len(chunked.get_random_bytes(20480)) == 20480
        assert calls.count == 1 + 5


def test_urandom_server_cap_with_chunking(make_source: SourceFactory) -> None:
    with serve_in_background(max_bytes_per_request=1000) as server:
        with pytest.raises(EntropyUnavailableError, match="INVALID_ARGUMENT"):
            make_source(server.address).get_random_bytes(1001)
        for mode in MODES:
            source = make_source(server.address, mode=mode, max_bytes_per_request=1000)
            assert len(source.get_random_bytes(20480)) == 20480


@pytest.mark.parametrize(
    ("mode", "setting"),
    [("unary", "QR_GRPC_METHOD_PATH"), ("bidi_streaming", "QR_GRPC_STREAM_METHOD_PATH")],
)
def test_unknown_method_names_the_setting(
    make_source: SourceFactory, mode: str, setting: str
) -> None:
    with serve_in_background() as server:
        source = make_source(
            server.address, mode=mode, method_path="/x.Y/Z", stream_method_path="/x.Y/Z"
        )
        with pytest.raises(EntropyUnavailableError) as caught:
            source.get_random_bytes(8)
    assert f"UNIMPLEMENTED: the server has no method /x.Y/Z — check {setting}" in str(caught.value)


@pytest.mark.parametrize(
    ("code", "retried"),
    [
        (grpc.StatusCode.UNAVAILABLE, True),
        (grpc.StatusCode.INTERNAL, True),
        (grpc.StatusCode.UNAUTHENTICATED, False),
        (grpc.StatusCode.PERMISSION_DENIED, False),
        (grpc.StatusCode.INVALID_ARGUMENT, False),
    ],
)
def test_only_transport_failures_are_retried(
    make_source: SourceFactory, code: grpc.StatusCode, retried: bool
) -> None:
    calls = CallCounter()

    def failing(request: bytes, context: grpc.ServicerContext) -> bytes:
        calls.hit()
        context.abort(code, "no")

    with raw_server(unary={UNARY: failing}) as address:
        source = make_source(address, retry_count=2)
        with pytest.raises(EntropyUnavailableError, match=code.name):
            source.get_random_bytes(8)
    assert calls.count == (3 if retried else 1)


def test_dead_server_is_flagged_by_the_core_fallback(
    tmp_path: Path, make_source: SourceFactory
) -> None:
    source = make_source(f"unix://{tmp_path}/nobody-listens.sock", timeout_ms=500)
    with FallbackEntropySource(source, SystemEntropySource()) as fallback:
        start = time.monotonic()
        draws = [fallback.draw(20480) for _ in range(10)]
        assert time.monotonic() - start < 10  # the breaker stops the retries
    assert all(draw.fallback and draw.source == "system" for draw in draws)
    assert all(len(draw.data) == 20480 for draw in draws)
    assert source.health_check()["breaker_state"] == "open"


def test_strict_mode_surfaces_the_outage(tmp_path: Path, make_source: SourceFactory) -> None:
    source = make_source(f"unix://{tmp_path}/nobody-listens.sock")
    with pytest.raises(EntropyUnavailableError, match="UNAVAILABLE"):
        FallbackEntropySource(source, None).draw(8)


def _draw_or_error(draw: Callable[[int], bytes], n: int) -> BaseException | bytes:
    try:
        return draw(n)
    except BaseException as exc:
        return exc


def _eventually(check: Callable[[], bool], within_s: float = 20.0) -> bool:
    """Retry ``check`` until it passes; gRPC reconnects with a short backoff."""
    give_up = time.monotonic() + within_s
    while time.monotonic() < give_up:
        try:
            if check():
                return True
        except EntropyUnavailableError:
            pass
        time.sleep(0.05)
    return False


def test_a_bidi_stream_the_server_closed_as_idle_is_reopened_without_fallback(
    transport_address: str, make_source: SourceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="qr_urandom_server"),
        serve_in_background(transport_address, stream_idle_timeout_s=0.5) as server,
    ):
        source = make_source(server.address, mode="bidi_streaming")
        fallback = FallbackEntropySource(source, SystemEntropySource())
        assert not fallback.draw(64).fallback
        assert _eventually(lambda: "cancelling a StreamEntropy stream" in caplog.text)
        draws = [fallback.draw(64) for _ in range(5)]
    assert [draw.fallback for draw in draws] == [False] * 5
    assert {draw.source for draw in draws} == {source.name}
    assert source.health_check()["breaker_state"] == "closed"
