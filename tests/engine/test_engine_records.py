"""The plugin inside vLLM's OpenAI server: one record per returned token, settings per request."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
from engine_support import MAX_BATCHED_TOKENS, MODEL_NAME, VllmServer
from scipy import stats

pytestmark = pytest.mark.timeout(300)

PROMPT = "The entropy source"
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def engine(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    server = VllmServer(tiny_model, tmp_path_factory.mktemp("system"), {})
    server.start()
    yield server
    server.stop()


def tag() -> str:
    return uuid.uuid4().hex[:12]


def complete(engine: VllmServer, prompt: str, xargs: dict[str, Any], **kwargs: Any) -> Any:
    extra = {"vllm_xargs": xargs, "return_token_ids": True, **kwargs.pop("extra_body", {})}
    return engine.client().completions.create(
        model=MODEL_NAME, prompt=prompt, extra_body=extra, **kwargs
    )


def returned_ids(reply: Any) -> list[int]:
    return list(reply.choices[0].token_ids)


def assert_one_record_per_token(engine: VllmServer, name: str, ids: list[int]) -> None:
    records = engine.records_of(name, len(ids))
    assert [r["token_id"] for r in records] == ids
    assert [r["position"] for r in records] == list(range(len(ids)))


def test_the_plugin_is_loaded(engine: VllmServer) -> None:
    assert "qr-sampler active (v1 runner)" in engine.log()
    name = tag()
    reply = complete(engine, PROMPT, {"qr_tag": name}, max_tokens=4)
    assert engine.records_of(name, len(returned_ids(reply)))


def test_plain_completion(engine: VllmServer) -> None:
    name = tag()
    reply = complete(engine, PROMPT, {"qr_tag": name}, max_tokens=24)
    assert_one_record_per_token(engine, name, returned_ids(reply))


def test_chat_completion(engine: VllmServer) -> None:
    name = tag()
    reply = engine.client().chat.completions.create(
        model=MODEL_NAME,
        messages=[{"role": "user", "content": "Say something random."}],
        max_tokens=24,
        extra_body={"vllm_xargs": {"qr_tag": name}, "return_token_ids": True},
    )
    assert_one_record_per_token(engine, name, list(reply.choices[0].token_ids))


def test_a_prompt_prefilled_in_chunks_gets_records_only_for_its_tokens(engine: VllmServer) -> None:
    """Issue 9 item 1: vLLM samples and drops a row for every partial prefill chunk."""
    name = tag()
    reply = complete(engine, README.read_text()[:1600], {"qr_tag": name}, max_tokens=4)
    assert len(reply.choices[0].prompt_token_ids) > 2 * MAX_BATCHED_TOKENS
    assert_one_record_per_token(engine, name, returned_ids(reply))


def test_a_stop_string_leaves_at_most_a_surplus_record_after_the_returned_tokens(
    engine: VllmServer,
) -> None:
    """Issue 9 item 2: vLLM may sample past a stop string; ``position`` tells those apart."""
    greedy = {"qr_top_k": 1}
    probe = complete(engine, PROMPT, {**greedy, "qr_tag": tag()}, max_tokens=16)
    text = probe.choices[0].text
    stop = text[len(text) // 2 :][:3]
    assert stop.strip(), f"no usable stop string in {text!r}"
    name = tag()
    reply = complete(engine, PROMPT, {**greedy, "qr_tag": name}, max_tokens=16, stop=[stop])
    assert reply.choices[0].finish_reason == "stop"
    ids = returned_ids(reply)
    records = engine.records_of(name, len(ids))
    kept = [r for r in records if r["position"] < len(ids)]
    assert [r["token_id"] for r in kept] == ids
    surplus = [r["position"] for r in records if r["position"] >= len(ids)]
    assert surplus == list(range(len(ids), len(ids) + len(surplus)))
    assert len(surplus) <= 2


def test_top_k_1_is_greedy(engine: VllmServer) -> None:
    name = tag()
    ours = complete(engine, PROMPT, {"qr_top_k": 1, "qr_tag": name}, max_tokens=12)
    vllms = complete(engine, PROMPT, {"qr_bypass": "true"}, max_tokens=12, temperature=0)
    assert returned_ids(ours) == returned_ids(vllms)
    records = engine.records_of(name, len(returned_ids(ours)))
    assert {r["token_rank"] for r in records} == {0}


def test_bypass_writes_no_record_and_a_tag_marks_every_record(engine: VllmServer) -> None:
    bypassed, tagged = tag(), tag()
    complete(engine, PROMPT, {"qr_bypass": "1", "qr_tag": bypassed}, max_tokens=8)
    reply = complete(engine, PROMPT, {"qr_tag": tagged}, max_tokens=8)
    assert len(engine.records_of(tagged, len(returned_ids(reply)))) == len(returned_ids(reply))
    assert engine.records_of(bypassed, 1, timeout_s=2) == []


@pytest.mark.parametrize(
    "xargs",
    [{"qr_top_p": 2}, {"qr_no_such_setting": 1}, {"qr_fallback_mode": "system"}],
    ids=["bad-value", "unknown-key", "server-setting"],
)
def test_bad_settings_are_http_400_and_the_server_serves_on(
    engine: VllmServer, xargs: dict[str, Any]
) -> None:
    with pytest.raises(openai.BadRequestError):
        complete(engine, PROMPT, xargs, max_tokens=4)
    assert engine.healthy()
    name = tag()
    reply = complete(engine, PROMPT, {"qr_tag": name}, max_tokens=4)
    assert_one_record_per_token(engine, name, returned_ids(reply))


SETTINGS: list[dict[str, Any]] = [
    {"qr_top_k": 1},
    {"qr_top_k": 5},
    {"qr_top_p": "0.5"},
    {"qr_fixed_temperature": "1.3"},
    {"qr_temperature_strategy": "edt"},
    {"qr_sample_count": 1024},
    {"qr_bypass": "true"},
    {},
]


def test_32_concurrent_requests_each_get_their_own_settings(engine: VllmServer) -> None:
    jobs = [(f"{tag()}-{i}", SETTINGS[i % len(SETTINGS)]) for i in range(32)]

    def run(job: tuple[str, dict[str, Any]]) -> list[int]:
        name, settings = job
        return returned_ids(complete(engine, PROMPT, {**settings, "qr_tag": name}, max_tokens=16))

    with ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(run, jobs))
    for (name, settings), ids in zip(jobs, replies, strict=True):
        if settings.get("qr_bypass"):
            assert engine.records_of(name, 1, timeout_s=1) == []
            continue
        records = engine.records_of(name, len(ids))
        assert [r["token_id"] for r in records] == ids
        if "qr_top_k" in settings:
            assert all(r["num_candidates"] <= settings["qr_top_k"] for r in records)
        if "qr_fixed_temperature" in settings:
            assert all(r["temperature"] == pytest.approx(1.3) for r in records)
        if "qr_temperature_strategy" in settings:
            assert all(0.1 <= r["temperature"] <= 2.0 for r in records)
        assert {r["sample_count"] for r in records} == {settings.get("qr_sample_count", 20480)}


def test_u_is_uniform_over_thousands_of_records(engine: VllmServer) -> None:
    names = [tag() for _ in range(32)]

    def run(name: str) -> int:
        reply = complete(
            engine, PROMPT, {"qr_tag": name}, max_tokens=110, extra_body={"ignore_eos": True}
        )
        return len(returned_ids(reply))

    with ThreadPoolExecutor(32) as pool:
        counts = list(pool.map(run, names))
    wanted = set(names)
    engine.records_of(names[-1], counts[-1])
    u = [r["u"] for r in engine.records() if r["tag"] in wanted]
    assert len(u) == sum(counts) >= 3000
    assert stats.kstest(u, "uniform").pvalue > 1e-3
