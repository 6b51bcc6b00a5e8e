"""A whole engine step: one draw, u per row, forced tokens, records that trace back."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter

import numpy as np
import pytest
import torch
from core_support import forced, make_sampler, reference_token
from torch.overrides import TorchFunctionMode

from qr_sampler import EntropyUnavailableError
from qr_sampler.entropy.amplification import ZScoreMeanAmplifier
from qr_sampler.sampling import selection
from qr_sampler.sampling.sampler import QRSampler

INF = float("inf")
RECORD_KEYS = {
    "u", "z_score", "sample_mean", "sample_count", "token_id", "token_rank", "token_prob",
    "num_candidates", "temperature", "shannon_entropy", "entropy_source", "fallback",
    "fetch_ms", "total_ms", "config_hash", "tag",
}  # fmt: skip


def test_one_draw_covers_every_active_row_and_skips_bypassed_ones(tmp_path):
    sampler, source = make_sampler(tmp_path)
    sampler.table.put(0, sampler.resolve({"qr_sample_count": 100}))
    sampler.table.put(1, sampler.resolve({"qr_bypass": "true"}))
    sampler.table.put(2, sampler.resolve({"qr_sample_count": "37"}))
    logits = torch.randn(4, 50)  # slot 3 holds no request
    original = logits.clone()
    sampler.sample(logits, np.arange(4))
    assert [len(d) for d in source.draws] == [137]
    forced(logits[[0, 2]])
    assert torch.equal(logits[1], original[1])
    assert torch.equal(logits[3], original[3])


def test_a_step_without_qr_rows_draws_nothing(tmp_path):
    sampler, source = make_sampler(tmp_path)
    sampler.table.put(0, sampler.resolve({"qr_bypass": 1}))
    logits = torch.randn(1, 10)
    assert torch.equal(sampler.sample(logits.clone(), np.arange(1)), logits)
    assert source.draws == []


def test_every_token_is_traceable_to_its_bytes(tmp_path):
    log = tmp_path / "tokens.jsonl"
    sampler, source = make_sampler(tmp_path, log_path=str(log))
    options = [
        sampler.resolve({"qr_sample_count": 64, "qr_tag": "a"}),
        sampler.resolve({"qr_top_k": "3", "qr_fixed_temperature": "1.3"}),
        sampler.resolve({"qr_temperature_strategy": "edt", "qr_top_p": 0.8}),
    ]
    for slot, option in zip((4, 0, 9), options, strict=True):
        sampler.table.put(slot, option)
    slots = np.array([4, 0, 9])
    logits = torch.randn(3, 200) * 3
    original = logits.clone()
    tokens = forced(sampler.sample(logits, slots))
    sampler.sink.flush()

    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["row"] for r in records] == [0, 1, 2]
    data, offset = source.draws[0], 0
    for row, (record, option) in enumerate(zip(records, options, strict=True)):
        assert record.keys() >= RECORD_KEYS
        assert record["token_id"] == tokens[row]
        chunk = data[offset : offset + option.sample_count]
        offset += option.sample_count
        replay = ZScoreMeanAmplifier().amplify(
            np.frombuffer(chunk, dtype=np.uint8),
            np.array([0]),
            np.array([len(chunk)]),
            {
                "population_mean": np.array([option.population_mean]),
                "population_std": np.array([option.population_std]),
                "uniform_clamp_epsilon": np.array([option.uniform_clamp_epsilon]),
            },
        )
        assert record["u"] == replay.u[0]
        assert record["config_hash"] == option.config_hash
        assert record["tag"] == option.tag
        assert record["entropy_source"] == "recording"
        assert record["fallback"] is False
        want = reference_token(
            original[row].tolist(), record["u"], record["temperature"], option.top_k, option.top_p
        )
        assert record["token_id"] == want
    assert offset == len(data)


def test_edt_rows_get_the_entropy_dependent_temperature(tmp_path):
    sampler, _ = make_sampler(tmp_path, log_path=str(tmp_path / "t.jsonl"))
    sampler.table.put(0, sampler.resolve({"qr_temperature_strategy": "edt"}))
    logits = torch.randn(1, 1000)
    entropy = -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum().item()
    sampler.sample(logits, np.arange(1))
    sampler.sink.flush()
    record = json.loads((tmp_path / "t.jsonl").read_text())
    expected = min(max(0.8 * math.sqrt(entropy / math.log(1000)), 0.1), 2.0)
    assert record["shannon_entropy"] == pytest.approx(entropy, rel=1e-4)
    assert record["temperature"] == pytest.approx(expected, rel=1e-4)


def test_only_the_step_in_flight_is_not_yet_in_the_records_file(tmp_path):
    log = tmp_path / "tokens.jsonl"
    sampler, _ = make_sampler(tmp_path, log_path=str(log))
    sampler.table.put(0, sampler.defaults)
    sampler.table.put(1, sampler.defaults)
    for step in range(1, 4):
        sampler.sample(torch.randn(2, 30), np.arange(2))
        # Written on the records thread; the previous step is in the file already.
        lines = log.read_text().splitlines()  # the file is still open
        assert len(lines) in (2 * (step - 1), 2 * step)
        sampler.sink.flush()
        lines = log.read_text().splitlines()
        assert len(lines) == 2 * step
        assert json.loads(lines[-1])["step"] == step


def test_fallback_tokens_are_flagged(tmp_path):
    log = tmp_path / "tokens.jsonl"
    sampler, _ = make_sampler(tmp_path, fail=True, log_path=str(log))
    sampler.table.put(0, sampler.defaults)
    forced(sampler.sample(torch.randn(1, 30), np.arange(1)))
    sampler.sink.flush()
    record = json.loads(log.read_text())
    assert record["fallback"] is True
    assert record["entropy_source"] == "system"


def test_strict_mode_fails_the_step_instead_of_using_other_bytes(tmp_path):
    sampler, _ = make_sampler(tmp_path, fallback=False, fail=True)
    sampler.table.put(0, sampler.defaults)
    logits = torch.randn(1, 30)
    original = logits.clone()
    with pytest.raises(EntropyUnavailableError):
        sampler.sample(logits, np.arange(1))
    assert torch.equal(logits, original)


def test_strict_mode_with_an_end_token_ends_the_rows_instead_of_raising(tmp_path, caplog):
    sampler, _ = make_sampler(tmp_path, fallback=False, fail=True, log_path=str(tmp_path / "r"))
    sampler.end_token_id = 2
    sampler.table.put(0, sampler.resolve({"qr_tag": "cut"}))
    sampler.table.put(1, sampler.resolve({"qr_bypass": "true"}))
    logits = torch.randn(2, 30)
    logits[0, 7] = float("nan")  # an ended row is forced whatever it holds
    bypassed = logits[1].clone()
    with caplog.at_level(logging.ERROR, logger="qr_sampler.sampling.sampler"):
        sampler.sample(logits, np.arange(2))
    assert forced(logits[:1]) == [2]
    assert torch.equal(logits[1], bypassed)
    assert "strict mode: ended 1 request(s)" in caplog.text
    sampler.sink.flush()
    (line,) = (tmp_path / "r").read_text().splitlines()
    ended = json.loads(line)
    assert ended["token_id"] == 2
    assert ended["tag"] == "cut"
    assert ended["u"] is None
    assert "switched off" in ended["end_reason"]
    assert ended["fallback"] is False


def test_rows_with_no_distribution_are_left_to_vllm(tmp_path, caplog):
    sampler, _ = make_sampler(tmp_path)
    sampler.table.put(0, sampler.defaults)
    sampler.table.put(1, sampler.defaults)
    logits = torch.randn(2, 30)
    logits[0] = -INF
    original = logits.clone()
    with caplog.at_level(logging.WARNING):
        sampler.sample(logits, np.arange(2))
    assert torch.equal(logits[0], original[0])
    forced(logits[1:])
    assert "left 1 row(s) to vLLM" in caplog.text


def test_diagnostic_records_are_kept_in_bounded_memory(tmp_path):
    sampler, _ = make_sampler(tmp_path)
    sampler.sink._recent = type(sampler.sink._recent)(maxlen=5)
    sampler.table.put(0, sampler.resolve({"qr_diagnostic_mode": "1", "qr_tag": "d"}))
    sampler.table.put(1, sampler.defaults)
    for _ in range(4):
        sampler.sample(torch.randn(2, 30), np.arange(2))
    recent = sampler.sink.recent()
    assert len(recent) == 4
    assert {r.tag for r in recent} == {"d"}
    for _ in range(4):
        sampler.sample(torch.randn(2, 30), np.arange(2))
    assert [r.step for r in sampler.sink.recent()] == [4, 5, 6, 7, 8]


def test_full_log_level_logs_each_token_and_summary_logs_per_interval(tmp_path, caplog):
    sampler, _ = make_sampler(tmp_path)
    sampler.summary.interval_s = 0.0
    sampler.table.put(0, sampler.resolve({"qr_log_level": "full"}))
    with caplog.at_level(logging.INFO, logger="qr_sampler"):
        sampler.sample(torch.randn(1, 30), np.arange(1))
        sampler.sink.flush()
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("qr-sampler token {") for m in messages)
    assert any("1 tokens in 1 steps" in m for m in messages)


#: Every way a tensor's values reach the host (each waits for the device there).
HOST_READS = frozenset(
    {"numpy", "tolist", "item", "cpu", "__array__", "__reduce_ex__"}
    | {"__bool__", "__int__", "__float__", "__index__"}
)
#: Torch calls (attribute reads aside) of one step with the defaults (fixed
#: temperature, no top-k or top-p, no records) on the sorted walk, the one every
#: accelerator runs; docs/performance.md states this number (150 before the fast path).
DEFAULT_STEP_CALLS = 55
#: A typical chat client's policy: penalties and min-p as well as top-k and top-p.
CHAT_POLICY = {
    "top_k": 20,
    "top_p": 0.8,
    "min_p": 0.05,
    "repetition_penalty": 1.05,
    "frequency_penalty": 0.3,
    "presence_penalty": 0.2,
}
STEP_SETTINGS = [{}, {"top_k": 50, "top_p": 0.9}, {"temperature_strategy": "edt"}, CHAT_POLICY]
STEP_SETTING_IDS = ["defaults", "top-k top-p", "edt", "chat client"]


class StepCalls(TorchFunctionMode):
    """Counts the torch calls made on this thread and the host reads among them;
    fails on any host read of a vocabulary-sized tensor."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.calls: Counter[str] = Counter()
        self.reads: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if name != "__get__":  # attribute reads (shape, dtype) launch nothing
            self.calls[name] += 1
        if name in HOST_READS and args and isinstance(args[0], torch.Tensor):
            self.reads[name] += 1
            if args[0].numel() >= self.vocab:
                raise AssertionError(f"host copy of a vocabulary-sized tensor via {name}")
        return func(*args, **(kwargs or {}))


