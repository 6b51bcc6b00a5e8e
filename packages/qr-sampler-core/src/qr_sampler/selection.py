"""u -> token, for a whole batch at once, on the logits' own device.

Order of operations per row: temperature -> top-k -> softmax -> top-p -> CDF over
tokens in descending probability order (ties: lower token id first) -> the token
whose CDF interval holds u. u near 0 picks the most probable token. Logits that
are already -inf (grammar masks, bad words, logit bias) keep probability 0.

Weights and their sums are float64 whatever the logits' dtype, so the CDF is the
one a float64 walk over the sorted row gives. Two ways to that walk, chosen per
step: a stable sort of the rows (few operations and no host reads, so on an
accelerator and for small CPU batches), or, for large CPU batches where sorting
is slow, ``crossing``'s histograms, which find where the CDF holds u without
sorting the vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qr_sampler.crossing import LOWEST_EXPONENT, DescendingWalk, count_true

if TYPE_CHECKING:
    import torch

#: On the CPU, batches of at most this many logits are sorted; larger ones are walked
#: by histogram (a CPU sort costs tens of nanoseconds per logit). Elsewhere every
#: batch is sorted: a device sort is cheap, and the sorted walk never waits on the host.
SORT_ELEMENTS = 8192

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
    #: The token's weight, and the mass (after top-k and top-p) it was drawn from.
    amount: torch.Tensor
    mass: torch.Tensor
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
        """The token's probability after temperature, top-k and top-p."""
        import torch

        return torch.where(self.greedy, 1.0, self.amount / self.mass)

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


