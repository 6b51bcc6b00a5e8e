"""A small tensor on its way to the host: the copy starts now, the reader waits.

The engine's step must not wait for the device, but records need a few numbers per
row on the host. On CUDA the copy goes into pinned memory without blocking and an
event marks its end; whoever reads it (the records writer, off the critical path)
waits for that event. On the CPU the tensor already is host memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch


class HostCopy:
    def __init__(self, tensor: torch.Tensor) -> None:
        import torch

        self._event: torch.cuda.Event | None = None
        if tensor.device.type == "cpu":
            self._host = tensor
        elif tensor.device.type == "cuda":  # pragma: no cover - needs a GPU
            self._host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self._host.copy_(tensor, non_blocking=True)
            self._event = torch.cuda.Event()  # type: ignore[no-untyped-call]
            self._event.record()
        else:  # pragma: no cover - other accelerators copy synchronously
            self._host = tensor.to("cpu")

    def numpy(self) -> npt.NDArray[np.float64]:
        """The values, once the copy has landed."""
        if self._event is not None:  # pragma: no cover - needs a GPU
            self._event.synchronize()
        return np.asarray(self._host.numpy(), dtype=np.float64)
