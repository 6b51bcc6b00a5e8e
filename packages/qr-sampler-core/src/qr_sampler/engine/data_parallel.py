"""Which engine process of a data-parallel run this worker belongs to."""

from __future__ import annotations

from typing import Any


def data_parallel_rank(vllm_config: Any) -> int:
    """The engine's data-parallel rank (0 without data parallelism).

    vLLM runs a dense model's data-parallel engines as independent single engines and
    then resets ``data_parallel_rank`` to 0 in each; ``data_parallel_index`` (vLLM
    0.32) keeps the real rank. Older releases only have ``data_parallel_rank``.
    """
    parallel = getattr(vllm_config, "parallel_config", None)
    for field in ("data_parallel_index", "data_parallel_rank"):
        rank = getattr(parallel, field, None)
        if isinstance(rank, int):
            return rank
    return 0
