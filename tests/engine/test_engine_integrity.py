"""Issue 23 in the running engine: a signed run that a reviewer checks with the public
key alone, and requests that keep their identity when vLLM preempts them.

Two servers, one after the other (module-scoped fixtures): a signed run with several
concurrent requests, then one whose KV cache is far too small for its concurrent long
requests, under random arm assignment, so vLLM preempts and later resumes them.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from engine_support import MODEL_NAME, VllmServer

from qr_sampler.cli.main import main

pytestmark = pytest.mark.timeout(600)

CONCURRENT = 6
#: Long enough that six requests outgrow the small KV cache below many times over.
LONG = 160


def generate(engine: VllmServer, tag: str, tokens: int, prompt: str) -> list[int]:
    reply: Any = engine.client().completions.create(
        model=MODEL_NAME,
        prompt=prompt,
        max_tokens=tokens,
        extra_body={"vllm_xargs": {"qr_tag": tag}, "return_token_ids": True, "ignore_eos": True},
    )
    return list(reply.choices[0].token_ids)


def concurrently(
    engine: VllmServer, tokens: int, prompt: str, tags: list[str] | None = None
) -> dict[str, list[int]]:
    if tags is None:
        run = uuid.uuid4().hex[:8]
        tags = [f"{run}-{i}" for i in range(CONCURRENT)]
    with ThreadPoolExecutor(CONCURRENT) as pool:
        replies = list(pool.map(lambda tag: generate(engine, tag, tokens, prompt), tags))
    return dict(zip(tags, replies, strict=True))


# A signed run ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def signed_engine(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[VllmServer, Path]]:
    run_dir = tmp_path_factory.mktemp("signed")
    assert main(["keys", "new", str(run_dir / "run")]) == 0
    settings = {
        "QR_SIGNING_KEY": str(run_dir / "run.key"),
        "QR_BYTES_PATH": str(run_dir / "bytes.bin"),
        # About 18 records a part: the run's 96 go on over several parts.
        "QR_LOG_ROTATE_MB": "0.02",
    }
    engine = VllmServer(tiny_model, run_dir, settings)
    try:
        engine.start()
        yield engine, run_dir
    finally:
        engine.stop()


def test_a_signed_rotated_run_verifies_with_the_public_key_alone(signed_engine, capsys):
    engine, run_dir = signed_engine
    replies = concurrently(engine, 16, "A run a reviewer can check:")
    for tag, tokens in replies.items():
        records = engine.records_of(tag, at_least=len(tokens))
        assert [r["token_id"] for r in records] == tokens
    parts = [str(path) for path in engine.record_parts()]
    archives = [str(run_dir / "bytes.bin"), *map(str, sorted(run_dir.glob("bytes.part*.bin")))]
    assert len(parts) == len(archives) > 2
    capsys.readouterr()
    code = main(["verify", *parts, "--bytes", *archives, "--public-key", str(run_dir / "run.pub")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(rf"chain: {CONCURRENT * 16} record\(s\) linked", out), out
    assert f"{len(parts) - 1} part(s) continuing a rotated run" in out
    assert "signature(s) checked" in out
    records = parts[0]
    manifest = json.loads(Path(records + ".manifest").read_text())
    assert manifest["engine"]["runner"] == "v1"
    assert manifest["engine"]["served_model_name"] == MODEL_NAME
    assert any(name.endswith(".safetensors") for name in manifest["engine"]["weights"])
    assert manifest["settings"]["QR_SIGNING_KEY"] == str(run_dir / "run.key")
    # Another key is refused.
    assert main(["keys", "new", str(run_dir / "other")]) == 0
    assert main(["verify", records, "--public-key", str(run_dir / "other.pub")]) == 1


# Preemption -----------------------------------------------------------------------


#: Room for about two of the six requests at full length: the rest are preempted and
#: resumed, over and over.
CRAMPED = ["--max-model-len", "256", "--block-size", "32", "--num-gpu-blocks-override", "12"]
PREEMPT_PROMPT = "Preempt me, then let me finish: " * 3


@pytest.fixture(scope="module")
def cramped_engine(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[VllmServer, Path]]:
    run_dir = tmp_path_factory.mktemp("cramped")
    settings = {
        "QR_ARMS": "a=system,b=prng,c=system,d=prng",
        "QR_ARM_ASSIGNMENT": "random",
        "QR_BYTES_PATH": str(run_dir / "bytes.bin"),
        "VLLM_LOG_STATS_INTERVAL": "1",
    }
    engine = VllmServer(tiny_model, run_dir, settings, CRAMPED)
    try:
        engine.start()
        yield engine, run_dir
    finally:
        engine.stop()


def preemptions(engine: VllmServer) -> float:
    with urllib.request.urlopen(engine.base_url + "/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found = re.findall(r"^vllm:num_preemptions(?:_total)?\{[^}]*\} ([0-9.e+]+)$", text, re.M)
    return sum(float(value) for value in found)


def preempted_since(engine: VllmServer, before: float, timeout_s: float = 15.0) -> bool:
    """Whether the preemption counter has risen past ``before``: it is published with
    the engine's stats, a moment after the requests that caused it have finished."""
    deadline = time.monotonic() + timeout_s
    while preemptions(engine) <= before:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


