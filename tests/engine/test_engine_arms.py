"""Two experiment arms in one running server (QR_ARMS), requests of both interleaved.

Issue 13: each record carries the arm its request chose and the source that arm
draws from; an unknown arm is refused at admission and the server serves on.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
from engine_support import MODEL_NAME, VllmServer

pytestmark = pytest.mark.timeout(300)

ARMS = {"qrng": "system", "control": "prng"}
TOKENS = 12


@pytest.fixture(scope="module")
def arms_engine(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    settings = {
        "QR_ARMS": ",".join(f"{arm}={source}" for arm, source in ARMS.items()),
        "QR_PRNG_SEED": "20261201",
    }
    engine = VllmServer(tiny_model, tmp_path_factory.mktemp("arms"), settings)
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()


def generate(engine: VllmServer, arm: str, tag: str) -> Any:
    return engine.client().completions.create(
        model=MODEL_NAME,
        prompt="Two arms, one server:",
        max_tokens=TOKENS,
        extra_body={"vllm_xargs": {"qr_arm": arm, "qr_tag": tag}, "return_token_ids": True},
    )


def test_interleaved_requests_of_two_arms_record_their_own_arm_and_source(
    arms_engine: VllmServer,
) -> None:
    run = uuid.uuid4().hex[:8]
    jobs = [(arm, f"{run}-{arm}-{i}") for i in range(4) for arm in ARMS]
    with ThreadPoolExecutor(len(jobs)) as pool:
        replies = list(pool.map(lambda job: generate(arms_engine, *job), jobs))
    for (arm, tag), reply in zip(jobs, replies, strict=True):
        returned = reply.choices[0].token_ids
        records = arms_engine.records_of(tag, at_least=len(returned))
        assert [r["token_id"] for r in records] == returned
        assert {(r["arm"], r["entropy_source"]) for r in records} == {(arm, ARMS[arm])}
        assert not any(r["fallback"] for r in records)
        assert len({r["request_id"] for r in records}) == 1


def test_an_unknown_arm_is_http_400_and_the_server_serves_on(arms_engine: VllmServer) -> None:
    with pytest.raises(openai.BadRequestError, match="qr_arm"):
        generate(arms_engine, "treatment", "refused")
    reply = generate(arms_engine, "control", f"after-{uuid.uuid4().hex[:8]}")
    assert len(reply.choices[0].token_ids) >= 1
