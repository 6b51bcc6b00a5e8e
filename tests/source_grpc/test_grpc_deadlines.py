"""A draw keeps its time budget whatever the server and gRPC do: many threads at once, a
gRPC deadline that never fires, ``close()`` during a stuck draw, surplus stream replies."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import grpc
import pytest
from grpc_test_servers import (
    CallCounter,
    SourceFactory,
    field1_reply,
    raw_server,
    request_fields,
    varint_field,
)

from qr_sampler import EntropyUnavailableError
from qr_source_grpc import CircuitBreakerSettings, channel, source
from qr_urandom_server.launch import serve_in_background

MODES = ["unary", "server_streaming", "bidi_streaming"]
STREAM = "/qr_entropy.EntropyService/StreamEntropy"
# Room for a loaded 2-core machine to schedule threads late; far below the stalls below.
SLACK_S = 3.0
STALL_S = 30.0


class _Outcome(NamedTuple):
    seconds: float
    error: BaseException | None


def _timed(draw: Callable[[], Any]) -> _Outcome:
    start = time.monotonic()
    try:
        draw()
    except BaseException as exc:
        return _Outcome(time.monotonic() - start, exc)
    return _Outcome(time.monotonic() - start, None)


def _stalled_server(address: str, entered: threading.Event, release: threading.Event) -> Any:
    def stalled(n: int) -> bytes:
        entered.set()
        release.wait(STALL_S)
        return os.urandom(n)

    return serve_in_background(address, byte_supply=stalled)


@pytest.mark.parametrize("mode", MODES)
def test_sixteen_threads_keep_their_budget_on_a_stalled_server(
    make_source: SourceFactory, mode: str
) -> None:
    # The breaker never opens here, so every draw waits as long as it may: 2 x 300 ms.
    breaker = CircuitBreakerSettings(max_consecutive_failures=1000)
    entered, release = threading.Event(), threading.Event()
    outcomes: list[_Outcome] = []
    with _stalled_server("127.0.0.1:0", entered, release) as server:
        entropy = make_source(server.address, breaker, mode=mode, timeout_ms=300, retry_count=1)
        threads = [
            threading.Thread(
                target=lambda: outcomes.append(_timed(lambda: entropy.get_random_bytes(64)))
            )
            for _ in range(16)
        ]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(STALL_S)
        finally:
            release.set()
    assert len(outcomes) == 16
    assert all(isinstance(outcome.error, EntropyUnavailableError) for outcome in outcomes)
    # Before, the 16th bidi draw queued for the stream behind all the others (~10 s).
    assert max(outcome.seconds for outcome in outcomes) < 0.6 + SLACK_S


class _ClientCallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class _DropDeadline(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Sends every call without a gRPC deadline: as if gRPC's own timer never fired."""

    @staticmethod
    def _without_deadline(details: Any) -> Any:
        return _ClientCallDetails(
            details.method,
            None,
            details.metadata,
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._without_deadline(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._without_deadline(details), request)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._without_deadline(details), requests)


@pytest.mark.parametrize("mode", MODES)
def test_draw_ends_on_time_when_grpc_deadline_never_fires(
    monkeypatch: pytest.MonkeyPatch, make_source: SourceFactory, mode: str
) -> None:
    monkeypatch.setattr(
        source,
        "open_channel",
        lambda settings: grpc.intercept_channel(channel.open_channel(settings), _DropDeadline()),
    )
    entered, release = threading.Event(), threading.Event()
    with _stalled_server("127.0.0.1:0", entered, release) as server:
        entropy = make_source(server.address, mode=mode, timeout_ms=300, retry_count=1)
        try:
            outcome = _timed(lambda: entropy.get_random_bytes(64))
        finally:
            release.set()
    assert entered.is_set()
    assert isinstance(outcome.error, EntropyUnavailableError)
    assert "DEADLINE_EXCEEDED" in str(outcome.error)
    assert outcome.seconds < 0.6 + SLACK_S  # not the server's 30 s stall


def test_close_does_not_wait_for_a_stuck_bidi_reply(make_source: SourceFactory) -> None:
    entered, release = threading.Event(), threading.Event()
    outcomes: list[_Outcome] = []
    with _stalled_server("127.0.0.1:0", entered, release) as server:
        entropy = make_source(server.address, mode="bidi_streaming", timeout_ms=20_000)
        drawer = threading.Thread(
            target=lambda: outcomes.append(_timed(lambda: entropy.get_random_bytes(64)))
        )
        try:
            drawer.start()
            assert entered.wait(STALL_S)
            closing = _timed(entropy.close)
            drawer.join(STALL_S)
        finally:
            release.set()
    assert closing.error is None
    assert closing.seconds < SLACK_S  # before: as long as the draw's 20 s timeout
    assert not drawer.is_alive()
    assert isinstance(outcomes[0].error, EntropyUnavailableError)
    assert outcomes[0].seconds < SLACK_S


@pytest.mark.parametrize("echo", [True, False], ids=["echoes-sequence-id", "no-echo"])
def test_surplus_stream_replies_never_answer_a_later_request(
    make_source: SourceFactory, echo: bool
) -> None:
    """Every reply carries the number of requests the server had received when it made
    the reply; a draw's bytes must come from after its own request arrived."""
    received = CallCounter()

    def answers_twice(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for request in requests:
            received.hit()
            fields = request_fields(request)
            stamp = received.count.to_bytes(8, "big")
            extra = varint_field(2, fields.get(2, 0)) if echo else b""
            reply = field1_reply(stamp * (fields[1] // 8 + 1), extra)
            yield reply
            yield reply

    with raw_server(streams={STREAM: answers_twice}) as address:
        entropy = make_source(address, mode="bidi_streaming")
        for _ in range(8):
            if not echo:
                # Without sequence ids a surplus reply is only seen once it has arrived.
                time.sleep(0.2)
            before = received.count
            stamp = int.from_bytes(entropy.get_random_bytes(8), "big")
            assert stamp > before


def test_stream_whose_field_2_is_not_a_sequence_id_is_read_in_order(
    make_source: SourceFactory,
) -> None:
    def stamped(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for request in requests:
            count = request_fields(request)[1]
            yield field1_reply(os.urandom(count), varint_field(2, time.time_ns()))

    with raw_server(streams={STREAM: stamped}) as address:
        entropy = make_source(address, mode="bidi_streaming")
        assert [len(entropy.get_random_bytes(16)) for _ in range(5)] == [16] * 5
