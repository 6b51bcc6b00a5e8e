"""Under pipeline parallelism only vLLM's last stage has logits, and only it samples."""

from __future__ import annotations


def vllm_pipeline_stage() -> tuple[int, int]:
    """This worker's pipeline stage and the number of stages ((0, 1) without pipeline
    parallelism, or outside a running vLLM)."""
    try:
        from vllm.distributed import parallel_state
    except ImportError:
        return 0, 1
    if not parallel_state.model_parallel_is_initialized():
        return 0, 1
    group = parallel_state.get_pp_group()
    return group.rank_in_group, group.world_size
