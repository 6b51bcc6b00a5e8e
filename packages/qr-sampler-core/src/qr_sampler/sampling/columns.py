"""The step's rows' options by field name: on the host for the entropy side, on the
device for the tensor side, each a view of one array and sliced only when read."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from qr_sampler.sampling.request_table import COLUMNS, RequestTable
from qr_sampler.settings.config import NUMERIC_FIELDS

if TYPE_CHECKING:
    import torch


class HostColumns(Mapping[str, "npt.NDArray[np.float64]"]):
    """Some rows' numeric options (rows of ``RequestTable.gather``)."""

    def __init__(self, rows: npt.NDArray[np.float64]) -> None:
        self._rows = rows

    def __getitem__(self, name: str) -> npt.NDArray[np.float64]:
        return self._rows[:, RequestTable.column(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(NUMERIC_FIELDS)

    def __len__(self) -> int:
        return len(NUMERIC_FIELDS)


class DeviceColumns(Mapping[str, "torch.Tensor"]):
    """The rows' options on the device, and their u: the step's one host-to-device
    copy holds u in column 0 and the request table's columns after it (``u`` may be
    another rank's, see ``SharedU``)."""

    def __init__(self, on_device: torch.Tensor, u: torch.Tensor) -> None:
        self._on_device = on_device
        self.u = u

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._on_device[:, RequestTable.column(name) + 1]

    def __iter__(self) -> Iterator[str]:
        return iter(COLUMNS)

    def __len__(self) -> int:
        return len(COLUMNS)
