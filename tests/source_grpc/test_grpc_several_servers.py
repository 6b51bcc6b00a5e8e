"""Several entropy servers behind one QR_GRPC_SERVER_ADDRESS, balanced by gRPC itself.

The servers are real ``qr-urandom-server`` processes on loopback ports, killed with
SIGKILL as a crashed machine would be. Every wait polls against a generous deadline:
the test machine is small and busy, so nothing here depends on how fast it is.
"""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_test_servers import raw_server

from qr_sampler import EntropyUnavailableError, FallbackEntropySource, SystemEntropySource
from qr_source_grpc import CircuitBreakerSettings, GrpcEntropySource, GrpcSourceSettings
from qr_source_grpc.channel import service_config
from qr_urandom_server.launch import serve_in_background

THREADS = 16
ROW_BYTES = 20480
LISTENING = "qr-urandom-server listening on "


class ServerProcess:
    """One ``qr-urandom-server`` process; ``restart`` brings it back on the same port."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.proc: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qr_urandom_server", "--address", f"127.0.0.1:{self.port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            self.kill()
            pytest.fail("qr-urandom-server did not say it was listening within 60 s")
        assert line.startswith(LISTENING), line
        self.port = int(line.strip().rpartition(":")[2])

    @property
    def name(self) -> str:
        """How the server names itself to clients."""
        return f"urandom@{socket.gethostname()}:{self.port}"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)


@contextmanager
def servers(count: int) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    try:
        for _ in range(count):
            started.append(ServerProcess())
        yield started
    finally:
        for server in started:
            server.kill()


def list_target(processes: list[ServerProcess]) -> str:
    return "ipv4:" + ",".join(f"127.0.0.1:{server.port}" for server in processes)


class Draw(NamedTuple):
    started: float
    fallback: bool
    server: str | None


@contextmanager
def load(fallback: FallbackEntropySource, threads: int = THREADS) -> Iterator[list[Draw]]:
    """``threads`` threads drawing a row's bytes each, back to back, until the block ends."""
    draws: list[Draw] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            started = time.monotonic()
            draw = fallback.draw(ROW_BYTES)
            assert len(draw.data) == ROW_BYTES
            draws.append(Draw(started, draw.fallback, draw.server))

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield draws
    finally:
        stop.set()
        for worker in workers:
            worker.join(60)


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(0.1)


def balanced_source(target: str, mode: str = "unary") -> GrpcEntropySource:
    # The shipped settings, but for a recovery window that keeps the test short.
    return GrpcEntropySource(
        GrpcSourceSettings(server_address=target, mode=mode),
        CircuitBreakerSettings(recovery_window_s=1.0),
    )


def test_one_of_three_dying_costs_nothing_all_three_fall_back_and_one_back_recovers() -> None:
    with servers(3) as (first, second, third):
        source = balanced_source(list_target([first, second, third]))
        fallback = FallbackEntropySource(source, SystemEntropySource())
        try:
            with load(fallback) as draws:
                wait_for(
                    lambda: {d.server for d in draws} >= {first.name, second.name, third.name},
                    "all three servers answered draws",
                )
                first.kill()
                killed_at = time.monotonic()
                wait_for(
                    lambda: sum(d.started > killed_at + 1.0 for d in draws) >= 5 * THREADS,
                    "draws went on after the first server died",
                )
                one_down = list(draws)
                second.kill()
                third.kill()
                wait_for(
                    lambda: any(d.fallback for d in draws[len(one_down) :]),
                    "draws fell back once every server was gone",
                )
                first.start()
                restarted_at = time.monotonic()
                wait_for(
                    lambda: any(d.started > restarted_at and not d.fallback for d in draws),
                    "draws came from the restarted server again",
                )
        finally:
            source.close()
    assert len(one_down) >= 10 * THREADS
    assert [d for d in one_down if d.fallback] == []
    settled = [d for d in one_down if d.started > killed_at + 1.0]
    assert {d.server for d in settled} == {second.name, third.name}
    after = draws[len(one_down) :]
    assert all(d.server is None for d in after if d.fallback)  # flagged, and no server named
    recovered = [d for d in after if d.started > restarted_at and not d.fallback]
    assert {d.server for d in recovered} == {first.name}


def test_the_server_holding_the_stream_dying_costs_no_fallback() -> None:
    with servers(2) as (first, second):
        source = balanced_source(list_target([first, second]), mode="bidi_streaming")
        fallback = FallbackEntropySource(source, SystemEntropySource())
        try:
            with load(fallback, threads=4) as draws:
                wait_for(lambda: len(draws) >= 20, "draws on the stream")
                holder = first if draws[-1].server == first.name else second
                other = second if holder is first else first
                holder.kill()
                killed_at = time.monotonic()
                wait_for(
                    lambda: sum(d.started > killed_at for d in draws) >= 20,
                    "draws went on after the stream's server died",
                )
        finally:
            source.close()
    assert [d for d in draws if d.fallback] == []
    assert draws[-1].server == other.name


