"""Strict mode (QR_FALLBACK_MODE=error): an outage never takes vLLM down.

Issue 9 item 3: the engine used to die on the first step without entropy.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_support import MODEL_NAME, UrandomServer, VllmServer, engine_on_urandom_server

pytestmark = pytest.mark.timeout(300)

STRICT_WAIT_S = 3.0
EOS_TOKEN_ID = 1  # </s> in the tiny model's tokenizer


@pytest.fixture(scope="module")
def strict_engine(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[VllmServer, UrandomServer]]:
    settings = {
        "QR_GRPC_MODE": "unary",
        "QR_FALLBACK_MODE": "error",
        "QR_STRICT_WAIT_S": str(STRICT_WAIT_S),
        # The breaker probes a dead server again after this; short, so recovery is quick.
        "QR_CB_RECOVERY_WINDOW_S": "1",
    }
    with engine_on_urandom_server(tiny_model, tmp_path_factory.mktemp("strict"), settings) as both:
        yield both


def generate(engine: VllmServer, name: str, tokens: int = 16) -> Any:
    return engine.client().completions.create(
        model=MODEL_NAME,
        prompt="The entropy source",
        max_tokens=tokens,
        extra_body={"vllm_xargs": {"qr_tag": name}, "return_token_ids": True},
    )


def test_an_outage_ends_requests_with_a_record_and_the_server_stays_up(
    strict_engine: tuple[VllmServer, UrandomServer],
) -> None:
    engine, entropy = strict_engine
    entropy.stop()
    name = uuid.uuid4().hex[:12]
    reply = generate(engine, name)
    ids = list(reply.choices[0].token_ids)
    assert reply.choices[0].finish_reason == "stop"
    records = engine.records_of(name, len(ids))
    assert [r["token_id"] for r in records] == ids
    ended = records[-1]
    assert ended["token_id"] == EOS_TOKEN_ID
    assert "strict mode" in ended["end_reason"]
    assert ended["u"] is None
    assert ended["entropy_source"] == "none"
    assert all(r["entropy_source"] == "quantum_grpc" for r in records[:-1])
    assert not any(r["fallback"] for r in records)
    assert "strict mode: ended 1 request(s)" in engine.log()
    assert engine.healthy()

    entropy.start()
    deadline = time.monotonic() + 60
    while True:  # requests end until the breaker's probe finds the server back
        name = uuid.uuid4().hex[:12]
        ids = list(generate(engine, name).choices[0].token_ids)
        records = engine.records_of(name, len(ids))
        if records[-1]["end_reason"] is None or time.monotonic() > deadline:
            break
    assert [r["token_id"] for r in records] == ids
    assert {r["entropy_source"] for r in records} == {"quantum_grpc"}
    assert all(r["end_reason"] is None for r in records)


def test_an_outage_shorter_than_the_wait_only_delays_tokens(
    strict_engine: tuple[VllmServer, UrandomServer],
) -> None:
    engine, entropy = strict_engine
    entropy.stop()
    restart = threading.Timer(STRICT_WAIT_S / 3, entropy.start)
    restart.start()
    name = uuid.uuid4().hex[:12]
    started = time.monotonic()
    ids = list(generate(engine, name, tokens=8).choices[0].token_ids)
    restart.join()
    records = engine.records_of(name, len(ids))
    assert [r["token_id"] for r in records] == ids
    assert {r["entropy_source"] for r in records} == {"quantum_grpc"}
    assert all(r["end_reason"] is None for r in records)
    assert time.monotonic() - started < 120
