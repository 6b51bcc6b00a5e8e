"""A request's own sampling parameters, honoured inside vLLM's OpenAI server.

The server returns raw logits as logprobs (``--logprobs-mode raw_logits``), so each
test computes, in float64, the distribution vLLM's sampler draws the first token
from, and holds the plugin's samples to it (chi-square), and to ``qr_bypass``
samples drawn by vLLM itself from the same request.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from engine_support import MODEL_NAME, VllmServer
from scipy import stats

pytestmark = pytest.mark.timeout(300)

PROMPT = "The entropy source"
#: Samples of the first token per parameter set, for each sampler.
SAMPLES = 300
#: A fit is refused below this p-value: with about twenty fits per run, a false
#: alarm comes about once in 500 runs.
ALPHA = 1e-4
#: Tokens of expected probability this close to a cut (top-p, min-p) may be kept or
#: not: vLLM decides in float32, this reference in float64.
CUT_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def engine(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    server = VllmServer(
        tiny_model,
        tmp_path_factory.mktemp("params"),
        {},
        [
            "--logprobs-mode",
            "raw_logits",
            "--max-logprobs",
            "-1",
            # A random model would otherwise pad a JSON document with whitespace
            # until it runs out of tokens.
            "--structured-outputs-config",
            '{"backend": "xgrammar", "disable_any_whitespace": true}',
        ],
    )
    server.start()
    yield server
    server.stop()


def tag() -> str:
    return uuid.uuid4().hex[:12]


def complete(engine: VllmServer, xargs: dict[str, Any], **kwargs: Any) -> Any:
    extra = {"vllm_xargs": xargs, "return_token_ids": True, **kwargs.pop("extra_body", {})}
    return engine.client().completions.create(
        model=MODEL_NAME, prompt=kwargs.pop("prompt", PROMPT), extra_body=extra, **kwargs
    )


def raw_logits(engine: VllmServer, prompt: str = PROMPT) -> tuple[np.ndarray, list[int]]:
    """The first token's raw logits over the whole vocabulary, and the prompt's ids."""
    reply = complete(
        engine,
        {"qr_bypass": True},
        prompt=prompt,
        max_tokens=1,
        logprobs=-1,
        temperature=0,
        extra_body={"return_tokens_as_token_ids": True},
    )
    top = reply.choices[0].logprobs.top_logprobs[0]
    vocab = 1 + max(int(key.split(":")[1]) for key in top)
    logits = np.full(vocab, -np.inf)
    for key, value in top.items():
        logits[int(key.split(":")[1])] = value
    return logits, list(reply.choices[0].prompt_token_ids)


def expected_distribution(
    logits: np.ndarray, prompt_ids: list[int], params: dict[str, float], slack: float = 0.0
) -> np.ndarray:
    """vLLM's order in float64: repetition penalty over the prompt (the first token
    has no output, so frequency and presence change nothing), temperature, min-p,
    top-k, top-p. ``slack`` widens the cuts, to find the tokens that may appear."""
    x = logits.copy()
    repetition = params.get("repetition_penalty", 1.0)
    seen = np.zeros(len(x), dtype=bool)
    seen[prompt_ids] = True
    x[seen] = np.where(x[seen] > 0, x[seen] / repetition, x[seen] * repetition)
    weight = np.exp((x - x.max()) / params.get("temperature", 1.0))
    weight[weight < params.get("min_p", 0.0) - slack] = 0.0
    order = np.lexsort((np.arange(len(x)), -x))
    top_k = int(params.get("top_k", 0))
    if 0 < top_k < len(x):
        weight[x < x[order[top_k - 1]]] = 0.0
    top_p = params.get("top_p", 1.0)
    if top_p < 1:
        ordered = weight[order] / weight.sum()
        before = np.cumsum(ordered) - ordered
        weight[order[before >= top_p + slack]] = 0.0
    return weight / weight.sum()


def first_tokens(engine: VllmServer, xargs: dict[str, Any], params: dict[str, float]) -> list[int]:
    """SAMPLES first tokens, n sequences per request (each its own row in vLLM)."""
    tokens: list[int] = []
    while len(tokens) < SAMPLES:
        reply = complete(engine, xargs, max_tokens=1, n=100, **params)
        tokens += [choice.token_ids[0] for choice in reply.choices]
    return tokens[:SAMPLES]


def fit(tokens: list[int], expected: np.ndarray) -> float:
    """Chi-square p-value of the token counts against ``expected``; tokens expected
    fewer than five times are pooled into one bin."""
    counts = Counter(tokens)
    big = np.flatnonzero(expected * len(tokens) >= 5)
    observed = [counts[int(t)] for t in big]
    wanted = list(expected[big] * len(tokens))
    rest = len(tokens) - sum(observed)
    if len(tokens) - sum(wanted) > 1e-9:
        observed.append(rest)
        wanted.append(len(tokens) - sum(wanted))
    if len(observed) < 2:
        return 1.0
    return float(stats.chisquare(observed, wanted).pvalue)


def alike(ours: list[int], theirs: list[int]) -> float:
    """Chi-square p-value that two samples come from one distribution."""
    counts, other = Counter(ours), Counter(theirs)
    tokens = [t for t in set(ours) | set(theirs) if counts[t] + other[t] >= 10]
    rest = [len(ours) - sum(counts[t] for t in tokens), len(theirs) - sum(other[t] for t in tokens)]
    table = [[counts[t] for t in tokens], [other[t] for t in tokens]]
    if min(rest) > 0:
        table[0].append(rest[0])
        table[1].append(rest[1])
    if len(table[0]) < 2:
        return 1.0
    return float(stats.chi2_contingency(table).pvalue)


PARAMETER_SETS: list[dict[str, float]] = [
    {"temperature": 0.5},
    {"temperature": 1.8},
    {"temperature": 1.0, "extra_body": {"top_k": 5}},  # type: ignore[dict-item]
    {"temperature": 1.2, "top_p": 0.6},
    {"temperature": 1.5, "extra_body": {"min_p": 0.2}},  # type: ignore[dict-item]
    {"temperature": 1.0, "extra_body": {"repetition_penalty": 1.8}},  # type: ignore[dict-item]
    {"temperature": 0.9, "frequency_penalty": 1.5, "presence_penalty": 0.5},
]
FIT_P_VALUES: dict[str, tuple[float, float]] = {}


def flat(params: dict[str, Any]) -> dict[str, float]:
    return {
        **{k: v for k, v in params.items() if k != "extra_body"},
        **params.get("extra_body", {}),
    }


@pytest.mark.parametrize("params", PARAMETER_SETS, ids=lambda p: json.dumps(flat(p)))
def test_first_tokens_fit_the_distribution_vllm_draws_from(
    engine: VllmServer, params: dict[str, Any]
) -> None:
    logits, prompt_ids = raw_logits(engine)
    expected = expected_distribution(logits, prompt_ids, flat(params))
    allowed = expected_distribution(logits, prompt_ids, flat(params), CUT_TOLERANCE) > 0
    name = tag()
    ours = first_tokens(engine, {"qr_tag": name}, params)
    vllms = first_tokens(engine, {"qr_bypass": True}, params)
    assert all(allowed[t] for t in ours), "a token the request's settings did not allow"
    p_fit, p_alike = fit(ours, expected), alike(ours, vllms)
    FIT_P_VALUES[json.dumps(flat(params))] = (p_fit, p_alike)
    print(f"fit {flat(params)}: p = {p_fit:.3g} vs float64, {p_alike:.3g} vs qr_bypass")
    assert p_fit > ALPHA
    assert p_alike > ALPHA
    # Records of every sequence carry the parameters that applied.
    records = engine.records_of(name, SAMPLES)
    assert len(records) == SAMPLES
    assert len({r["request_id"] for r in records}) == SAMPLES  # n > 1: a request per row
    for key, value in flat(params).items():
        assert all(math.isclose(r[key], value) for r in records), key
    assert {r["policy"] for r in records} == {"request"}


def test_temperature_zero_is_vllms_own_greedy_with_no_entropy(engine: VllmServer) -> None:
    for prompt in ("The entropy source", "A quantum coin", "Once upon a time", "x y z"):
        name = tag()
        ours = complete(engine, {"qr_tag": name}, prompt=prompt, max_tokens=12, temperature=0)
        vllms = complete(engine, {"qr_bypass": True}, prompt=prompt, max_tokens=12, temperature=0)
        ids = list(ours.choices[0].token_ids)
        assert ids == list(vllms.choices[0].token_ids)
        records = engine.records_of(name, len(ids))
        assert [r["token_id"] for r in records] == ids
        assert all(r["greedy"] and r["u"] is None and r["sample_count"] == 0 for r in records)
        assert {r["token_rank"] for r in records} == {0}


def test_a_qr_key_wins_over_the_requests_own_parameter(engine: VllmServer) -> None:
    name = tag()
    reply = complete(
        engine, {"qr_tag": name, "qr_fixed_temperature": 1.4}, max_tokens=6, temperature=0
    )
    records = engine.records_of(name, len(reply.choices[0].token_ids))
    assert records
    assert all(r["temperature"] == pytest.approx(1.4) and not r["greedy"] for r in records)
    assert all(r["u"] is not None for r in records)


def test_logit_bias_and_stop_token_ids_apply_before_the_plugin_picks(engine: VllmServer) -> None:
    logits, _ = raw_logits(engine)
    unlikely = int(np.argsort(logits)[len(logits) // 3])
    name = tag()
    reply = complete(
        engine, {"qr_tag": name}, max_tokens=5, logit_bias={str(unlikely): 100}, temperature=1.0
    )
    ids = list(reply.choices[0].token_ids)
    assert ids == [unlikely] * 5
    assert [r["token_id"] for r in engine.records_of(name, 5)] == ids
    stopped = tag()
    reply = complete(
        engine,
        {"qr_tag": stopped},
        max_tokens=5,
        logit_bias={str(unlikely): 100},
        extra_body={"stop_token_ids": [unlikely]},
    )
    assert reply.choices[0].finish_reason == "stop"
    records = engine.records_of(stopped, 1)
    assert [r["token_id"] for r in records] == [unlikely]


def test_structured_output_choice_and_json_schema_hold(engine: VllmServer) -> None:
    choices = ["heads", "tails", "edge"]
    for _ in range(4):
        name = tag()
        reply = complete(
            engine,
            {"qr_tag": name},
            max_tokens=16,
            temperature=1.5,
            extra_body={"structured_outputs": {"choice": choices}},
        )
        assert reply.choices[0].text in choices
        assert len(engine.records_of(name, 1)) == len(reply.choices[0].token_ids)
    schema = {
        "type": "object",
        "properties": {"side": {"enum": choices}, "ok": {"type": "boolean"}},
        "required": ["side", "ok"],
        "additionalProperties": False,
    }
    for _ in range(3):
        reply = complete(
            engine,
            {},
            max_tokens=60,
            temperature=1.5,
            extra_body={"structured_outputs": {"json": schema}},
        )
        document = json.loads(reply.choices[0].text)
        assert document["side"] in choices
        assert isinstance(document["ok"], bool)


def test_a_thinking_budget_is_a_clear_400(engine: VllmServer) -> None:
    import openai

    with pytest.raises(openai.BadRequestError, match="thinking_token_budget"):
        complete(engine, {}, max_tokens=4, extra_body={"thinking_token_budget": 8})
    assert engine.healthy()
