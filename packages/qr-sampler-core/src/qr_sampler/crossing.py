"""Where a running sum over each row, taken in descending value order, crosses a target.

Sorting a whole vocabulary per row would cost far more than vLLM's own sampling
step, so the running sum is located in stages instead, each one pass over the
rows:

1. A histogram of the summed quantity over bins of the tokens' log-weights finds
   the bin where the sum crosses the target (bin 0 holds the largest values).
2. When that bin holds few tokens in every row, they are compacted and sorted.
   When it holds many (flat, tied or near-flat rows), the bin is narrowed down by
   the bits of its values instead, eleven at a time (a radix select), until one
   value is left; the tokens tied at that value are counted off in token-id order.

Sums are float64, and every stage adds the same float64 quantities, so the
crossing found is the one a float64 walk over the sorted row would find, up to
float64 rounding. The cost is bounded by a fixed number of passes per row, well
below a full sort, however the values are spread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

#: Histogram bins per row, spanning log-weights 0 (the top token) to -LOG_WEIGHT_SPAN:
#: about TOKENS_PER_BIN tokens a bin for small vocabularies, at most MAX_BINS.
MAX_BINS = 4096
TOKENS_PER_BIN = 32
#: Tokens below exp(-LOG_WEIGHT_SPAN) of the top token share the last bin.
LOG_WEIGHT_SPAN = 40.0
#: A crossing bin this large in some row is narrowed by radix select, not sorted.
SORT_LIMIT = 2048
DIGIT_BITS = 11


@dataclass(frozen=True)
class Crossing:
    token_id: torch.Tensor
    #: The token's own quantity, and the running sum up to and including it.
    amount: torch.Tensor
    through: torch.Tensor


class DescendingWalk:
    """The tokens of each row in (value descending, token id ascending) order.

    ``values`` orders the tokens; ``log_weight`` (float32, <= 0, monotone in
    ``values``) places them into bins.
    """

    def __init__(self, values: torch.Tensor, log_weight: torch.Tensor, bins: torch.Tensor) -> None:
        import torch

        self.values = values
        rows, vocab = values.shape
        self.count = min(max(vocab // TOKENS_PER_BIN, 1), MAX_BINS)
        # NaN (rows flagged invalid) and -inf land in the last bin.
        torch.mul(log_weight, -self.count / LOG_WEIGHT_SPAN, out=log_weight)
        log_weight.nan_to_num_(nan=self.count - 1).clamp_(min=0, max=self.count - 1)
        self.bins = bins
        bins.copy_(log_weight)
        self.tokens_per_bin = torch.zeros(rows, self.count, dtype=torch.int64, device=values.device)
        self.tokens_per_bin.scatter_add_(
            1, bins, torch.ones((1, 1), dtype=torch.int64, device=values.device).expand_as(bins)
        )
        self._keys: torch.Tensor | None = None

    def histogram(self, quantity: torch.Tensor) -> Histogram:
        import torch

        sums = torch.zeros(
            quantity.shape[0], self.count, dtype=quantity.dtype, device=quantity.device
        )
        sums.scatter_add_(1, self.bins, quantity)
        return Histogram(self, quantity, sums)

    def counts(self) -> Histogram:
        """Counts of tokens, for finding the k-th one."""
        import torch

        ones = torch.ones((1, 1), dtype=torch.float64, device=self.values.device)
        return Histogram(self, ones.expand_as(self.bins), self.tokens_per_bin.double())

    def keys(self) -> torch.Tensor:
        """The values' bits as int64, ordered like the values (all ties equal)."""
        import torch

        if self._keys is None:
            # +0.0 turns -0.0 into 0.0, which the bits would otherwise tell apart.
            values = self.values + 0.0
            if values.dtype == torch.float64:
                bits = values.view(torch.int64)
                flip, sign = (1 << 63) - 1, -(1 << 63)
            else:
                bits = values.float().view(torch.int32).long()
                flip, sign = (1 << 31) - 1, -(1 << 31)
            # Negative floats order backwards as integers: flip their magnitude bits,
            # then the sign bit, so that unsigned order is value order.
            keys = torch.where(bits < 0, bits ^ flip, bits) ^ sign
            self._keys = keys if values.dtype == torch.float64 else keys & ((1 << 32) - 1)
        return self._keys

    def key_bits(self) -> int:
        import torch

        return 64 if self.values.dtype == torch.float64 else 32


