"""The CPU fast path: the walk by histograms over log-weight, for CPU batches too
large to sort (a CPU sort costs tens of nanoseconds per logit).

It finds the same token as ``sorted_walk`` without sorting the vocabulary, in
token-id order, through ``crossing``; a few of its decisions read the host, which
on a CPU waits for nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qr_sampler.sampling.ops.crossing import LOWEST_EXPONENT, DescendingWalk
from qr_sampler.sampling.ops.walk import Selection, Walk

if TYPE_CHECKING:
    import torch


def histogram_walk(step: Walk) -> Selection:
    """The walk by histograms over log-weight (``crossing``), in token-id order."""
    import torch

    values, workspace = step.values, step.workspace
    weight, log_weight = step.weights(values)
    floor = step.row_max.to(torch.float64) + LOWEST_EXPONENT * step.temperature
    walk = DescendingWalk(
        values,
        log_weight,
        floor,
        step.given[0],
        lambda name, dtype, width: workspace.get(name, values, dtype, width),
    )
    if step.top_k is not None:
        k_threshold = _top_k_threshold(walk, step.top_k, values.shape[-1])
        if k_threshold is not None:
            weight.masked_fill_(values < k_threshold[:, None], 0.0)

    masses = walk.histogram(weight)
    total = masses.totals
    mass, end_token, cut = total, None, None
    if step.top_p is not None and bool((step.top_p < 1).any()):
        # The nucleus ends at the first token whose cumulative mass reaches p.
        nucleus = masses.crossing(step.reach(total), inclusive=True)
        cut = step.top_p < 1
        mass = torch.where(cut, nucleus.through, total)
        end_token = nucleus.token_id
    chosen = masses.crossing(step.target(mass), inclusive=False)
    token_id, amount, through = chosen.token_id, chosen.amount, chosen.through
    if end_token is not None and cut is not None:
        # u rounding to 1 must not step past the nucleus, whatever the sums did.
        beyond = cut & _comes_after(values, token_id, end_token)
        token_id = torch.where(beyond, end_token, token_id)
        amount = torch.where(beyond, nucleus.amount, amount)
        through = torch.where(beyond, nucleus.through, through)
    return Selection(
        token_id,
        *step.given,
        greedy=step.greedy,
        amount=amount,
        mass=mass,
        before=lambda: through - amount,
        weight=weight,
        nucleus_end=end_token,
        nucleus_cut=cut,
        rank_of=walk.rank,
    )


def _comes_after(values: torch.Tensor, token: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Whether ``token`` comes after ``other`` in (value desc, token id asc) order."""
    mine = values.gather(1, token[:, None]).squeeze(1)
    theirs = values.gather(1, other[:, None]).squeeze(1)
    return (mine < theirs) | ((mine == theirs) & (token > other))


def _top_k_threshold(walk: DescendingWalk, top_k: torch.Tensor, vocab: int) -> torch.Tensor | None:
    """The k-th largest logit per row (ties at it are kept, as vLLM does), or None.

    Found by counting tokens down the same walk, so one row's large k costs the
    other rows nothing and costs no more than a small one.
    """
    import torch

    bites = (top_k > 0) & (top_k < vocab)
    if not bool(bites.any()):
        return None
    k = torch.where(bites, top_k, torch.full_like(top_k, vocab)).to(torch.float64)
    kth = walk.counts().crossing(k, inclusive=True)
    threshold = walk.values.gather(1, kth.token_id[:, None]).squeeze(1)
    return torch.where(bites, threshold, torch.full_like(threshold, float("-inf")))
