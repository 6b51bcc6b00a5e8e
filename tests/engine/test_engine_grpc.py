"""The gRPC source inside the engine: qr-urandom-server in each mode, outages, a foreign server."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from engine_support import MODEL_NAME, UrandomServer, VllmServer, engine_on_urandom_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "source_grpc"))
from grpc_test_servers import field1_reply, raw_server, requested_count

pytestmark = pytest.mark.timeout(300)

PROMPT = "The entropy source"
API_KEY = "engine-suite-secret-4f1c9a"
PER_CALL_CAP = 13_312


def generate(engine: VllmServer, name: str, tokens: int) -> int:
    """One request of exactly ``tokens`` tokens; returns how many came back."""
    reply = engine.client().completions.create(
        model=MODEL_NAME,
        prompt=PROMPT,
        max_tokens=tokens,
        extra_body={"vllm_xargs": {"qr_tag": name}, "ignore_eos": True},
    )
    return int(reply.usage.completion_tokens)


def generate_concurrently(engine: VllmServer, requests: int, tokens: int) -> list[dict[str, Any]]:
    """``requests`` requests at once; returns all their records."""
    names = [uuid.uuid4().hex[:12] for _ in range(requests)]
    with ThreadPoolExecutor(requests) as pool:
        counts = list(pool.map(lambda name: generate(engine, name, tokens), names))
    return [r for name, n in zip(names, counts, strict=True) for r in engine.records_of(name, n)]


@pytest.fixture(scope="module", params=["unary", "server_streaming", "bidi_streaming"])
def grpc_engine(
    request: pytest.FixtureRequest, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[VllmServer, UrandomServer]]:
    run_dir = tmp_path_factory.mktemp(request.param)
    with engine_on_urandom_server(tiny_model, run_dir, {"QR_GRPC_MODE": request.param}) as both:
        yield both


def test_a_healthy_server_under_load_gives_no_fallback_token(
    grpc_engine: tuple[VllmServer, UrandomServer],
) -> None:
    """Issue 9 item 4 (fixed in qr-source-grpc): no fallback while the server is fine."""
    engine, _ = grpc_engine
    records = generate_concurrently(engine, requests=8, tokens=48)
    assert len(records) == 8 * 48
    assert [r for r in records if r["fallback"]] == []
    assert {r["entropy_source"] for r in records} == {"quantum_grpc"}


def test_a_short_pause_of_the_server_gives_fallback_for_about_a_second_at_most(
    grpc_engine: tuple[VllmServer, UrandomServer],
) -> None:
    """Issue 9 item 4 (fixed in qr-source-grpc): a 150 ms stall must not make the
    source distrusted for long; 3 s later no token falls back."""
    engine, entropy = grpc_engine
    assert entropy.proc is not None
    load = threading.Thread(target=generate_concurrently, args=(engine, 4, 256))
    load.start()
    time.sleep(1)
    os.kill(entropy.proc.pid, signal.SIGSTOP)
    time.sleep(0.15)
    os.kill(entropy.proc.pid, signal.SIGCONT)
    assert load.is_alive(), "the stall must fall while the engine is generating"
    load.join()
    time.sleep(3)
    after = generate_concurrently(engine, requests=4, tokens=32)
    assert [r for r in after if r["fallback"]] == []


def test_killed_entropy_server_gives_flagged_fallback_then_recovery(
    grpc_engine: tuple[VllmServer, UrandomServer],
) -> None:
    engine, entropy = grpc_engine
    entropy.stop(signal.SIGKILL)
    during = generate_concurrently(engine, requests=2, tokens=12)
    assert len(during) == 24
    assert all(r["fallback"] and r["entropy_source"] == "system" for r in during)
    assert engine.healthy()

    entropy.start()
    # The breaker probes the server again after its cool-down; then no more fallback.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not any(r["fallback"] for r in generate_concurrently(engine, requests=1, tokens=8)):
            break
    after = generate_concurrently(engine, requests=4, tokens=16)
    assert [r for r in after if r["fallback"]] == []


@pytest.fixture(scope="module")
def foreign_engine(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[VllmServer, list[int]]]:
    """A server speaking another protocol (qrng.QuantumRNG), with an API key and a per-call cap."""
    asked: list[int] = []

    def get_random_bytes(request: bytes, context: grpc.ServicerContext) -> bytes:
        if dict(context.invocation_metadata()).get("api-key") != API_KEY:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad api key")
        count = requested_count(request)
        asked.append(count)
        if count > PER_CALL_CAP:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {PER_CALL_CAP} bytes")
        # Random bytes: zeros would (rightly) trip the live health tests.
        return field1_reply(os.urandom(count))

    with raw_server({"/qrng.QuantumRNG/GetRandomBytes": get_random_bytes}) as address:
        settings = {
            "QR_ENTROPY_SOURCE_TYPE": "quantum_grpc",
            "QR_GRPC_SERVER_ADDRESS": address,
            "QR_GRPC_MODE": "unary",
            "QR_GRPC_METHOD_PATH": "/qrng.QuantumRNG/GetRandomBytes",
            "QR_GRPC_STREAM_METHOD_PATH": "",
            "QR_GRPC_API_KEY": API_KEY,
            "QR_GRPC_API_KEY_HEADER": "api-key",
            "QR_GRPC_MAX_BYTES_PER_REQUEST": str(PER_CALL_CAP),
            "QR_LOG_LEVEL": "full",
        }
        engine = VllmServer(tiny_model, tmp_path_factory.mktemp("foreign"), settings)
        try:
            engine.start()
            yield engine, asked
        finally:
            engine.stop()


def test_a_foreign_server_with_a_key_and_a_cap_serves_every_token(
    foreign_engine: tuple[VllmServer, list[int]],
) -> None:
    engine, asked = foreign_engine
    records = generate_concurrently(engine, requests=4, tokens=12)
    assert len(records) == 48
    assert [r for r in records if r["fallback"]] == []
    assert {r["entropy_source"] for r in records} == {"quantum_grpc"}
    assert asked
    assert max(asked) <= PER_CALL_CAP


def test_the_key_is_in_no_log_and_no_record(
    foreign_engine: tuple[VllmServer, list[int]],
) -> None:
    engine, _ = foreign_engine
    generate(engine, uuid.uuid4().hex[:12], 4)
    assert "qr-sampler token" in engine.log()  # QR_LOG_LEVEL=full logs every record
    assert API_KEY not in engine.log()
    assert API_KEY not in engine.records_path.read_text()
