"""u -> token, for a whole batch at once, on the logits' own device.

Order of operations per row: temperature -> top-k -> softmax -> top-p -> CDF over
tokens in descending probability order (ties: lower token id first) -> the token
whose CDF interval holds u. u near 0 picks the most probable token. Logits that
are already -inf (grammar masks, bad words, logit bias) keep probability 0.

A full sort of the vocabulary would cost far more than vLLM's own sampling step,
so the CDF is walked in two stages instead: a weighted histogram of every token
over log-probability bins finds the bin where the cumulative mass crosses the
target, and only that bin's few tokens are then ordered exactly. Both stages
see the same float32 weights, so the result is the exact descending-order CDF
inverse, computed in O(vocab) per row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

#: Histogram bins per row, spanning log-weights 0 (the top token) to -LOG_WEIGHT_SPAN:
#: about TOKENS_PER_BIN tokens a bin for small vocabularies, at most MAX_BINS.
MAX_BINS = 4096
TOKENS_PER_BIN = 32
#: Tokens below exp(-LOG_WEIGHT_SPAN) of the top token share the last bin; together
#: they weigh less than vocab * 4e-18 of it, far below the u clamp of 1e-10.
LOG_WEIGHT_SPAN = 40.0


@dataclass(frozen=True)
class Selection:
    """Per-row results, all tensors of shape ``[rows]`` on the logits' device."""

    token_id: torch.Tensor
    #: The token's probability after temperature, top-k and top-p.
    prob: torch.Tensor
    #: False where the row is all -inf or holds NaN/+inf: nothing can be chosen.
    valid: torch.Tensor
    #: Shannon entropy (nats) of softmax(logits) before temperature, if computed.
    entropy: torch.Tensor | None
    temperature: torch.Tensor
    #: Where top-p cut the distribution: the nucleus' last token, and which rows.
    nucleus_end: torch.Tensor | None
    nucleus_cut: torch.Tensor | None
    #: The step's token weights after top-k (valid until the next step).
    weight: torch.Tensor

    def ranks(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """0-based rank of each chosen token in descending order, and how many
        tokens had non-zero probability. Costs a few passes: for records only."""
        import torch

        greedy = self.temperature <= 0
        rank = descending_rank(logits, self.token_id)
        candidates = (self.weight > 0).sum(dim=-1)
        if self.nucleus_end is not None and self.nucleus_cut is not None:
            in_nucleus = descending_rank(logits, self.nucleus_end) + 1
            candidates = torch.where(self.nucleus_cut, in_nucleus, candidates)
        rank = torch.where(greedy, torch.zeros_like(rank), rank)
        return rank, torch.where(greedy, torch.ones_like(candidates), candidates)


def descending_rank(logits: torch.Tensor, token_id: torch.Tensor) -> torch.Tensor:
    """How many tokens come before ``token_id`` in (value desc, token id asc) order."""
    import torch

    value = logits.gather(1, token_id[:, None])
    ids = torch.arange(logits.shape[-1], device=logits.device)
    before = (logits > value) | ((logits == value) & (ids[None, :] < token_id[:, None]))
    return before.sum(dim=-1)


class Workspace:
    """Scratch tensors kept across steps: re-allocating vocabulary-sized buffers
    every step costs more than the arithmetic done in them."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        import torch

        rows, width = like.shape
        dtype = dtype or like.dtype
        buffer = self._buffers.get(name)
        if (
            buffer is None
            or buffer.shape[0] < rows
            or buffer.shape[1] != width
            or buffer.dtype != dtype
            or buffer.device != like.device
        ):
            buffer = torch.empty((rows, width), dtype=dtype, device=like.device)
            self._buffers[name] = buffer
        return buffer[:rows]


def shannon_entropy(
    logits: torch.Tensor, row_max: torch.Tensor, scratch: torch.Tensor
) -> torch.Tensor:
    """H = -sum p log p of softmax(logits); masked tokens contribute nothing."""
    import torch

    torch.sub(logits, row_max[:, None], out=scratch)
    scratch.exp_()
    scratch.div_(scratch.sum(dim=-1, keepdim=True))
    entropy: torch.Tensor = torch.special.entr(scratch, out=scratch).sum(dim=-1)
    return entropy


def select_tokens(
    logits: torch.Tensor,
    u: torch.Tensor,
    temperature_of: Callable[[torch.Tensor | None], torch.Tensor],
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    *,
    with_entropy: bool = False,
    workspace: Workspace | None = None,
) -> Selection:
    """Pick one token per row. Rows whose temperature is ``<= 0`` are greedy.

    ``temperature_of`` maps the rows' Shannon entropy (None unless
    ``with_entropy``) to their temperatures.
    """
    import torch

    workspace = workspace if workspace is not None else Workspace()
    vocab = logits.shape[-1]
    # amax propagates NaN, and +inf/-inf tops show up as non-finite too.
    row_max = logits.amax(dim=-1)
    valid = torch.isfinite(row_max)
    row_max = torch.where(valid, row_max, torch.zeros_like(row_max))

    entropy = None
    if with_entropy:
        entropy = shannon_entropy(logits, row_max, workspace.get("scratch", logits))
    temperature = temperature_of(entropy)
    greedy = temperature <= 0
    safe_temperature = torch.where(greedy, torch.ones_like(temperature), temperature)

    # Log-weights relative to the top token, and weights, at the row's temperature.
    log_weight = workspace.get("log_weight", logits)
    torch.sub(logits, row_max[:, None], out=log_weight)
    log_weight.div_(safe_temperature.to(log_weight.dtype)[:, None])
    weight = torch.exp(log_weight, out=workspace.get("weight", logits))

    k_threshold = _top_k_threshold(logits, top_k, vocab)
    if k_threshold is not None:
        weight.masked_fill_(logits < k_threshold[:, None], 0.0)

    walk = _CdfWalk(logits, log_weight, weight, row_max, safe_temperature, k_threshold, workspace)
    total = walk.totals
    mass, nucleus_end, cut = total, None, None
    if bool((top_p < 1).any()):
        # The nucleus ends at the first token whose cumulative mass reaches p.
        nucleus = walk.crossing(top_p.to(total.dtype) * total, inclusive=True)
        cut = top_p < 1
        mass = torch.where(cut, nucleus.mass_through, total)
        nucleus_end = nucleus.token_id
    target = torch.where(greedy, torch.zeros_like(total), u.to(total.dtype) * mass)
    chosen = walk.crossing(target, inclusive=False)

    prob = torch.where(greedy, torch.ones_like(mass), chosen.weight / mass)
    return Selection(chosen.token_id, prob, valid, entropy, temperature, nucleus_end, cut, weight)


def _top_k_threshold(logits: torch.Tensor, top_k: torch.Tensor, vocab: int) -> torch.Tensor | None:
    """The k-th largest logit per row (ties at it are kept, as vLLM does), or None."""
    import torch

    largest_k = int(top_k.max())
    if largest_k <= 0:
        return None
    k = torch.where(top_k > 0, top_k.clamp(max=vocab), torch.full_like(top_k, vocab))
    values = logits.topk(min(largest_k, vocab), dim=-1).values
    threshold = values.gather(1, (k.clamp(max=values.shape[1]) - 1)[:, None]).squeeze(1)
    return torch.where(top_k > 0, threshold, torch.full_like(threshold, float("-inf")))


@dataclass(frozen=True)
class _Crossing:
    token_id: torch.Tensor
    weight: torch.Tensor
    #: Cumulative weight up to and including the token.
    mass_through: torch.Tensor


class _CdfWalk:
    """The weighted histogram of one step, shared by the top-p and the u crossing."""

    def __init__(
        self,
        logits: torch.Tensor,
        log_weight: torch.Tensor,
        weight: torch.Tensor,
        row_max: torch.Tensor,
        temperature: torch.Tensor,
        k_threshold: torch.Tensor | None,
        workspace: Workspace,
    ) -> None:
        import torch

        self.logits, self.row_max, self.temperature = logits, row_max, temperature
        self.k_threshold = k_threshold
        self.workspace = workspace
        # Bin 0 holds the most probable tokens; -inf and NaN land in the last bin.
        count = min(max(logits.shape[-1] // TOKENS_PER_BIN, 1), MAX_BINS)
        scaled = workspace.get("scaled", logits)
        torch.mul(log_weight, -count / LOG_WEIGHT_SPAN, out=scaled)
        scaled.nan_to_num_(nan=count - 1).clamp_(min=0, max=count - 1)
        self.bins = workspace.get("bins", logits, torch.int64)
        self.bins.copy_(scaled)
        histogram = torch.zeros(logits.shape[0], count, dtype=weight.dtype, device=logits.device)
        histogram.scatter_add_(1, self.bins, weight)
        self.cumulative = histogram.cumsum(dim=-1)
        self.histogram = histogram
        self.totals = self.cumulative[:, -1]
        # Bins past the last non-empty one repeat the total; never stop in them.
        self.last_bin = (self.cumulative < self.totals[:, None]).sum(dim=-1)

    def crossing(self, target: torch.Tensor, *, inclusive: bool) -> _Crossing:
        """The first token (in descending order) whose cumulative weight exceeds
        ``target`` (or reaches it, if ``inclusive``)."""
        import torch

        past = (
            self.cumulative < target[:, None] if inclusive else self.cumulative <= target[:, None]
        )
        bin_index = torch.minimum(past.sum(dim=-1), self.last_bin)
        before = (
            self.cumulative.gather(1, bin_index[:, None])
            - self.histogram.gather(1, bin_index[:, None])
        ).squeeze(1)

        rows = self.logits.shape[0]
        in_bin = torch.eq(
            self.bins, bin_index[:, None], out=self.workspace.get("in_bin", self.logits, torch.bool)
        )
        # Compact the bin's tokens into a small [rows, width] table; nonzero lists
        # them row by row in token-id order, which is the order ties need.
        row, token = in_bin.nonzero(as_tuple=True)
        counts = torch.bincount(row, minlength=rows)
        width = max(int(counts.max()), 1)
        column = torch.arange(row.numel(), device=row.device) - (counts.cumsum(0) - counts)[row]
        values = torch.full((rows, width), float("-inf"), device=self.logits.device)
        values[row, column] = self.logits[row, token]
        token_ids = torch.zeros((rows, width), dtype=torch.int64, device=self.logits.device)
        token_ids[row, column] = token
        values, by_value = values.sort(dim=-1, descending=True, stable=True)
        token_ids = token_ids.gather(1, by_value)

        # The same float32 arithmetic as the histogram's weights, so both agree.
        weights = (
            (values - self.row_max[:, None]) / self.temperature.to(values.dtype)[:, None]
        ).exp()
        if self.k_threshold is not None:
            weights = weights.masked_fill(values < self.k_threshold[:, None], 0.0)
        through = before[:, None] + weights.cumsum(dim=-1)
        past = through < target[:, None] if inclusive else through <= target[:, None]
        positive = (weights > 0).sum(dim=-1)
        position = torch.minimum(past.sum(dim=-1), (positive - 1).clamp(min=0))[:, None]
        return _Crossing(
            token_ids.gather(1, position).squeeze(1),
            weights.gather(1, position).squeeze(1),
            through.gather(1, position).squeeze(1),
        )


def force_tokens(logits: torch.Tensor, rows: torch.Tensor, token_id: torch.Tensor) -> None:
    """In place: for each row in ``rows``, chosen logit 0.0 and every other -inf.

    The chosen logit is overwritten rather than kept: if it had been masked to
    -inf earlier the row would otherwise have nothing left to emit.
    """
    import torch

    kept = logits.gather(1, token_id[:, None])
    logits.masked_fill_(rows[:, None], float("-inf"))
    logits.scatter_(1, token_id[:, None], torch.where(rows[:, None], 0.0, kept))
