"""Tensor-parallel ranks must emit the same token: one rank draws, every rank uses its u.

vLLM samples on every tensor-parallel rank and relies on identical random numbers
to keep them in step; each rank then feeds its own sampled token back into its
model. Independent draws would make the ranks diverge, so only the group's first
rank fetches entropy, and its u values are broadcast to the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qr_sampler.errors import EntropyUnavailableError

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

    def share(self, u: torch.Tensor) -> torch.Tensor:
        """The leader's u, on every rank; ``EntropyUnavailableError`` where the leader
        could not draw (it sends NaN, see ``fail``)."""
        shared = u.contiguous()  # broadcast fills the tensor in place
        self.broadcast(shared)
        if bool(shared.isnan().any()):
            raise EntropyUnavailableError(
                "the entropy source failed on the tensor-parallel leader (rank "
                f"{self.leader_rank}); its log says why"
            )
        return shared

    def fail(self, rows: int, device: torch.device) -> None:
        """The leader's draw failed: NaN tells the other ranks to fail too, instead of
        waiting forever for a broadcast."""
        import torch

        self.broadcast(torch.full((rows,), float("nan"), device=device))
