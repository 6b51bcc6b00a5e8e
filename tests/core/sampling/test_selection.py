"""The u -> token map: order, truncation, masks, greedy rows and forcing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from core_support import reference_token
from scipy import stats

from qr_sampler.sampling.ops.entropy import shannon_entropy
from qr_sampler.sampling.ops.forcing import force_tokens
from qr_sampler.sampling.ops.walk import Selection
from qr_sampler.sampling.selection import select_tokens

INF = float("inf")


def select(logits, u, temperature=1.0, top_k=0, top_p=1.0) -> Selection:
    logits = torch.as_tensor(logits, dtype=torch.float32)
    rows = logits.shape[0]
    temperatures = torch.as_tensor(temperature, dtype=torch.float32).expand(rows)
    return select_tokens(
        logits,
        torch.as_tensor(u, dtype=torch.float64).expand(rows),
        lambda _entropy: temperatures,
        torch.as_tensor(top_k).expand(rows),
        torch.as_tensor(top_p, dtype=torch.float32).expand(rows),
    )


def ranks(result: Selection) -> tuple[list[int], list[int]]:
    rank, candidates = result.ranks()
    return rank.tolist(), candidates.tolist()


def test_u_near_zero_picks_the_most_probable_token_and_near_one_the_least():
    logits = [[0.5, 3.0, -1.0, 2.0]]
    assert select(logits, 1e-9).token_id.item() == 1
    assert select(logits, 1 - 1e-9).token_id.item() == 2


def test_cdf_intervals_follow_descending_probability():
    logits = torch.log(torch.tensor([[0.1, 0.4, 0.2, 0.3]]))
    # Descending order 1 (0.4), 3 (0.3), 2 (0.2), 0 (0.1): intervals of u.
    expected = {0.05: 1, 0.39: 1, 0.41: 3, 0.69: 3, 0.71: 2, 0.89: 2, 0.91: 0}
    for u, token in expected.items():
        result = select(logits, u)
        assert result.token_id.item() == token, u
        assert ranks(result)[0] == [[1, 3, 2, 0].index(token)]


def test_ties_are_ordered_by_lower_token_id():
    logits = [[1.0, 1.0, 1.0, 1.0]]
    assert [select(logits, u).token_id.item() for u in (0.1, 0.3, 0.6, 0.9)] == [0, 1, 2, 3]


def test_masked_tokens_are_never_chosen():
    logits = [[-INF, 2.0, -INF, 1.0, -INF]]
    for u in np.linspace(1e-6, 1 - 1e-6, 200):
        assert select(logits, u).token_id.item() in (1, 3)
    assert ranks(select(logits, 0.5))[1] == [2]


def test_top_k_keeps_the_k_most_probable_tokens_and_renormalises():
    logits = [[4.0, 3.0, 2.0, 1.0, 0.0]]
    chosen = {select(logits, u, top_k=2).token_id.item() for u in np.linspace(0.001, 0.999, 99)}
    assert chosen == {0, 1}
    result = select(logits, 0.999, top_k=2)
    assert ranks(result)[1] == [2]
    assert result.prob.item() == pytest.approx(1 / (1 + math.e))


def test_top_k_keeps_every_token_tied_with_the_kth_as_vllm_does():
    logits = [[3.0, 1.0, 2.0, 2.0, 0.0]]
    chosen = {select(logits, u, top_k=2).token_id.item() for u in np.linspace(0.001, 0.999, 99)}
    assert chosen == {0, 2, 3}


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    # Prefix masses 0.5, 0.8, 0.95, 1. Each p lies well inside a gap, so no CPU's
    # rounding of exp or of float32 p can move the boundary.
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    for top_p, kept in ((0.4, 1), (0.6, 2), (0.9, 3), (0.97, 4)):
        assert ranks(select(logits, 0.99, top_p=top_p))[1] == [kept], top_p
    result = select(logits, 0.99, top_p=0.6)
    assert result.token_id.item() == 1
    assert result.prob.item() == pytest.approx(0.3 / 0.8)


def test_top_p_equal_to_a_prefix_mass_keeps_that_prefix_or_the_next():
    # At p equal to a prefix's mass the last bit of exp (which differs between CPUs
    # and math libraries) and of float32 p decide, in vLLM's sampler as here: either
    # answer is right, nothing else is.
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    for top_p, kept in ((0.5, (1, 2)), (0.8, (2, 3)), (0.95, (3, 4))):
        assert ranks(select(logits, 0.99, top_p=top_p))[1][0] in kept, top_p


def test_temperature_zero_is_greedy_whatever_u():
    logits = [[0.1, 0.2, 5.0, 0.3]]
    for u in (1e-9, 0.5, 1 - 1e-9):
        result = select(logits, u, temperature=0.0)
        assert result.token_id.item() == 2
        assert result.prob.item() == 1.0
        assert ranks(result) == ([0], [1])


def test_rows_without_a_distribution_are_flagged_invalid():
    logits = [[-INF, -INF, -INF], [0.0, float("nan"), 1.0], [0.0, INF, 1.0], [0.0, 1.0, 2.0]]
    assert select(logits, 0.5).valid.tolist() == [False, False, False, True]


def test_edge_u_values_stay_inside_the_candidates():
    logits = [[0.0, -INF, 1.0, -INF]]
    for u in (0.0, 1.0 - 1e-12, 1.0):
        assert select(logits, u).token_id.item() in (0, 2)


def test_agrees_with_a_float64_reference_on_random_cases():
    generator = np.random.default_rng(1234)
    for _ in range(300):
        vocab = int(generator.integers(2, 40))
        logits = generator.normal(0, 2, vocab)
        logits[generator.random(vocab) < 0.2] = -np.inf
        logits[int(generator.integers(vocab))] = generator.normal()
        u = float(generator.random())
        temperature = float(generator.choice([0.0, 0.3, 0.7, 1.0, 1.5]))
        top_k = int(generator.choice([0, 1, 3, 10]))
        top_p = float(generator.choice([1.0, 0.9, 0.5]))
        got = select([logits.tolist()], u, temperature, top_k, top_p).token_id.item()
        want = reference_token(logits.tolist(), u, temperature, top_k, top_p)
        assert got == want, (logits, u, temperature, top_k, top_p)


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p"), [(1.0, 0, 1.0), (0.7, 0, 1.0), (0.7, 8, 0.9)]
)
def test_token_frequencies_follow_the_softmax(temperature, top_k, top_p):
    """Chi-square of 200,000 draws (seeded u) against softmax(logits / T) truncated."""
    vocab, draws = 20, 200_000
    logits = torch.from_numpy(np.random.default_rng(7).normal(0, 1.5, vocab)).float()
    generator = torch.Generator().manual_seed(99)
    u = torch.rand(draws, generator=generator, dtype=torch.float64)
    result = select_tokens(
        logits.expand(draws, vocab).contiguous(),
        u,
        lambda _entropy: torch.full((draws,), temperature),
        torch.full((draws,), top_k),
        torch.full((draws,), top_p),
    )
    observed = np.bincount(result.token_id.numpy(), minlength=vocab)

    probs = torch.softmax(logits.double() / temperature, 0).numpy()
    order = np.argsort(-probs, kind="stable")
    keep = np.zeros(vocab, dtype=bool)
    keep[order[: top_k or vocab]] = True
    probs = np.where(keep, probs, 0) / probs[keep].sum()
    before = np.cumsum(probs[order]) - probs[order]
    keep[order[before >= top_p]] = False
    expected = np.where(keep, probs, 0) / probs[keep].sum() * draws

    assert observed[~keep].sum() == 0
    _, p_value = stats.chisquare(observed[keep], expected[keep])
    assert p_value > 1e-4


def test_shannon_entropy_ignores_masked_tokens():
    logits = torch.tensor([[0.0, 0.0, -INF, 0.0, 0.0], [5.0, -INF, -INF, -INF, -INF]])
    scratch = (torch.empty_like(logits), torch.empty_like(logits))
    entropy = shannon_entropy(logits, logits.amax(-1), *scratch)
    assert entropy.tolist() == pytest.approx([math.log(4), 0.0])


def test_shannon_entropy_is_within_a_micro_nat_of_float64_over_a_large_vocabulary():
    # Flat, spread and peaked rows of 151,936 logits, some with masked tokens: the
    # sums are taken in float32, and this bounds what that costs.
    generator = torch.Generator().manual_seed(3)
    vocab = 151_936
    scales = (1e-4, 1e-2, 0.3, 1.0, 3.0, 10.0, 30.0, 300.0)
    logits = torch.stack([torch.randn(vocab, generator=generator) * s for s in scales])
    logits[2, ::3] = -INF
    logits[5, : vocab - 10] = -INF
    scratch = (torch.empty_like(logits), torch.empty_like(logits))
    entropy = shannon_entropy(logits, logits.amax(-1), *scratch).double().numpy()
    wide = logits.double().numpy()
    p = np.exp(wide - wide.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    reference = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)
    assert np.abs(entropy - reference).max() <= 1e-6, entropy - reference


def test_force_overwrites_the_chosen_logit_even_when_it_was_masked():
    logits = torch.tensor([[1.0, -INF, 2.0], [3.0, 4.0, 5.0]])
    force_tokens(logits, torch.tensor([True, False]), torch.tensor([1, 0]))
    assert logits[0].tolist() == [-INF, 0.0, -INF]
    assert logits[1].tolist() == [3.0, 4.0, 5.0]


@pytest.mark.parametrize("u", [1 - 3e-8, 1 - 1e-8, 1 - 1e-10, 1 - 1e-16, 1.0])
def test_u_next_to_one_stays_inside_the_top_p_nucleus(u):
    logits = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1]]))
    result = select(logits, u, top_p=0.7)
    assert result.token_id.item() == 1
    assert result.prob.item() == pytest.approx(0.3 / 0.7, rel=1e-6)


@pytest.mark.parametrize("temperature", [1e-46, 1e-300, 5e-324])
def test_a_temperature_that_is_zero_in_float32_is_still_a_temperature(temperature):
    # Token 0 is masked; the row's top token must win, with a finite probability.
    logits = [[-INF, 1.0, 3.0, 2.0]]
    result = select_tokens(
        torch.tensor(logits),
        torch.tensor([0.9], dtype=torch.float64),
        lambda _entropy: torch.tensor([temperature], dtype=torch.float64),
        torch.tensor([0]),
        torch.tensor([1.0], dtype=torch.float64),
    )
    assert result.valid.item()
    assert result.token_id.item() == 2
    assert result.prob.item() == 1.0


def test_a_huge_temperature_is_uniform_with_a_finite_probability():
    logits = torch.tensor([[0.0, 5.0, -INF, 9.0]])
    result = select_tokens(
        logits,
        torch.tensor([0.5], dtype=torch.float64),
        lambda _entropy: torch.tensor([3.5e38], dtype=torch.float64),
        torch.tensor([0]),
        torch.tensor([1.0], dtype=torch.float64),
    )
    assert result.token_id.item() == 1
    assert result.prob.item() == pytest.approx(1 / 3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_logits_of_any_float_dtype_are_selected_and_forced_in_their_dtype(dtype):
    vocab = 1000
    logits = torch.zeros(3, vocab, dtype=dtype)
    logits[1] = torch.linspace(-4, 4, vocab, dtype=dtype)
    logits[2, :500] = float("-inf")
    u = torch.tensor([0.9, 0.3, 0.5], dtype=torch.float64)
    result = select_tokens(
        logits,
        u,
        lambda _entropy: torch.ones(3, dtype=torch.float64),
        torch.zeros(3, dtype=torch.int64),
        torch.ones(3, dtype=torch.float64),
    )
    # All equal: the token at u * vocab in id order; masked half: u over the rest.
    assert result.token_id[0].item() == 900
    assert result.token_id[2].item() == 750
    expected = select(logits[1:2].float().tolist(), 0.3).token_id.item()
    assert result.token_id[1].item() == expected
    force_tokens(logits, torch.tensor([True, True, True]), result.token_id)
    assert logits.dtype == dtype
    assert (logits == 0).sum(dim=-1).tolist() == [1, 1, 1]
    assert logits[torch.arange(3), result.token_id].tolist() == [0.0, 0.0, 0.0]


def test_one_large_top_k_costs_the_other_rows_nothing(monkeypatch):
    """top_k = 150,000 in one row is a count, not a ``topk(150000)`` over the batch."""
    vocab = 151_936

    def no_topk(*args, **kwargs):
        raise AssertionError("top-k must not sort the batch")

    logits = torch.randn(2, vocab, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(torch.Tensor, "topk", no_topk)
    result = select_tokens(
        logits,
        torch.tensor([1 - 1e-10, 0.5], dtype=torch.float64),
        lambda _entropy: torch.ones(2, dtype=torch.float64),
        torch.tensor([150_000, 0]),
        torch.ones(2, dtype=torch.float64),
    )
    kth = logits[0].sort(descending=True).values[150_000 - 1]
    assert logits[0, result.token_id[0]] >= kth
    assert ranks(result)[1] == [150_000, vocab]