@pytest.fixture(scope="module")
def preempted_run(cramped_engine: tuple[VllmServer, Path]) -> dict[str, list[int]]:
    """Six concurrent requests, each with its own tag, that vLLM preempts and resumes."""
    engine, _ = cramped_engine
    replies = concurrently(engine, LONG, PREEMPT_PROMPT)
    for tag, tokens in replies.items():
        engine.records_of(tag, at_least=len(tokens))  # every record is written
    return replies


def test_preempted_requests_keep_one_id_one_arm_and_their_positions(
    cramped_engine, preempted_run, capsys
):
    engine, run_dir = cramped_engine
    replies = preempted_run
    assert preempted_since(engine, 0), "the KV cache was not small enough to preempt"
    for tag, tokens in replies.items():
        assert len(tokens) == LONG
        records = engine.records_of(tag, at_least=LONG)
        assert len({r["request_id"] for r in records}) == 1
        assert len({r["arm"] for r in records}) == 1
        assert [r["position"] for r in records] == list(range(LONG))
        assert [r["token_id"] for r in records] == tokens
    ids = {r["request_id"] for r in engine.records()}
    assert len(ids) == CONCURRENT
    capsys.readouterr()
    code = main(["verify", str(engine.records_path), "--bytes", str(run_dir / "bytes.bin")])
    assert code == 0, capsys.readouterr().out


def test_a_replay_by_records_gives_every_preempted_request_its_tokens_back(
    tiny_model, cramped_engine, preempted_run, tmp_path
):
    """The run's batches cannot come back (six requests, preempted at other moments):
    replay by records serves each token the bytes its record names, so every request,
    whichever arm it had, gets the same tokens."""
    engine, run_dir = cramped_engine
    original = engine.records()
    settings = {
        "QR_ENTROPY_SOURCE_TYPE": "replay",
        "QR_REPLAY_PATH": str(run_dir / "bytes.bin"),
        "QR_REPLAY_RECORDS": str(engine.records_path),
        "QR_FALLBACK_MODE": "error",
    }
    replay = VllmServer(tiny_model, tmp_path, settings, CRAMPED)
    try:
        replay.start()
        # Sent in the other order: admission, batches and preemptions all differ.
        tags = list(reversed(preempted_run))
        replayed = concurrently(replay, LONG, PREEMPT_PROMPT, tags)
        assert replayed == preempted_run
        records = {tag: replay.records_of(tag, at_least=LONG) for tag in tags}
    finally:
        replay.stop()
    arm_of = {r["request_id"]: r["arm"] for r in original}
    assert len(set(arm_of.values())) > 1, "the run used one arm only: nothing to show"
    for tag, tokens in records.items():
        ids = {r["request_id"] for r in tokens}
        # The replayed request took over its run's id: its records line up with the run's.
        assert ids == {r["request_id"] for r in original if r["tag"] == tag}
        assert [r["entropy_source"] for r in tokens] == ["replay"] * LONG
        assert not any(r["fallback"] for r in tokens)
    by_token = {(r["request_id"], r["position"]): r["u"] for r in original}
    assert {(r["request_id"], r["position"]): r["u"] for t in records.values() for r in t} == (
        by_token
    )


def test_the_n_children_of_one_request_each_keep_their_identity_through_preemption(
    cramped_engine,
):
    """The children of one ``n`` request, preempted and resumed: each still has one
    id, one arm and its own positions, and its records are its own tokens. (Through
    the OpenAI server each child's parameters reach the engine as a copy of their own;
    the one object that an in-process engine shares among them is tested on vLLM's
    own interfaces, in the contract tests.)"""
    engine, _ = cramped_engine
    before = preemptions(engine)
    tag = f"siblings-{uuid.uuid4().hex[:8]}"
    reply: Any = engine.client().completions.create(
        model=MODEL_NAME,
        prompt=PREEMPT_PROMPT,
        max_tokens=LONG,
        n=CONCURRENT,
        extra_body={"vllm_xargs": {"qr_tag": tag}, "return_token_ids": True, "ignore_eos": True},
    )
    assert preempted_since(engine, before), "the KV cache was not small enough to preempt"
    records = engine.records_of(tag, at_least=CONCURRENT * LONG)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_id.setdefault(record["request_id"], []).append(record)
    assert len(by_id) == CONCURRENT
    for own in by_id.values():
        assert len({r["arm"] for r in own}) == 1
        assert [r["position"] for r in own] == list(range(LONG))
    children = sorted(list(choice.token_ids) for choice in reply.choices)
    assert sorted([r["token_id"] for r in own] for own in by_id.values()) == children
