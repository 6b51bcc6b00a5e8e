"""Tensor-parallel ranks must emit the same token: one rank draws, every rank uses its u.

vLLM samples on every tensor-parallel rank and relies on identical random numbers
to keep them in step; each rank then feeds its own sampled token back into its
model. Independent draws would make the ranks diverge, so only the group's first
rank fetches entropy, and its u values are broadcast to the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class SharedU:
    """u exchange within one process group (a vLLM tensor-parallel group)."""

    #: The ``torch.distributed`` process group of the ranks that must agree.
    group: Any
    #: Global rank of the group's leader, the one rank that draws entropy.
    leader_rank: int
    #: Whether this process is the leader.
    leader: bool

    def broadcast(self, u: torch.Tensor) -> None:
        """In place: the leader's values replace every other rank's."""
        import torch.distributed

        torch.distributed.broadcast(u, src=self.leader_rank, group=self.group)


def vllm_tensor_parallel_group() -> SharedU | None:
    """The running vLLM worker's tensor-parallel group, if it has more than one rank."""
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
