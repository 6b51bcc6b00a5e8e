"""The crossing walk on its hard rows: ties across the whole vocabulary.

Tied tokens are counted off in token-id order through per-block counts; these
tests pin the n-th tied token across block edges and a partial last block, and
bound how many passes over the vocabulary a tied row costs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from qr_sampler.sampling.ops.crossing import DescendingWalk, Histogram, count_true

#: Ops that only look at a few entries of a vocabulary-sized tensor, or none.
NOT_A_PASS = {
    torch.ops.aten.empty.memory_format,
    torch.ops.aten.gather.default,
    torch.ops.aten.index.Tensor,
    torch.ops.aten.view.default,
    torch.ops.aten.view.dtype,
    torch.ops.aten.slice.Tensor,
    torch.ops.aten.expand.default,
    torch.ops.aten._unsafe_view.default,
    torch.ops.aten.alias.default,
    torch.ops.aten.detach.default,
    torch.ops.aten.unsqueeze.default,
    torch.ops.aten.squeeze.dim,
    torch.ops.aten.select.int,
}


class Passes(TorchDispatchMode):
    """Counts the ops that read or write a tensor of at least ``size`` elements."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size, self.ops = size, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        tensors = [t for t in tree_leaves((args, kwargs, result)) if isinstance(t, torch.Tensor)]
        if func not in NOT_A_PASS and any(t.numel() >= self.size for t in tensors):
            self.ops.append(func)
        return result


def walk_over(values: torch.Tensor) -> DescendingWalk:
    buffers: dict[str, torch.Tensor] = {}

    def buffer(name: str, dtype: torch.dtype, width: int) -> torch.Tensor:
        return buffers.setdefault(name, torch.empty((values.shape[0], width), dtype=dtype))

    rows = values.shape[0]
    log_weight = (values - values.amax(dim=-1, keepdim=True)).float()
    floor = torch.full((rows,), -1e9).double()
    return DescendingWalk(values, log_weight, floor, torch.ones(rows, dtype=torch.bool), buffer)


def weights(walk: DescendingWalk) -> Histogram:
    values = walk.values
    return walk.histogram(torch.exp(values - values.amax(dim=-1, keepdim=True)).double())


def test_true_entries_are_counted_per_row_across_block_edges():
    generator = torch.Generator().manual_seed(5)
    share = torch.tensor([0.0, 0.01, 0.5, 0.99, 1.0])[:, None]
    for width in (1, 127, 128, 129, 1000, 1024):
        table = torch.rand(5, width, generator=generator) < share
        expected = [int(row.nonzero().numel()) for row in table]
        assert count_true(table).tolist() == expected, width


def test_the_kth_of_tied_tokens_is_the_kth_in_token_id_order_across_block_edges():
    # 1000 columns: seven whole blocks of 128 and a partial one.
    vocab = 1000
    k = torch.tensor([1, 127, 128, 129, 256, 897, 999, 1000, 1001])
    walk = walk_over(torch.full((k.numel(), vocab), 0.5))
    kth = walk.counts().crossing(k.double(), inclusive=True)
    assert kth.token_id.tolist() == (k.clamp(max=vocab) - 1).tolist()
    assert kth.through.tolist() == k.clamp(max=vocab).double().tolist()


def test_tied_tokens_between_masked_ones_are_counted_in_token_id_order():
    vocab = 700
    generator = torch.Generator().manual_seed(14)
    masked = (
        torch.rand(6, vocab, generator=generator)
        < torch.tensor([0.0, 0.3, 0.9, 0.99, 0.5, 0.5])[:, None]
    )
    values = torch.full((6, vocab), -2.0).masked_fill(masked, float("-inf"))
    left = (~masked).sum(dim=-1)
    n = torch.stack([torch.randint(1, int(c) + 1, (), generator=generator) for c in left])
    # u lands inside the n-th surviving token's share of the mass.
    chosen = weights(walk_over(values)).crossing((n - 0.5).double(), inclusive=False)
    expected = [int(torch.nonzero(~masked[row])[n[row] - 1]) for row in range(6)]
    assert chosen.token_id.tolist() == expected
    assert torch.allclose(chosen.through, n.double())


