"""The running vLLM worker's tensor-parallel group, as the sampler's ``SharedU``."""

from __future__ import annotations

from qr_sampler.sampling.shared_u import SharedU


def vllm_tensor_parallel_group() -> SharedU | None:
    """The group, if vLLM runs this worker with more than one tensor-parallel rank."""
    try:
        from vllm.distributed import parallel_state
    except ImportError:
        return None
    if not parallel_state.model_parallel_is_initialized():
        return None
    group = parallel_state.get_tp_group()
    if group.world_size == 1:
        return None
    return SharedU(group.device_group, group.ranks[0], group.rank_in_group == 0)
