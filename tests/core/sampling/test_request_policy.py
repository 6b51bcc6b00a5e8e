"""The request's own sampling parameters: which apply, penalties as vLLM defines them,
greedy without entropy, and records that carry the policy that chose each token."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from core_support import forced, make_sampler, reference_token

from qr_sampler.cli.main import main
from qr_sampler.errors import ConfigValidationError
from qr_sampler.records.verify import verify
from qr_sampler.sampling.ops.penalties import apply_penalties

VOCAB = 40
PENALTY_FIELDS = ("repetition_penalty", "frequency_penalty", "presence_penalty")
CHAT = {
    "fixed_temperature": 0.7,
    "top_p": 0.8,
    "top_k": 20,
    "min_p": 0.05,
    "repetition_penalty": 1.05,
}


def penalized_reference(
    logits: np.ndarray,
    prompt: list[int],
    output: list[int],
    repetition: float,
    frequency: float,
    presence: float,
) -> np.ndarray:
    """vLLM's definitions, one token at a time, in float64."""
    result = logits.astype(np.float64).copy()
    for token in range(len(result)):
        count = output.count(token)
        if token in prompt or count:
            result[token] = (
                result[token] / repetition if result[token] > 0 else result[token] * repetition
            )
        result[token] -= frequency * count + presence * (count > 0)
    return result


def test_the_penalty_op_matches_the_definitions_row_by_row():
    generator = np.random.default_rng(5)
    logits = generator.normal(0, 3, (4, VOCAB)).astype(np.float32)
    prompts = [[1, 2, 2, 3], [], [39], [0, 5]]
    outputs = [[4, 4, 4, 7], [1, 1], [], [5, 5, 6]]
    penalties = np.array([[1.3, 0.5, 0.25], [0.7, -1.0, 2.0], [2.0, 0.0, 0.0], [1.0, 0.1, -0.3]])
    padded_prompts = table_pad(prompts)
    padded_outputs = table_pad(outputs)
    # Rows 1, 3, 4 and 6 of a batch of 7: the others are not touched.
    batch = np.random.default_rng(6).normal(0, 3, (7, VOCAB)).astype(np.float32)
    rows = [1, 3, 4, 6]
    batch[rows] = logits
    values = torch.from_numpy(batch.copy())
    done = apply_penalties(
        values,
        torch.tensor(rows),
        torch.from_numpy(padded_prompts),
        torch.from_numpy(padded_outputs),
        torch.from_numpy(penalties),
    )
    for place, row in enumerate(rows):
        expected = penalized_reference(
            logits[place], prompts[place], outputs[place], *penalties[place]
        )
        np.testing.assert_allclose(values[row].numpy(), expected, rtol=1e-6, atol=1e-6)
    for row in (0, 2, 5):
        assert np.array_equal(values[row].numpy(), batch[row])
    # Undone where the row was not forced, kept where it was.
    done.undo(values, torch.tensor([True, False, True, False]))
    assert np.array_equal(values[3].numpy(), batch[3])
    assert np.array_equal(values[6].numpy(), batch[6])
    assert not np.array_equal(values[1].numpy(), batch[1])


def table_pad(lists: list[list[int]]) -> np.ndarray:
    width = max(1, *(len(item) for item in lists))
    padded = np.full((len(lists), width), VOCAB, dtype=np.int64)
    for row, item in enumerate(lists):
        padded[row, : len(item)] = item
    return padded


def test_token_history_pads_and_treats_in_flight_placeholders_as_padding(tmp_path):
    sampler, _ = make_sampler(tmp_path)
    options = sampler.resolve({}, {"repetition_penalty": 1.2})
    sampler.admit(3, options, [7, -1], [1, 2, 3])
    sampler.admit(5, options, [], [4])
    prompt, output = sampler.table.token_history(np.array([3, 5]), np.array([0, 1]), VOCAB)
    assert prompt.tolist() == [[1, 2, 3], [4, VOCAB, VOCAB]]
    assert output.tolist() == [[7, VOCAB], [VOCAB, VOCAB]]
    # Moving a request moves its prompt with it.
    sampler.table.move(3, 9)
    assert sampler.table.prompts[9].tolist() == [1, 2, 3]
    assert sampler.table.prompts[3] is None