def count_step(sampler: QRSampler, rows: int, vocab: int) -> StepCalls:
    """The torch calls of one step over ``rows`` default rows (after a first step,
    which also reads the count of unsampled rows)."""
    for slot in range(rows):
        sampler.table.put(slot, sampler.defaults)
    sampler.sample(torch.randn(rows, vocab), np.arange(rows))
    logits = torch.randn(rows, vocab)
    with StepCalls(vocab) as step:
        sampler.sample(logits, np.arange(rows))
    sampler.sink.flush()  # records are built on their own thread
    return step


@pytest.mark.parametrize("walk_sorts", [True, False], ids=["sorted walk", "histogram walk"])
@pytest.mark.parametrize("settings", STEP_SETTINGS, ids=STEP_SETTING_IDS)
def test_the_hot_path_copies_no_logits_to_the_host_and_does_not_loop_over_rows(
    tmp_path, monkeypatch, settings, walk_sorts
):
    monkeypatch.setattr(selection, "SORT_ELEMENTS", 1 << 40 if walk_sorts else 0)
    one, many = (
        count_step(
            make_sampler(tmp_path, log_path=str(tmp_path / f"{rows}.jsonl"), **settings)[0],
            rows,
            4096,
        )
        # Not 1 row: the records' rank reuses the tokens tied at the top-k threshold
        # when every row chose that token, which one row does about once in fifty
        # steps and eight rows never (a shortcut, not a loop over rows).
        for rows in (8, 64)
    )
    # The same tensor operations whatever the batch size: no per-row Python loop.
    assert one.calls == many.calls


@pytest.mark.parametrize("log", [False, True], ids=["no records", "records"])
@pytest.mark.parametrize("rows", [1, 64])
@pytest.mark.parametrize("settings", STEP_SETTINGS, ids=STEP_SETTING_IDS)
def test_a_step_on_the_sorted_walk_never_waits_for_the_device(
    tmp_path, monkeypatch, settings, rows, log
):
    monkeypatch.setattr(selection, "SORT_ELEMENTS", 1 << 40)
    log_path = str(tmp_path / "r.jsonl") if log else ""
    sampler, _ = make_sampler(tmp_path, log_path=log_path, **settings)
    step = count_step(sampler, rows, 512)
    # Records copy one small tensor, read on the records thread, not here.
    assert step.reads == Counter()
    if not log and not settings:
        assert sum(step.calls.values()) <= DEFAULT_STEP_CALLS, step.calls
    if log:
        records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records] == [1] * rows + [2] * rows
