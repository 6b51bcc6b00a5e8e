"""Repetition, frequency and presence penalties: vLLM's definitions, as batched ops.

Repetition (over prompt and output tokens): a seen token's logit is divided by the
penalty where positive, multiplied where not. Frequency: minus the penalty times
the token's count in the output. Presence: minus the penalty once if it is there.
The arithmetic is vLLM's own, in float32 in the same order, so the logits match.

Only the tokens a request has seen change, so the work is done on those (a few
hundred per row) and written back, never on ``[rows, vocab]`` masks and counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def apply_penalties(
    values: torch.Tensor,
    prompt_tokens: torch.Tensor,
    output_tokens: torch.Tensor,
    penalties: torch.Tensor,
) -> None:
    """In place on float32 ``values`` ``[rows, vocab]``. Token tensors ``[rows, n]`` are
    padded with ``vocab``; ``penalties`` is ``[rows, 3]``: repetition, frequency,
    presence."""
    import torch

    vocab = values.shape[-1]
    # Sorted, the pads come last and every row that saw anything starts with a token.
    seen = torch.cat([prompt_tokens, output_tokens], dim=1).sort(dim=1).values
    first = seen[:, :1]
    saw = first < vocab
    # A pad stands in for the row's first token (it writes back that token's value),
    # or, in a row that saw nothing, for token 0 left as it is.
    index = torch.where(seen < vocab, seen, torch.where(saw, first, 0))
    # How often each seen token occurs in the output: the same count at every place
    # the token appears, so duplicate places write back the same value.
    count = (index[:, :, None] == output_tokens[:, None, :]).sum(-1).to(torch.float32)
    original = values.gather(1, index)
    penalty = penalties.to(torch.float32)
    repetition = penalty[:, 0:1].expand_as(original)
    penalized = original * torch.where(original > 0, 1.0 / repetition, repetition)
    penalized -= penalty[:, 1:2] * count
    penalized -= penalty[:, 2:3] * (count > 0)
    values.scatter_(1, index, torch.where(saw, penalized, original))