def test_the_request_parameters_apply_by_default_and_qr_keys_win(tmp_path):
    sampler, _ = make_sampler(tmp_path, fixed_temperature=0.3, top_k=5)
    options = sampler.resolve({"qr_top_p": 0.5}, {"fixed_temperature": 1.1, "top_p": 0.9})
    assert (options.fixed_temperature, options.top_p, options.top_k) == (1.1, 0.5, 5)
    server, _ = make_sampler(tmp_path, sampling_policy="server", fixed_temperature=0.3)
    fixed = server.resolve({}, {"fixed_temperature": 1.1, "min_p": 0.2})
    assert (fixed.fixed_temperature, fixed.min_p) == (0.3, 0.0)


def test_a_request_value_out_of_bounds_is_a_clear_error(tmp_path):
    sampler, _ = make_sampler(tmp_path)
    with pytest.raises(ConfigValidationError, match="min_p"):
        sampler.resolve({}, {"min_p": 1.5})


def run_steps(sampler, logits, outputs, steps):
    """Sample ``steps`` steps of the same logits; outputs grow as vLLM's lists do."""
    chosen = []
    for _ in range(steps):
        tokens = forced(sampler.sample(logits.clone(), np.arange(len(outputs))))
        for output, token in zip(outputs, tokens, strict=True):
            output.append(token)
        chosen.append(tokens)
    return chosen


def test_each_token_is_the_one_u_picks_from_the_penalized_distribution(tmp_path):
    log = tmp_path / "r.jsonl"
    sampler, _ = make_sampler(tmp_path, log_path=str(log), fixed_temperature=0.9)
    prompts = [[3, 3, 9], [], [1]]
    standard = [
        {"repetition_penalty": 1.8},
        {"frequency_penalty": 0.9, "presence_penalty": 0.4},
        {"repetition_penalty": 0.6, "frequency_penalty": -0.5, "top_k": 6},
    ]
    outputs: list[list[int]] = [[], [], []]
    for slot in range(3):
        sampler.admit(slot, sampler.resolve({}, standard[slot]), outputs[slot], prompts[slot])
    logits = torch.randn(3, VOCAB, generator=torch.Generator().manual_seed(8)) * 1.5
    history = [[list(output) for output in outputs]]
    for _ in range(12):
        for output, token in zip(
            outputs, forced(sampler.sample(logits.clone(), np.arange(3))), strict=True
        ):
            output.append(token)
        history.append([list(output) for output in outputs])
    sampler.close()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 36
    for record in records:
        row, step = record["row"], record["step"] - 1
        seen = history[step][row]
        penalties = [record[name] for name in PENALTY_FIELDS]
        penalized = penalized_reference(logits[row].numpy(), prompts[row], seen, *penalties)
        expected = reference_token(
            penalized.tolist(), record["u"], 0.9, record["top_k"], record["top_p"]
        )
        assert record["token_id"] == expected == history[step + 1][row][-1], record


def test_rows_left_to_vllm_keep_their_logits_when_another_row_is_penalized(tmp_path):
    sampler, _ = make_sampler(tmp_path)
    logits = torch.randn(3, VOCAB)
    logits[2, 30] = float("nan")  # a row with no distribution is left to vLLM too
    original = logits.clone()
    penalized = sampler.resolve({}, {"presence_penalty": 1.0, "repetition_penalty": 1.5})
    sampler.admit(0, penalized, [1, 2], [0])
    sampler.admit(1, sampler.resolve({"qr_bypass": True}), [1, 2], [0])
    sampler.admit(2, penalized, [1, 2], [0])
    sampler.sample(logits, np.arange(3))
    assert torch.equal(logits[1], original[1])
    assert torch.equal(logits[2].nan_to_num(), original[2].nan_to_num())
    assert len(forced(logits[:1])) == 1


def test_an_engine_that_applies_penalties_itself_gets_none_applied_twice(tmp_path):
    sampler, _ = make_sampler(tmp_path, fixed_temperature=0.0)
    sampler.applies_penalties = False
    logits = torch.zeros(1, VOCAB)
    logits[0, 7] = 1.0
    sampler.admit(0, sampler.resolve({}, {"repetition_penalty": 100.0}), [7], [7])
    assert forced(sampler.sample(logits, np.arange(1))) == [7]