class Workspace:
    """Scratch tensors kept across steps: re-allocating vocabulary-sized buffers
    every step costs more than the arithmetic done in them."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def get(
        self,
        name: str,
        like: torch.Tensor,
        dtype: torch.dtype | None = None,
        width: int | None = None,
    ) -> torch.Tensor:
        """A ``[rows, width]`` buffer on ``like``'s device, its rows, dtype and width
        unless given."""
        import torch

        rows = like.shape[0]
        width = like.shape[1] if width is None else width
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


def select_tokens(
    logits: torch.Tensor,
    u: torch.Tensor,
    temperature_of: Callable[[torch.Tensor | None], torch.Tensor],
    top_k: torch.Tensor | None,
    top_p: torch.Tensor | None,
    *,
    with_entropy: bool = False,
    workspace: Workspace | None = None,
) -> Selection:
    """Pick one token per row. Rows whose temperature is ``<= 0`` are greedy.

    ``temperature_of`` maps the rows' Shannon entropy (None unless
    ``with_entropy``) to their temperatures. ``top_k``/``top_p`` may be None when
    no row uses them (the caller knows from its host-side options; asking the
    device would wait for it). Logits may be float16, bfloat16, float32 or
    float64; they are only read.
    """
    import torch

    workspace = workspace if workspace is not None else Workspace()
    # Half precision widens to float32 exactly; float64 keeps its own precision.
    values = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
    # amax propagates NaN, and +inf/-inf tops show up as non-finite too.
    row_max = values.amax(dim=-1)
    valid = torch.isfinite(row_max)
    row_max = torch.where(valid, row_max, 0.0)

    entropy = None
    if with_entropy:
        entropy = shannon_entropy(
            values, row_max, workspace.get("scratch", values), workspace.get("exps", values)
        )
    temperature = temperature_of(entropy)
    # float64: a temperature such as 1e-46 is 0 in float32 and would divide by zero.
    wide_temperature = temperature.to(torch.float64)
    greedy = wide_temperature <= 0
    step = _Step(
        values,
        row_max,
        torch.where(greedy, 1.0, wide_temperature),
        greedy,
        workspace,
        u,
        top_k,
        top_p,
        (valid, entropy, temperature),
    )
    return _sorted_walk(step) if sorts(values) else _histogram_walk(step)


def sorts(values: torch.Tensor) -> bool:
    """Whether the batch is walked by sorting it (see ``SORT_ELEMENTS``)."""
    return values.device.type != "cpu" or values.numel() <= SORT_ELEMENTS


@dataclass(frozen=True)
class _Step:
    """What both walks start from: the rows, their maxima and (safe) temperatures,
    the rows' u, top-k and top-p, and what the ``Selection`` carries unchanged
    (valid, entropy, temperature as given)."""

    values: torch.Tensor
    row_max: torch.Tensor
    temperature: torch.Tensor
    greedy: torch.Tensor
    workspace: Workspace
    u: torch.Tensor
    top_k: torch.Tensor | None
    top_p: torch.Tensor | None
    given: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]

    def weights(self, ordered: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """float64 weights of ``ordered`` (the rows, in whichever order the walk
        needs), and their float32 log-weights."""
        return _weights(ordered, self.row_max, self.temperature, self.workspace)

    def reach(self, total: torch.Tensor) -> torch.Tensor:
        """The mass the nucleus must reach (with ``top_p`` set)."""
        import torch

        assert self.top_p is not None
        return (self.top_p.to(torch.float64) - TOP_P_SLACK).clamp(min=0) * total

    def target(self, mass: torch.Tensor) -> torch.Tensor:
        """Where u falls in ``mass``; greedy rows take the first token."""
        import torch

        return torch.where(self.greedy, 0.0, self.u.to(torch.float64) * mass)


def _sorted_walk(step: _Step) -> Selection:
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
    return Selection(
        order.gather(1, at).squeeze(1),
        *step.given,
        greedy=step.greedy,
        amount=weight.gather(1, at).squeeze(1),
        mass=mass,
        weight=weight,
        nucleus_end=end_token,
        nucleus_cut=cut,
        placed=(at.squeeze(1), candidates),
    )


def _histogram_walk(step: _Step) -> Selection:
    """The walk by histograms over log-weight (``crossing``), in token-id order."""
    import torch

    values, workspace = step.values, step.workspace
    weight, log_weight = step.weights(values)
    floor = step.row_max.to(torch.float64) + LOWEST_EXPONENT * step.temperature
    walk = DescendingWalk(
        values,
        log_weight,
        floor,
        step.given[0],
        lambda name, dtype, width: workspace.get(name, values, dtype, width),
    )
    if step.top_k is not None:
        k_threshold = _top_k_threshold(walk, step.top_k, values.shape[-1])
        if k_threshold is not None:
            weight.masked_fill_(values < k_threshold[:, None], 0.0)

    masses = walk.histogram(weight)
    total = masses.totals
    mass, end_token, cut = total, None, None
    if step.top_p is not None and bool((step.top_p < 1).any()):
        # The nucleus ends at the first token whose cumulative mass reaches p.
        nucleus = masses.crossing(step.reach(total), inclusive=True)
        cut = step.top_p < 1
        mass = torch.where(cut, nucleus.through, total)
        end_token = nucleus.token_id
    chosen = masses.crossing(step.target(mass), inclusive=False)
    token_id, amount = chosen.token_id, chosen.amount
    if end_token is not None and cut is not None:
        # u rounding to 1 must not step past the nucleus, whatever the sums did.
        beyond = cut & _comes_after(values, token_id, end_token)
        token_id = torch.where(beyond, end_token, token_id)
        amount = torch.where(beyond, nucleus.amount, amount)
    return Selection(
        token_id,
        *step.given,
        greedy=step.greedy,
        amount=amount,
        mass=mass,
        weight=weight,
        nucleus_end=end_token,
        nucleus_cut=cut,
        rank_of=walk.rank,
    )


def _weights(
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


def _comes_after(values: torch.Tensor, token: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Whether ``token`` comes after ``other`` in (value desc, token id asc) order."""
    mine = values.gather(1, token[:, None]).squeeze(1)
    theirs = values.gather(1, other[:, None]).squeeze(1)
    return (mine < theirs) | ((mine == theirs) & (token > other))


def _top_k_threshold(walk: DescendingWalk, top_k: torch.Tensor, vocab: int) -> torch.Tensor | None:
    """The k-th largest logit per row (ties at it are kept, as vLLM does), or None.

    Found by counting tokens down the same walk, so one row's large k costs the
    other rows nothing and costs no more than a small one.
    """
    import torch

    bites = (top_k > 0) & (top_k < vocab)
    if not bool(bites.any()):
        return None
    k = torch.where(bites, top_k, torch.full_like(top_k, vocab)).to(torch.float64)
    kth = walk.counts().crossing(k, inclusive=True)
    threshold = walk.values.gather(1, kth.token_id[:, None]).squeeze(1)
    return torch.where(bites, threshold, torch.full_like(threshold, float("-inf")))


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