class Histogram:
    """One quantity per token (float64 weights, or counts) summed over the bins."""

    def __init__(self, walk: DescendingWalk, quantity: torch.Tensor, sums: torch.Tensor) -> None:
        self.walk, self.quantity = walk, quantity
        self.located = _Located(sums)
        self.totals = self.located.cumulative[:, -1]

    def crossing(self, target: torch.Tensor, *, inclusive: bool) -> Crossing:
        """The first token whose running sum exceeds ``target`` (reaches it, if
        ``inclusive``); past the end, the last token with a positive quantity."""
        import torch

        walk = self.walk
        bin_index, before = self.located.find(target, inclusive)
        in_bin = torch.eq(walk.bins, bin_index[:, None])
        width = int(walk.tokens_per_bin.gather(1, bin_index[:, None]).max())
        if width <= SORT_LIMIT:
            return self._sorted(in_bin, max(width, 1), before, target, inclusive)
        return self._radix(in_bin, before, target, inclusive)

    def _sorted(
        self,
        in_bin: torch.Tensor,
        width: int,
        before: torch.Tensor,
        target: torch.Tensor,
        inclusive: bool,
    ) -> Crossing:
        """Compact the bin's tokens into a ``[rows, width]`` table and sort it."""
        import torch

        values, quantity = self.walk.values, self.quantity
        rows = values.shape[0]
        # nonzero lists the tokens row by row in token-id order, the order ties need.
        row, token = in_bin.nonzero(as_tuple=True)
        counts = torch.bincount(row, minlength=rows)
        column = torch.arange(row.numel(), device=row.device) - (counts.cumsum(0) - counts)[row]
        table = torch.full((rows, width), float("-inf"), dtype=values.dtype, device=values.device)
        table[row, column] = values[row, token]
        ids = torch.zeros((rows, width), dtype=torch.int64, device=values.device)
        ids[row, column] = token
        amounts = torch.zeros((rows, width), dtype=quantity.dtype, device=values.device)
        amounts[row, column] = quantity[row, token]
        # Padding is -inf and zero: stable sorting keeps it after the bin's own tokens.
        order = table.sort(dim=-1, descending=True, stable=True).indices
        ids, amounts = ids.gather(1, order), amounts.gather(1, order)
        through = before[:, None] + amounts.cumsum(dim=-1)
        past = through < target[:, None] if inclusive else through <= target[:, None]
        positive = (amounts > 0).sum(dim=-1)
        position = torch.minimum(past.sum(dim=-1), (positive - 1).clamp(min=0))[:, None]
        return Crossing(
            ids.gather(1, position).squeeze(1),
            amounts.gather(1, position).squeeze(1),
            through.gather(1, position).squeeze(1),
        )

    def _radix(
        self, candidate: torch.Tensor, before: torch.Tensor, target: torch.Tensor, inclusive: bool
    ) -> Crossing:
        """Narrow the bin down to one value, DIGIT_BITS bits of it at a time."""
        import torch

        keys, quantity = self.walk.keys(), self.quantity
        zero = torch.zeros((), dtype=quantity.dtype, device=quantity.device)
        shift = self.walk.key_bits()
        while shift > 0:
            bits = min(DIGIT_BITS, shift)
            shift -= bits
            top = (1 << bits) - 1
            # Bucket 0 holds the largest digit, as bin 0 holds the largest values.
            bucket = top - ((keys >> shift) & top)
            sums = torch.zeros(keys.shape[0], top + 1, dtype=quantity.dtype, device=keys.device)
            sums.scatter_add_(1, bucket, torch.where(candidate, quantity, zero))
            chosen, before = _Located(sums, before).find(target, inclusive)
            candidate &= bucket == chosen[:, None]
        # One value is left: its tokens weigh the same; count them off in id order.
        tied = candidate.sum(dim=-1)
        amount = torch.where(candidate, quantity, zero).amax(dim=-1)
        share = (target - before) / amount
        fully = share.ceil() - 1 if inclusive else share.floor()
        index = torch.minimum(fully.nan_to_num(0.0).clamp(min=0), (tied - 1).to(share.dtype))
        index = index.long()
        ranks = torch.cumsum(candidate, dim=-1, dtype=torch.int32)
        token = (ranks <= index[:, None]).sum(dim=-1)
        return Crossing(token, amount, before + (index + 1) * amount)


class _Located:
    """A per-row histogram's running sums, and the bin where they cross a target."""

    def __init__(self, sums: torch.Tensor, before: torch.Tensor | None = None) -> None:
        import torch

        self.sums = sums
        self.cumulative = sums.cumsum(dim=-1)
        if before is not None:
            self.cumulative += before[:, None]
        # Bins past the last non-empty one repeat the total: never stop in them.
        self.last = (self.cumulative < self.cumulative[:, -1:]).sum(dim=-1)
        start = before if before is not None else torch.zeros_like(self.cumulative[:, 0])
        self.start = torch.cat([start[:, None], self.cumulative[:, :-1]], dim=1)

    def find(self, target: torch.Tensor, inclusive: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The crossing bin of each row, and the sum of the bins before it."""
        import torch

        cumulative = self.cumulative
        if inclusive:
            # A target at or below the start still needs a bin with something in it.
            past = (cumulative < target[:, None]) | (cumulative <= self.start[:, :1])
        else:
            past = cumulative <= target[:, None]
        index = torch.minimum(past.sum(dim=-1), self.last)
        return index, self.start.gather(1, index[:, None]).squeeze(1)
