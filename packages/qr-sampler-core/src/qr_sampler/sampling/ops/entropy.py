"""Shannon entropy of each row's softmax, in one pass over the logits."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def shannon_entropy(
    logits: torch.Tensor, row_max: torch.Tensor, scratch: torch.Tensor, exps: torch.Tensor
) -> torch.Tensor:
    """H = -sum p log p of softmax(logits); masked tokens contribute nothing.

    As ``log Z - sum(e * d) / Z`` with ``d = x - max``, ``e = exp(d)``, ``Z = sum(e)``:
    one exp and no log per token (the log per token costs more than the exp). The
    sums are taken in the rows' own dtype and finished in float64: every term of
    each sum has the same sign, so torch's cascaded float32 sums stay within about
    1e-7 of float64's, and summing float32 into float64 directly costs a CPU 40
    times as much.
    """
    import torch

    d = torch.sub(logits, row_max[:, None], out=scratch)
    # -inf (masked) would make 0 * -inf = NaN; any value whose exp is 0 does.
    d.clamp_(min=-1e4)
    e = torch.exp(d, out=exps)
    total = e.sum(dim=-1).double()
    weighted = e.mul_(d).sum(dim=-1).double()
    entropy: torch.Tensor = (total.log() - weighted / total).to(logits.dtype)
    return entropy
