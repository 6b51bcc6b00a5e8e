"""What both walks start from and what they return.

A walk goes down each row in descending probability order (ties: lower token id
first) and finds the token whose CDF interval holds u, after top-k and top-p.
Weights and their sums are float64 whatever the logits' dtype, so the CDF is the
one a float64 walk over the sorted row gives. Two walks reach it: ``sorted_walk``
(every device) and ``histogram_walk`` (large CPU batches only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qr_sampler.sampling.ops.crossing import count_true
from qr_sampler.sampling.ops.workspace import Workspace

if TYPE_CHECKING:
    import torch

#: A top-p prefix counts as reaching p when its mass is within this of p (as a
#: fraction of the row's mass): p = 0.3 over ten equal tokens keeps three, whichever
#: way the float rounding of 0.3 and of the sums falls.
TOP_P_SLACK = 1e-9


@dataclass(frozen=True)
class Selection:
    """Per-row results, all tensors of shape ``[rows]`` on the logits' device.

    What only records need (``prob``, ``ranks``) is computed when asked for.
    """

    token_id: torch.Tensor
    #: False where the row is all -inf or holds NaN/+inf: nothing can be chosen.
    valid: torch.Tensor
    #: Shannon entropy (nats) of softmax(logits) before temperature, if computed.
    entropy: torch.Tensor | None
    temperature: torch.Tensor
    #: Rows whose temperature is <= 0: they take their most probable token.
    greedy: torch.Tensor
    #: The token's weight, the mass (after min-p, top-k and top-p) it was drawn
    #: from, and (computed when asked for) the mass before it in the walk's order.
    amount: torch.Tensor
    mass: torch.Tensor
    before: Callable[[], torch.Tensor]
    #: The step's token weights after top-k (valid until the next step).
    weight: torch.Tensor
    #: Where top-p cut the distribution: the nucleus' last token, and which rows.
    nucleus_end: torch.Tensor | None = None
    nucleus_cut: torch.Tensor | None = None
    #: The sorted walk's own (token's place in the sorted row, candidates).
    placed: tuple[torch.Tensor, torch.Tensor] | None = None
    #: The histogram walk's count of the tokens before a token in its order.
    rank_of: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def prob(self) -> torch.Tensor:
        """The token's probability after temperature, min-p, top-k and top-p."""
        import torch

        return torch.where(self.greedy, 1.0, self.amount / self.mass)

    @property
    def cdf_low(self) -> torch.Tensor:
        """Where the token's CDF interval starts: it holds u in [cdf_low, cdf_low + prob)."""
        import torch

        return torch.where(self.greedy, 0.0, self.before() / self.mass)

    def ranks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """0-based rank of each chosen token in descending order, and how many
        tokens had non-zero probability. After a histogram walk this costs a few
        passes over the logits, which must not have been forced yet: for records
        only."""
        import torch

        if self.placed is not None:
            rank, candidates = self.placed
        else:
            assert self.rank_of is not None
            rank = self.rank_of(self.token_id)
            candidates = count_true(self.weight > 0)
            if self.nucleus_end is not None and self.nucleus_cut is not None:
                in_nucleus = self.rank_of(self.nucleus_end) + 1
                candidates = torch.where(self.nucleus_cut, in_nucleus, candidates)
        greedy = self.greedy
        return torch.where(greedy, 0, rank), torch.where(greedy, 1, candidates)


@dataclass(frozen=True)
class Walk:
    """What both walks start from: the rows, their maxima and (safe) temperatures,
    the rows' u, top-k, top-p and min-p, and what the ``Selection`` carries
    unchanged (valid, entropy, temperature as given)."""

    values: torch.Tensor
    row_max: torch.Tensor
    temperature: torch.Tensor
    greedy: torch.Tensor
    workspace: Workspace
    u: torch.Tensor
    top_k: torch.Tensor | None
    top_p: torch.Tensor | None
    min_p: torch.Tensor | None
    given: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]

    def weights(self, ordered: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """float64 weights of ``ordered`` (the rows, in whichever order the walk
        needs), min-p applied, and their float32 log-weights."""
        import torch

        weight, log_weight = row_weights(ordered, self.row_max, self.temperature, self.workspace)
        if self.min_p is not None:
            # The top token weighs exactly 1, so min-p of the top probability is
            # min-p itself: vLLM keeps p >= min_p * p_max, and so does this.
            weight.masked_fill_(weight < self.min_p.to(torch.float64)[:, None], 0.0)
        return weight, log_weight

    def reach(self, total: torch.Tensor) -> torch.Tensor:
        """The mass the nucleus must reach (with ``top_p`` set)."""
        import torch

        assert self.top_p is not None
        return (self.top_p.to(torch.float64) - TOP_P_SLACK).clamp(min=0) * total

    def target(self, mass: torch.Tensor) -> torch.Tensor:
        """Where u falls in ``mass``; greedy rows take the first token."""
        import torch

        return torch.where(self.greedy, 0.0, self.u.to(torch.float64) * mass)


def row_weights(
    values: torch.Tensor, row_max: torch.Tensor, temperature: torch.Tensor, workspace: Workspace
) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 weights exp((x - max) / T), and the float32 exponents.

    The exponent is formed in float64 and rounded once to float32, where exp is
    several times cheaper: each weight is within about |exponent| * 6e-8 relative
    of float64's, under 7e-7 for the tokens that carry the mass of any row.
    """
    import torch

    weight = workspace.get("weight", values, torch.float64)
    exponent = weight.copy_(values)
    exponent.sub_(row_max.to(torch.float64)[:, None]).div_(temperature[:, None])
    rounded = workspace.get("log_weight", values, torch.float32)
    rounded.copy_(exponent)
    weight.copy_(torch.exp(rounded, out=workspace.get("weight32", values, torch.float32)))
    return weight, rounded