def test_a_plateau_row_picks_by_token_id_among_the_tied_tokens():
    vocab = 5000
    values = torch.full((2, vocab), 0.25)
    values[:, :40] = torch.linspace(3.0, 1.0, 40)
    histogram = weights(walk_over(values))
    above = torch.exp(values[0, :40].double() - 3.0).sum()
    plateau = float(torch.exp(torch.tensor(0.25 - 3.0, dtype=torch.float64)))
    # Halfway into the 1234th and the 4000th tied token (ids 1273 and 4039).
    target = above + plateau * torch.tensor([1233.5, 3999.5], dtype=torch.float64)
    chosen = histogram.crossing(target, inclusive=False)
    assert chosen.token_id.tolist() == [40 + 1233, 40 + 3999]


def test_an_all_equal_row_costs_a_few_light_passes():
    rows, vocab = 8, 32_768
    walk = walk_over(torch.full((rows, vocab), 1.5))
    histogram = weights(walk)
    nucleus = histogram.totals * 0.9
    with Passes(rows * vocab) as first:
        end = histogram.crossing(nucleus, inclusive=True)
    with Passes(rows * vocab) as second:
        chosen = histogram.crossing(end.through * 0.3, inclusive=False)
    # The bin's members and their count per block (for its middle token), then the
    # tokens equal to that token's value and their count per block; no scatter.
    assert len(first.ops) <= 4, first.ops
    # The second finds the bin's members again; the tied value is the same.
    assert len(second.ops) <= 2, second.ops
    # Every weight is 1: the nucleus is the first ceil(0.9 * vocab) tokens.
    kept = math.ceil(vocab * 0.9)
    assert end.token_id.tolist() == [kept - 1] * rows
    assert chosen.token_id.tolist() == [math.floor(kept * 0.3)] * rows


def test_a_plateau_sharing_its_bin_with_a_few_other_values_is_not_refined():
    vocab = 32_768
    values = torch.full((4, vocab), 0.25)
    values[:, :40] = torch.linspace(3.0, 1.0, 40)
    # Within 1e-4 of the plateau: the same coarse bin, but not tied with it. Row 0
    # has them above the plateau, row 1 below it, row 2 on both sides of it.
    values[0, [100, 7000]] = torch.tensor([0.2502, 0.2501])
    values[1, [300, 9000]] = torch.tensor([0.2499, 0.2498])
    values[2, [50, 500, 8000]] = torch.tensor([0.2502, 0.2501, 0.2499])
    # Row 3: four values near the plateau, none holding most of the bin.
    values[3, 40:20_000] = torch.tensor([0.2502, 0.2501, 0.2499, 0.2498]).repeat(4990)
    for rows, most in ((slice(0, 3), 6), (slice(3, 4), None)):
        histogram = weights(walk_over(values[rows]))
        reference = values[rows].double().numpy()
        for fraction in (0.04, 0.3, 0.7, 0.9999):
            target = histogram.totals * fraction
            with Passes(len(reference) * vocab) as passes:
                chosen = histogram.crossing(target, inclusive=False)
            assert chosen.token_id.tolist() == [
                reference_crossing(row, float(t)) for row, t in zip(reference, target, strict=True)
            ]
            # No finer histogram: the bin's members and its middle token, the tokens
            # tied with that and their count, the others among the members, where
            # they are. Row 3's bin is refined instead.
            if most is not None:
                assert len(passes.ops) <= most, " ".join(str(op) for op in passes.ops)
            else:
                assert torch.ops.aten.scatter_add_.default in passes.ops


def reference_crossing(row: np.ndarray, target: float) -> int:
    """The first token, in (value desc, token id asc) order, whose float64 running
    sum of exp(x - max) exceeds ``target``."""
    order = np.lexsort((np.arange(row.size), -row))
    through = np.cumsum(np.exp(row[order] - row.max()))
    return int(order[min(np.searchsorted(through, target, side="right"), row.size - 1)])