def test_a_server_whose_health_is_not_serving_gets_no_draws() -> None:
    with serve_in_background() as healthy, serve_in_background() as ailing:
        target = f"ipv4:{healthy.address},{ailing.address}"
        source = balanced_source(target)
        fallback = FallbackEntropySource(source, SystemEntropySource())
        served = {"h": healthy.servicer.server_name, "a": ailing.servicer.server_name}
        try:
            with load(fallback, threads=2) as draws:
                wait_for(
                    lambda: {d.server for d in draws} == set(served.values()),
                    "both servers answered",
                )
                ailing.health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
                marked_at = time.monotonic()
                wait_for(
                    lambda: sum(d.started > marked_at + 1.0 for d in draws) >= 20,
                    "draws after the server said NOT_SERVING",
                )
                shunned = [d for d in draws if d.started > marked_at + 1.0]
                ailing.health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
                back_at = time.monotonic()
                wait_for(
                    lambda: any(
                        d.started > back_at and d.server == served["a"] for d in list(draws)
                    ),
                    "the server got draws again once SERVING",
                )
        finally:
            source.close()
    assert {d.server for d in shunned} == {served["h"]}
    assert not any(d.fallback for d in draws)


@contextmanager
def held_stream(address: str) -> Iterator[None]:
    """Another client holding a StreamEntropy stream open on ``address``."""
    requests: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream("/qr_entropy.EntropyService/StreamEntropy")(
            iter(requests.get, None)
        )
        requests.put(b"\x08\x01")  # bytes_needed = 1
        next(call)  # the stream is open and served
        try:
            yield
        finally:
            requests.put(None)
            call.cancel()


@pytest.mark.parametrize("mode", ["bidi_streaming", "server_streaming"])
def test_a_stream_refused_for_capacity_is_served_by_a_unary_call(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        serve_in_background(max_workers=2, max_streams=1) as server,
        held_stream(server.address),
    ):
        source = GrpcEntropySource(GrpcSourceSettings(server_address=server.address, mode=mode))
        fallback = FallbackEntropySource(source, None)
        try:
            with caplog.at_level("INFO", logger="qr_source_grpc"):
                draws = [fallback.draw(ROW_BYTES) for _ in range(3)]
        finally:
            source.close()
    assert [draw.fallback for draw in draws] == [False] * 3
    assert {draw.server for draw in draws} == {server.servicer.server_name}
    refusals = [r.getMessage() for r in caplog.records if "refused a stream" in r.getMessage()]
    assert len(refusals) == 1
    assert "RESOURCE_EXHAUSTED" in refusals[0]
    assert "GetEntropy" in refusals[0]


def test_a_unary_refusal_for_capacity_stays_a_rejection() -> None:
    def exhausted(request: bytes, context: grpc.ServicerContext) -> bytes:
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota")

    with raw_server(unary={"/qr_entropy.EntropyService/GetEntropy": exhausted}) as address:
        source = GrpcEntropySource(GrpcSourceSettings(server_address=address))
        try:
            with pytest.raises(EntropyUnavailableError, match="RESOURCE_EXHAUSTED"):
                source.get_random_bytes(8)
        finally:
            source.close()


def test_a_draw_names_the_server_and_a_fresh_thread_has_none() -> None:
    with serve_in_background() as server:
        source = GrpcEntropySource(GrpcSourceSettings(server_address=server.address))
        try:
            assert source.served_by() is None
            source.get_random_bytes(16)
            assert source.served_by() == server.servicer.server_name
            elsewhere: list[str | None] = []
            thread = threading.Thread(target=lambda: elsewhere.append(source.served_by()))
            thread.start()
            thread.join(30)
            assert elsewhere == [None]
        finally:
            source.close()


def test_without_health_checking_the_service_config_balances_only() -> None:
    checked = service_config(GrpcSourceSettings())
    unchecked = service_config(GrpcSourceSettings(health_check=False))
    assert '"round_robin"' in checked
    assert '"healthCheckConfig"' in checked
    assert '"round_robin"' in unchecked
    assert "healthCheckConfig" not in unchecked


def test_a_server_that_names_itself_not_is_recorded_by_the_configured_address() -> None:
    def anonymous(request: bytes, context: grpc.ServicerContext) -> bytes:
        return b"\x0a\x04" + b"\x07" * 4  # field 1: four bytes

    with raw_server(unary={"/qr_entropy.EntropyService/GetEntropy": anonymous}) as address:
        source = GrpcEntropySource(GrpcSourceSettings(server_address=address))
        try:
            draw = FallbackEntropySource(source, None).draw(4)
        finally:
            source.close()
    assert (draw.data, draw.server) == (b"\x07" * 4, address)
