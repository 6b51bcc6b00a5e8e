"""The selection against a float64 reference: same token, same probability, never a
token outside the distribution. The tolerance is the one the README promises."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from qr_sampler.sampling import selection
from qr_sampler.sampling.ops import crossing
from qr_sampler.sampling.ops.walk import TOP_P_SLACK
from qr_sampler.sampling.selection import select_tokens
from qr_sampler.settings.config import GREEDY_BELOW

#: u this close to a boundary of the reference CDF may fall on either side.
BOUNDARY = 1e-6
#: Relative tolerance of the recorded token probability.
PROB_TOLERANCE = 1e-6


@dataclass
class Reference:
    """The documented algorithm on one row, in float64, with a full sort."""

    order: np.ndarray
    #: Probability of each token (in token-id order) after top-k and top-p.
    prob: np.ndarray
    #: The CDF at the end of each kept token, in descending order.
    boundaries: np.ndarray
    greedy: bool
    #: Whether top-p's cut sits so close to p that either side is right.
    cut_ambiguous: bool = False
    nucleus_end: int | None = None
    kept: int = field(default=0)

    def token(self, u: float) -> int:
        if self.greedy:
            return int(self.order[0])
        index = int(np.searchsorted(self.boundaries, u, side="right"))
        return int(self.order[min(index, len(self.boundaries) - 1)])

    def distance(self, u: float) -> float:
        return float(np.abs(self.boundaries[:-1] - u).min()) if len(self.boundaries) > 1 else 1.0


def reference(
    x: np.ndarray, temperature: float, top_k: int, top_p: float, min_p: float = 0.0
) -> Reference:
    vocab = x.size
    order = np.lexsort((np.arange(vocab), -x))
    ordered = x[order]
    prob = np.zeros(vocab)
    if temperature < GREEDY_BELOW:
        prob[order[0]] = 1.0
        return Reference(order, prob, np.ones(1), greedy=True)
    weight = np.exp((ordered - ordered[0]) / temperature)
    # vLLM's min-p: keep p >= min_p * p_max, that is weight >= min_p.
    weight[weight < min_p] = 0.0
    if 0 < top_k < vocab:
        weight[ordered < ordered[top_k - 1]] = 0.0
    cumulative = np.cumsum(weight)
    total = cumulative[-1]
    end = int(np.flatnonzero(weight > 0)[-1])
    ambiguous, nucleus_end = False, None
    if top_p < 1:
        reach = max(top_p - TOP_P_SLACK, 0.0) * total
        end = int(np.searchsorted(cumulative, reach, side="left"))
        ambiguous = bool(np.abs(cumulative - reach).min() < 1e-12 * total)
        nucleus_end = int(order[end])
    weight[end + 1 :] = 0.0
    mass = cumulative[end]
    prob[order] = weight / mass
    return Reference(
        order, prob, cumulative[: end + 1] / mass, False, ambiguous, nucleus_end, end + 1
    )


@dataclass
class Tally:
    rows: int = 0
    compared: int = 0
    #: The largest distance from a reference boundary of any mismatched u.
    worst_mismatch: float = 0.0


def check(
    logits: torch.Tensor,
    u: np.ndarray,
    temperature: np.ndarray,
    top_k: np.ndarray,
    top_p: np.ndarray,
    tally: Tally,
    invalid: frozenset[int] = frozenset(),
    min_p: np.ndarray | None = None,
) -> None:
    """Run one batch through ``select_tokens`` and hold every row to the reference;
    the ``invalid`` rows (no distribution to draw from) only have to be flagged."""
    min_p = min_p if min_p is not None else np.zeros(len(u))
    result = select_tokens(
        logits,
        torch.from_numpy(u),
        lambda _entropy: torch.from_numpy(temperature),
        torch.from_numpy(top_k),
        torch.from_numpy(top_p),
        torch.from_numpy(min_p),
    )
    rows = range(logits.shape[0])
    assert result.valid.tolist() == [row not in invalid for row in rows]
    rank = result.ranks()[0].tolist()
    values = logits.double().numpy()
    for row in (row for row in rows if row not in invalid):
        ref = reference(values[row], temperature[row], int(top_k[row]), top_p[row], min_p[row])
        token = int(result.token_id[row])
        context = (row, u[row], temperature[row], top_k[row], top_p[row], min_p[row], logits.dtype)
        assert ref.prob[token] > 0, context
        prob = float(result.prob[row])
        assert abs(prob - ref.prob[token]) <= PROB_TOLERANCE * ref.prob[token], context
        if ref.nucleus_end is not None and not ref.cut_ambiguous:
            assert int(result.nucleus_end[row]) == ref.nucleus_end, context
        tally.rows += 1
        distance = ref.distance(u[row])
        assert rank[row] == (0 if ref.greedy else int(np.flatnonzero(ref.order == token)[0]))
        if token != ref.token(u[row]):
            tally.worst_mismatch = max(tally.worst_mismatch, distance)
            assert distance <= BOUNDARY, context
        elif distance > BOUNDARY:
            tally.compared += 1


def random_rows(
    generator: np.random.Generator, rows: int, vocab: int, huge: float = 3e5
) -> np.ndarray:
    """Logits of many shapes: spread, tied, flat, plateaus, masked, huge."""
    scale = np.exp(generator.uniform(np.log(1e-4), np.log(30.0), (rows, 1)))
    logits = generator.normal(0.0, 1.0, (rows, vocab)) * scale
    kind = generator.integers(0, 7, rows)
    logits[kind == 1] = np.round(logits[kind == 1])  # many ties
    logits[kind == 2] = 0.0  # all equal
    plateau = generator.random((rows, vocab)) < 0.9
    logits[(kind == 3)[:, None] & plateau] = -1.25  # one value holding most tokens
    logits[kind == 4] += generator.choice([-1e4, 1e4, huge])  # huge magnitudes
    logits[kind == 5] = np.round(logits[kind == 5] * 1e3) / 1e3  # near-flat with ties
    masked = generator.random((rows, vocab)) < generator.uniform(0.0, 1.0, (rows, 1)) ** 3
    logits[masked] = -np.inf
    # Rows that keep only one or two candidates.
    few = np.flatnonzero(generator.random(rows) < 0.1)
    logits[few] = -np.inf
    for row in few:
        keep = generator.choice(vocab, min(vocab, int(generator.integers(1, 3))), replace=False)
        logits[row, keep] = generator.normal(0, 3, keep.size)
    # Never an all -inf row: that row is invalid, tested elsewhere.
    logits[np.arange(rows), generator.integers(0, vocab, rows)] = generator.normal(0, 1, rows)
    return logits


def random_options(
    generator: np.random.Generator, rows: int, vocab: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    u = generator.random(rows)
    edges = generator.random(rows)
    u[edges < 0.05] = 1e-10
    u[edges > 0.95] = 1 - 1e-10
    temperature = generator.choice([0.0, 1e-46, 2e-5, 0.05, 0.3, 0.7, 1.0, 1.7, 40.0, 1e39], rows)
    top_k = generator.choice([0, 0, 1, 2, 5, 50, vocab - 1, vocab, vocab + 3], rows)
    top_p = generator.choice([1.0, 1.0, 0.9, 0.5, 0.1, 1e-12], rows)
    return u, temperature, top_k.astype(np.int64), top_p


@pytest.fixture(params=["sort walk", "histogram, bin sorted", "histogram, bin refined"])
def path(request, monkeypatch):
    """Every case through both walks, and both ways the histogram walk orders its
    crossing bin."""
    if request.param == "sort walk":
        monkeypatch.setattr(selection, "SORT_ELEMENTS", 1 << 40)
    else:
        monkeypatch.setattr(selection, "SORT_ELEMENTS", 0)
    if request.param.endswith("refined"):
        monkeypatch.setattr(crossing, "SORT_LIMIT", 4)
    return request.param


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_random_and_adversarial_rows_match_the_float64_reference(dtype, path):
    generator = np.random.default_rng(20261201 + len(str(dtype)) + len(path))
    tally = Tally()
    for vocab, rows in ((2, 64), (3, 64), (7, 64), (50, 64), (1000, 64), (32_000, 24)):
        # float16 tops out at 65,504.
        huge = 3e4 if dtype == torch.float16 else 3e5
        logits = torch.from_numpy(random_rows(generator, rows, vocab, huge)).to(dtype)
        u, temperature, top_k, top_p = random_options(generator, rows, vocab)
        min_p = generator.choice([0.0, 0.0, 1e-3, 0.1, 0.5, 1.0], rows)
        check(logits, u, temperature, top_k, top_p, tally, min_p=min_p)
    assert tally.rows == 64 * 5 + 24
    assert tally.compared > tally.rows * 0.8


def test_rows_without_a_distribution_are_flagged_and_leave_the_others_exact(path):
    # NaN or +inf anywhere, or nothing above -inf: such rows cannot be sampled, and
    # (on the histogram walk) their tokens are binned without checking each for NaN.
    generator = np.random.default_rng(31)
    tally = Tally()
    for vocab in (1000, 5000):
        logits = torch.from_numpy(random_rows(generator, 8, vocab)).float()
        logits[1, 17] = float("nan")
        logits[3] = float("-inf")
        logits[5, vocab - 1] = float("inf")
        logits[6] = float("nan")
        u, temperature, top_k, top_p = random_options(generator, 8, vocab)
        check(logits, u, temperature, top_k, top_p, tally, invalid=frozenset({1, 3, 5, 6}))
    assert tally.rows == 8


def test_u_just_outside_every_reference_boundary_picks_the_reference_token(path):
    generator = np.random.default_rng(7)
    tally = Tally()
    for vocab in (5, 300, 40_000):
        logits = torch.from_numpy(random_rows(generator, 32, vocab)).float()
        _, temperature, top_k, top_p = random_options(generator, 32, vocab)
        temperature = np.where(temperature < GREEDY_BELOW, 1.0, temperature)
        values = logits.double().numpy()
        for side in (-1.0, 1.0, 0.0):
            u = np.empty(32)
            for row in range(32):
                ref = reference(values[row], temperature[row], int(top_k[row]), top_p[row])
                boundary = generator.choice(ref.boundaries[:-1]) if ref.kept > 1 else 0.5
                u[row] = np.clip(boundary + side * BOUNDARY * 1.01, 1e-10, 1 - 1e-10)
            check(logits, u, temperature, top_k, top_p, tally)
    assert tally.compared >= 32 * 3 * 2 * 0.8


def test_top_p_at_an_exact_prefix_mass_keeps_exactly_that_prefix(path):
    tally = Tally()
    for n in (3, 7, 10, 100, 1000, 30_000):
        # p = j / n for every j, or for 40 of them.
        j = np.unique(np.linspace(1, n, min(n, 40)).round().astype(np.int64))
        for vocab in (n, n + 5):
            logits = torch.full((j.size, vocab), float("-inf"))
            logits[:, :n] = 0.5
            u = np.full(j.size, 1 - 1e-10)
            ones, no_k = np.ones(j.size), np.zeros(j.size, dtype=np.int64)
            check(logits, u, ones, no_k, j / n, tally)
            result = select_tokens(
                logits,
                torch.from_numpy(u),
                lambda _entropy, ones=ones: torch.from_numpy(ones),
                torch.from_numpy(no_k),
                torch.from_numpy(j / n),
            )
            # u near 1 picks the nucleus' last token: the j-th for p = j / n.
            assert result.token_id.tolist() == (j - 1).tolist()
            assert torch.allclose(result.prob, torch.from_numpy(1 / j), rtol=1e-9)


@pytest.mark.parametrize("vocab", [151_936, 262_144])
def test_flat_rows_at_full_vocabulary_match_the_reference(vocab):
    generator = np.random.default_rng(vocab)
    rows = 4
    logits = np.zeros((rows, vocab))
    logits[1] = generator.normal(0, 1e-3, vocab)  # near-flat
    logits[2, :] = -0.5
    logits[2, generator.choice(vocab, 300, replace=False)] = generator.normal(0, 2, 300)
    logits[3] = np.round(generator.normal(0, 1, vocab) * 4) / 4  # few values, huge ties
    tally = Tally()
    for _ in range(2):
        u = generator.random(rows)
        check(
            torch.from_numpy(logits).float(),
            u,
            np.array([1.0, 0.7, 1.3, 2.0]),
            np.array([0, 0, 150_000, 0]),
            np.array([1.0, 0.9, 1.0, 0.5]),
            tally,
        )
    assert tally.compared >= 2
