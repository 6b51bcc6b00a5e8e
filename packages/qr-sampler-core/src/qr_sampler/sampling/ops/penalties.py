"""Repetition, frequency and presence penalties: vLLM's definitions, as batched ops.

Repetition (over prompt and output tokens): a seen token's logit is divided by the
penalty where positive, multiplied where not. Frequency: minus the penalty times
the token's count in the output. Presence: minus the penalty once if it is there.
The arithmetic is vLLM's own, in float32 in the same order, so the logits match.
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

    rows, vocab = values.shape
    counts = torch.zeros((rows, vocab + 1), dtype=torch.long, device=values.device)
    counts.scatter_add_(1, output_tokens, torch.ones_like(output_tokens))
    output_counts = counts[:, :vocab]
    in_output = output_counts > 0
    in_prompt = torch.zeros((rows, vocab + 1), dtype=torch.bool, device=values.device)
    in_prompt.scatter_(1, prompt_tokens, True)
    seen = in_prompt[:, :vocab] | in_output
    penalty = penalties.to(torch.float32)
    repetition = torch.where(seen, penalty[:, 0:1], 1.0)
    values *= torch.where(values > 0, 1.0 / repetition, repetition)
    values -= penalty[:, 1:2] * output_counts
    values -= penalty[:, 2:3] * in_output
