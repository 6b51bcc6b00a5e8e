"""The walk every device takes: a stable sort of each row, float64 running sums and
binary searches; no host reads."""

from __future__ import annotations

from qr_sampler.sampling.ops.walk import Selection, Walk


def sorted_walk(step: Walk) -> Selection:
    """The walk itself: a stable descending sort (ties keep token-id order), float64
    running sums, and binary searches; no host reads."""
    import torch

    ordered, order = step.values.sort(dim=-1, descending=True, stable=True)
    weight, _ = step.weights(ordered)
    if step.top_k is not None:
        vocab = ordered.shape[-1]
        bites = (step.top_k > 0) & (step.top_k < vocab)
        kth = ordered.gather(1, (step.top_k - 1).clamp(min=0, max=vocab - 1)[:, None])
        weight.masked_fill_(bites[:, None] & (ordered < kth), 0.0)
    through = weight.cumsum(dim=-1)
    total = through[:, -1]
    # Weights fall along the sorted row, so the positive ones are a prefix.
    positive = (weight > 0).sum(dim=-1)
    last = (positive - 1).clamp(min=0)[:, None]
    mass, candidates, end = total, positive, last
    end_token, cut = None, None
    if step.top_p is not None:
        nucleus = torch.minimum(torch.searchsorted(through, step.reach(total)[:, None]), last)
        cut = step.top_p < 1
        mass = torch.where(cut, through.gather(1, nucleus).squeeze(1), total)
        candidates = torch.where(cut, nucleus.squeeze(1) + 1, positive)
        end_token = order.gather(1, nucleus).squeeze(1)
        end = torch.where(cut[:, None], nucleus, last)
    # The first token whose running sum exceeds the target, never past the nucleus.
    at = torch.minimum(torch.searchsorted(through, step.target(mass)[:, None], right=True), end)
    amount = weight.gather(1, at).squeeze(1)
    return Selection(
        order.gather(1, at).squeeze(1),
        *step.given,
        greedy=step.greedy,
        amount=amount,
        mass=mass,
        before=lambda: through.gather(1, at).squeeze(1) - amount,
        weight=weight,
        nucleus_end=end_token,
        nucleus_cut=cut,
        placed=(at.squeeze(1), candidates),
    )
