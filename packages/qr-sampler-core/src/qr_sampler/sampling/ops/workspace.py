"""Scratch tensors a step reuses instead of allocating them anew."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


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
