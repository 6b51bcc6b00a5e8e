"""u -> token, for a whole batch at once, on the logits' own device.

Order of operations per row (vLLM's): temperature -> min-p -> top-k -> top-p -> CDF over
tokens in descending probability order (ties: lower token id first) -> the token
whose CDF interval holds u. u near 0 picks the most probable token. Logits that
are already -inf (grammar masks, bad words, logit bias) keep probability 0.

Which walk finds that token is chosen per step (``ops.walk`` says how they differ).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from qr_sampler.sampling.ops.entropy import shannon_entropy
from qr_sampler.sampling.ops.histogram_walk import histogram_walk
from qr_sampler.sampling.ops.sorted_walk import sorted_walk
from qr_sampler.sampling.ops.walk import Selection, Walk
from qr_sampler.sampling.ops.workspace import Workspace
from qr_sampler.settings.config import GREEDY_BELOW

if TYPE_CHECKING:
    import torch

#: On the CPU, batches of at most this many logits are sorted; larger ones are walked
#: by histogram (a CPU sort costs tens of nanoseconds per logit). Elsewhere every
#: batch is sorted: a device sort is cheap, and the sorted walk never waits on the host.
SORT_ELEMENTS = 8192


def select_tokens(
    logits: torch.Tensor,
    u: torch.Tensor,
    temperature_of: Callable[[torch.Tensor | None], torch.Tensor],
    top_k: torch.Tensor | None,
    top_p: torch.Tensor | None,
    min_p: torch.Tensor | None = None,
    *,
    with_entropy: bool = False,
    workspace: Workspace | None = None,
) -> Selection:
    """Pick one token per row. Rows whose temperature is below ``GREEDY_BELOW`` are
    greedy.

    ``temperature_of`` maps the rows' Shannon entropy (None unless
    ``with_entropy``) to their temperatures. ``top_k``/``top_p``/``min_p`` may be
    None when no row uses them (the caller knows from its host-side options; asking the
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
    greedy = wide_temperature < GREEDY_BELOW
    step = Walk(
        values,
        row_max,
        torch.where(greedy, 1.0, wide_temperature),
        greedy,
        workspace,
        u,
        top_k,
        top_p,
        min_p,
        (valid, entropy, temperature),
    )
    return sorted_walk(step) if sorts(values) else histogram_walk(step)


def sorts(values: torch.Tensor) -> bool:
    """Whether the batch is walked by sorting it (see ``SORT_ELEMENTS``)."""
    return values.device.type != "cpu" or values.numel() <= SORT_ELEMENTS