def test_greedy_requests_take_the_argmax_and_draw_no_entropy(tmp_path):
    log = tmp_path / "r.jsonl"
    sampler, source = make_sampler(tmp_path, log_path=str(log))
    logits = torch.randn(3, VOCAB)
    logits[0, 11] = 50.0
    logits[2, 12] = 50.0
    for slot, temperature in enumerate((0.0, 0.8, 5e-6)):
        sampler.admit(slot, sampler.resolve({}, {"fixed_temperature": temperature}))
    tokens = forced(sampler.sample(logits, np.arange(3)))
    sampler.close()
    assert tokens[0] == 11
    assert tokens[2] == 12
    assert sum(len(draw) for draw in source.draws) == 20480  # the one sampled row
    records = [json.loads(line) for line in log.read_text().splitlines()]
    greedy = [r for r in records if r["greedy"]]
    assert [r["row"] for r in greedy] == [0, 2]
    for record in greedy:
        assert record["u"] is None
        assert record["entropy_sha256"] is None
        assert (record["token_rank"], record["token_prob"], record["sample_count"]) == (0, 1.0, 0)
        assert record["entropy_source"] == "none"
    report = verify(str(log))
    assert (report.greedy, report.checked, report.mismatches) == (2, 1, [])


def test_a_step_of_greedy_rows_only_fetches_nothing(tmp_path):
    sampler, source = make_sampler(tmp_path)
    sampler.admit(0, sampler.resolve({}, {"fixed_temperature": 0.0}))
    logits = torch.randn(1, VOCAB)
    assert forced(sampler.sample(logits.clone(), np.arange(1))) == [int(logits.argmax())]
    assert source.draws == []


def policy_run(tmp_path):
    log = tmp_path / "r.jsonl"
    sampler, _ = make_sampler(tmp_path, log_path=str(log))
    outputs: list[list[int]] = [[], []]
    sampler.admit(0, sampler.resolve({}, CHAT), outputs[0], [1, 2])
    sampler.admit(1, sampler.resolve({"qr_min_p": 0.5}, {"fixed_temperature": 1.3}), outputs[1])
    generator = torch.Generator().manual_seed(3)
    for _ in range(4):
        logits = torch.randn(2, VOCAB, generator=generator) * 2
        for output, token in zip(
            outputs, forced(sampler.sample(logits, np.arange(2))), strict=True
        ):
            output.append(token)
    sampler.close()
    return log


def test_records_carry_the_policy_and_u_falls_in_the_tokens_interval(tmp_path):
    log = policy_run(tmp_path)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    first = [r for r in records if r["row"] == 0]
    assert all(r["policy"] == "request" for r in records)
    for name, value in CHAT.items():
        key = "temperature" if name == "fixed_temperature" else name
        assert all(math.isclose(r[key], value) for r in first), key
    assert all(r["min_p"] == 0.5 and math.isclose(r["temperature"], 1.3) for r in records[1::2])
    for record in records:
        assert record["num_candidates"] <= 20 or record["row"] == 1
        assert record["cdf_low"] <= record["u"] < record["cdf_low"] + record["token_prob"] + 1e-9
    assert verify(str(log)).mismatches == []


@pytest.mark.parametrize("field", ["cdf_low", "token_prob"])
def test_verify_names_a_token_whose_interval_does_not_hold_u(tmp_path, capsys, field):
    log = policy_run(tmp_path)
    lines = log.read_text().splitlines()
    record = json.loads(lines[2])
    record[field] = (record["u"] + 0.01) if field == "cdf_low" else record["u"] / 2
    if field == "token_prob":
        record["cdf_low"] = 0.0
    lines[2] = json.dumps(record)
    log.write_text("\n".join(lines) + "\n")
    (mismatch,) = verify(str(log)).mismatches
    assert (mismatch.line, mismatch.field) == (3, "u")
    assert "interval" in mismatch.expected
    assert main(["verify", str(log)]) == 1
    assert "line 3: u: expected a value in the token's interval" in capsys.readouterr().out


def test_verify_refuses_a_greedy_record_that_claims_bytes_or_a_lower_rank(tmp_path):
    log = tmp_path / "r.jsonl"
    sampler, _ = make_sampler(tmp_path, log_path=str(log))
    sampler.admit(0, sampler.resolve({}, {"fixed_temperature": 0.0}))
    sampler.sample(torch.randn(1, VOCAB), np.arange(1))
    sampler.close()
    record = json.loads(log.read_text())
    record.update(token_rank=2, u=0.3)
    log.write_text(json.dumps(record) + "\n")
    fields = {mismatch.field for mismatch in verify(str(log)).mismatches}
    assert fields == {"token_rank", "u"}
