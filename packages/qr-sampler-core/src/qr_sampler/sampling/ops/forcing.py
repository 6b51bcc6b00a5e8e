"""Forcing: the chosen token becomes the only one vLLM can emit."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch


def force_tokens(logits: torch.Tensor, rows: torch.Tensor, token_id: torch.Tensor) -> None:
    """In place: for each row in ``rows``, chosen logit 0.0 and every other -inf.

    The chosen logit is overwritten rather than kept: if it had been masked to
    -inf earlier the row would otherwise have nothing left to emit. A NaN in a
    forced row is kept (sampled rows hold none: NaN makes a row invalid).
    """
    import torch

    kept = logits.gather(1, token_id[:, None])
    # A cap of -inf on the forced rows, +inf (no change) on the others: a clamp
    # against a per-row bound runs several times faster than a masked fill.
    forced = rows[:, None]
    logits.clamp_(max=torch.where(forced, float("-inf"), float("inf")))
    logits.scatter_(1, token_id[:, None], torch.where(forced, 0.0, kept))


def end_rows(logits: torch.Tensor, rows: npt.NDArray[np.bool_], end_token_id: int) -> None:
    """In place: force ``end_token_id`` into ``rows`` (a host mask), whatever their
    logits hold; those rows were never checked for NaN, which forcing would keep."""
    import torch

    on_device = torch.from_numpy(rows).to(logits.device)
    logits.masked_fill_(on_device[:, None], float("-inf"))
    token = torch.full((len(rows),), end_token_id, dtype=torch.long, device=logits.device)
    force_tokens(logits, on_device, token)
