"""u -> token, for a whole batch at once, on the logits' own device.

Order of operations per row: temperature -> top-k -> softmax -> top-p -> CDF over
tokens in descending probability order (ties: lower token id first) -> the token
whose CDF interval holds u. u near 0 picks the most probable token. Logits that
are already -inf (grammar masks, bad words, logit bias) keep probability 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Selection:
    """Per-row results, all tensors of shape ``[rows]`` on the logits' device."""

    token_id: torch.Tensor
    #: 0-based place of the token in descending probability order.
    rank: torch.Tensor
    #: The token's probability after temperature, top-k and top-p.
    prob: torch.Tensor
    #: Tokens left with non-zero probability after top-k and top-p.
    num_candidates: torch.Tensor
    #: False where the row is all -inf or holds NaN/+inf: nothing can be chosen.
    valid: torch.Tensor
    #: Shannon entropy (nats) of softmax(logits) before temperature, if computed.
    entropy: torch.Tensor | None


def sort_descending(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Values and token ids in descending order; a stable sort keeps ties by token id."""
    return logits.sort(dim=-1, descending=True, stable=True)


def shannon_entropy(sorted_logits: torch.Tensor) -> torch.Tensor:
    """H = -sum p log p of softmax(logits), with masked tokens contributing nothing."""
    import torch

    log_p = torch.log_softmax(sorted_logits, dim=-1)
    p = log_p.exp()
    return -torch.where(p > 0, p * log_p, torch.zeros_like(p)).sum(dim=-1)


def select_tokens(
    sorted_logits: torch.Tensor,
    sorted_ids: torch.Tensor,
    u: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    entropy: torch.Tensor | None = None,
) -> Selection:
    """Pick one token per row. Rows with ``temperature <= 0`` are greedy."""
    import torch

    vocab = sorted_logits.shape[-1]
    # NaN sorts first and +inf/-inf sort to the ends, so the top value tells all.
    valid = torch.isfinite(sorted_logits[:, 0])
    greedy = temperature <= 0
    safe_temperature = torch.where(greedy, torch.ones_like(temperature), temperature)
    scaled = (sorted_logits - sorted_logits[:, :1]) / safe_temperature[:, None]

    position = torch.arange(vocab, device=sorted_logits.device)
    k = torch.where(top_k > 0, top_k.clamp(max=vocab), torch.full_like(top_k, vocab))
    scaled = scaled.masked_fill(position[None, :] >= k[:, None], float("-inf"))
    probs = torch.softmax(scaled, dim=-1)

    # Nucleus: keep a token while the mass strictly before it is below top_p, so
    # the most probable token always stays.
    cumulative = probs.cumsum(dim=-1)
    probs = probs.masked_fill((cumulative - probs) >= top_p[:, None], 0.0)
    cdf = probs.cumsum(dim=-1)
    total = cdf[:, -1:]
    num_candidates = (probs > 0).sum(dim=-1)

    target = u.to(cdf.dtype)[:, None] * total
    rank = torch.searchsorted(cdf, target, right=True).squeeze(1)
    # u * total can round up to total itself; the last candidate owns that edge.
    rank = torch.minimum(rank, (num_candidates - 1).clamp(min=0))
    rank = torch.where(greedy, torch.zeros_like(rank), rank)

    token_id = sorted_ids.gather(1, rank[:, None]).squeeze(1)
    prob = (probs.gather(1, rank[:, None]) / total).squeeze(1)
    prob = torch.where(greedy, torch.ones_like(prob), prob)
    num_candidates = torch.where(greedy, torch.ones_like(num_candidates), num_candidates)
    return Selection(token_id, rank, prob, num_candidates, valid, entropy)


def force_tokens(logits: torch.Tensor, rows: torch.Tensor, token_id: torch.Tensor) -> None:
    """In place: for each row in ``rows``, chosen logit 0.0 and every other -inf.

    The chosen logit is overwritten rather than kept: if it had been masked to
    -inf earlier the row would otherwise have nothing left to emit.
    """
    import torch

    kept = logits.gather(1, token_id[:, None])
    logits.masked_fill_(rows[:, None], float("-inf"))
    logits.scatter_(1, token_id[:, None], torch.where(rows[:, None], 0.0, kept))
