"""Every mode, over TCP and a unix socket, against the real urandom reference server."""

from __future__ import annotations

import json
import threading

import pytest
from grpc_test_servers import SourceFactory

from qr_urandom_server.server import EntropyServer

MODES = ["unary", "server_streaming", "bidi_streaming"]
BATCH_DRAW = 256 * 20480  # a whole engine step at batch 256: over gRPC's 4 MiB message limit


@pytest.mark.parametrize("mode", MODES)
def test_exact_sizes(urandom_server: EntropyServer, make_source: SourceFactory, mode: str) -> None:
    source = make_source(urandom_server.address, mode=mode)
    assert source.get_random_bytes(0) == b""
    for n in (1, 20480, 3 * (1 << 20) + 5):
        assert len(source.get_random_bytes(n)) == n
    with pytest.raises(ValueError, match="negative"):
        source.get_random_bytes(-1)


@pytest.mark.parametrize("mode", MODES)
def test_whole_batch_is_chunked(
    urandom_server: EntropyServer, make_source: SourceFactory, mode: str
) -> None:
    source = make_source(urandom_server.address, mode=mode)
    data = source.get_random_bytes(BATCH_DRAW)
    assert len(data) == BATCH_DRAW
    assert len(set(data[:4096])) > 200  # really random bytes, not padding


@pytest.mark.parametrize("mode", MODES)
def test_draws_from_several_threads(
    urandom_server: EntropyServer, make_source: SourceFactory, mode: str
) -> None:
    source = make_source(urandom_server.address, mode=mode)
    sizes: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def draw() -> None:
        try:
            for n in range(1, 41):
                got = len(source.get_random_bytes(n * 97))
                with lock:
                    sizes.append(got - n * 97)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=draw) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert sizes == [0] * 240


@pytest.mark.parametrize("mode", MODES)
def test_health_check(urandom_server: EntropyServer, make_source: SourceFactory, mode: str) -> None:
    source = make_source(urandom_server.address, mode=mode)
    before = source.health_check()
    assert before["last_latency_ms"] is None
    source.get_random_bytes(64)
    health = source.health_check()
    json.dumps(health)  # JSON-serialisable
    assert health["source"] == "quantum_grpc"
    assert health["healthy"] is True
    assert health["address"] == urandom_server.address
    assert health["mode"] == mode
    assert health["method_path"] == "/qr_entropy.EntropyService/GetEntropy"
    assert health["stream_method_path"] == "/qr_entropy.EntropyService/StreamEntropy"
    assert health["tls"] is False
    assert health["authenticated"] is False
    assert health["breaker_state"] == "closed"
    assert health["last_latency_ms"] > 0
    assert health["p99_latency_ms"] >= health["last_latency_ms"] or health["p99_latency_ms"] > 0
    assert repr(source).startswith("GrpcEntropySource(address=")


@pytest.mark.parametrize("mode", MODES)
def test_close_is_idempotent_and_later_draws_fail_cleanly(
    urandom_server: EntropyServer, make_source: SourceFactory, mode: str
) -> None:
    from qr_sampler import EntropyUnavailableError

    source = make_source(urandom_server.address, mode=mode)
    source.get_random_bytes(8)
    source.close()
    source.close()
    with pytest.raises(EntropyUnavailableError, match="closed"):
        source.get_random_bytes(8)
    # A draw big enough to go out in several pieces fails just as cleanly.
    with pytest.raises(EntropyUnavailableError, match=r"shutdown|closed"):
        source.get_random_bytes(BATCH_DRAW)
