"""Repetition, frequency and presence penalties: vLLM's definitions, as batched ops.

Repetition (over prompt and output tokens): a seen token's logit is divided by the
penalty where positive, multiplied where not. Frequency: minus the penalty times
the token's count in the output. Presence: minus the penalty once if it is there.
The arithmetic is vLLM's own, in float32 in the same order, so the logits match.

Only the tokens a request has seen change, so the work is done on those (a few
hundred per row) through flat indices, never on ``[rows, vocab]`` masks or copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Penalized:
    """Where penalties were written (flat indices into the logits), and what was there."""

    at: torch.Tensor
    original: torch.Tensor

    def undo(self, values: torch.Tensor, keep: torch.Tensor) -> None:
        """Put the original logits back in the penalized rows where ``keep[row]`` is
        False (``keep`` per penalized row, on the device: no host read)."""
        import torch

        flat = values.view(-1)
        flat[self.at] = torch.where(keep[:, None], flat[self.at], self.original)


def apply_penalties(
    values: torch.Tensor,
    rows: torch.Tensor,
    prompt_tokens: torch.Tensor,
    output_tokens: torch.Tensor,
    penalties: torch.Tensor,
) -> Penalized:
    """In place on contiguous float32 ``values`` ``[batch, vocab]``, in ``rows``.
    Token tensors ``[len(rows), n]`` are padded with ``vocab``; ``penalties`` is
    ``[len(rows), 3]``: repetition, frequency, presence."""
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
    ordered = output_tokens.sort(dim=1).values
    count = torch.searchsorted(ordered, index, right=True) - torch.searchsorted(ordered, index)
    count = count.to(torch.float32)
    at = rows[:, None] * vocab + index
    flat = values.view(-1)
    original = flat[at]
    penalty = penalties.to(torch.float32)
    repetition = penalty[:, 0:1].expand_as(original)
    penalized = original * torch.where(original > 0, 1.0 / repetition, repetition)
    penalized -= penalty[:, 1:2] * count
    penalized -= penalty[:, 2:3] * (count > 0)
    flat[at] = torch.where(saw, penalized, original)
    return Penalized(at, original)
