"""What Model Runner V2 tells about each logits row, read from its request state.

The V1 runner says neither; there the emission gate (``emission``) finds after the
fact which sampled tokens vLLM kept, and records count positions themselves.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def v2_rows(
    req_states: Any, slots: np.ndarray, ctx: Any
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Which rows' samples vLLM keeps (the sequence reaches its prefill length), and
    each row's index in its request's output (tokens visible to the one being
    sampled, less the prompt; exact without speculative decoding, which the adapter
    refuses)."""
    seen = getattr(ctx, "seq_lens_upper_bound_np", None)
    if seen is None:
        return None, None
    seen = np.asarray(seen[: len(slots)], dtype=np.int64)
    prefill_len = _host_array(req_states, "prefill_len")
    prompt_len = _host_array(req_states, "prompt_len")
    kept = seen >= prefill_len[slots] if prefill_len is not None else None
    positions = seen - prompt_len[slots] if prompt_len is not None else None
    return kept, positions


def refilled(req_states: Any, slot: int) -> int:
    """How many output tokens the request just added to ``slot`` came back with: Model
    Runner V2 refills a preempted request's prompt and output so far (``prefill_len``
    past ``prompt_len``), set before the processors hear of it; 0 for a new request."""
    prefill_len = _host_array(req_states, "prefill_len")
    prompt_len = _host_array(req_states, "prompt_len")
    if prefill_len is None or prompt_len is None:
        return 0
    return max(0, int(prefill_len[slot]) - int(prompt_len[slot]))


def _host_array(req_states: Any, name: str) -> np.ndarray | None:
    """The host copy of one of Model Runner V2's per-slot request arrays, or ``None``
    where the request state has none."""
    return getattr(getattr(req_states, name, None), "np", None)
