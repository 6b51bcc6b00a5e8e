"""Temperature strategies: one temperature per row, computed on the logits' device."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch


class TemperatureStrategy(Protocol):
    """Maps per-row options (and, if asked for, the Shannon entropy) to temperatures."""

    #: Whether ``temperatures`` needs the entropy of each row's distribution.
    needs_entropy: bool

    def temperatures(
        self,
        params: Mapping[str, torch.Tensor],
        entropy: torch.Tensor | None,
        vocab_size: int,
    ) -> torch.Tensor:
        """``params`` holds the rows' numeric options by field name, shape ``[rows]``."""
        ...


class FixedTemperature:
    """The request's ``fixed_temperature``, whatever the distribution."""

    needs_entropy = False

    def temperatures(
        self,
        params: Mapping[str, torch.Tensor],
        entropy: torch.Tensor | None,
        vocab_size: int,
    ) -> torch.Tensor:
        return params["fixed_temperature"]


class EntropyDependentTemperature:
    """EDT: T = base * (H / ln V) ** exponent, clamped to [min, max].

    A confident distribution (low H) is sampled cooler, a flat one warmer.
    """

    needs_entropy = True

    def temperatures(
        self,
        params: Mapping[str, torch.Tensor],
        entropy: torch.Tensor | None,
        vocab_size: int,
    ) -> torch.Tensor:
        assert entropy is not None, "EDT is declared needs_entropy"
        normalised = (entropy / math.log(max(vocab_size, 2))).clamp(min=0.0, max=1.0)
        raw = params["edt_base_temp"] * normalised.pow(params["edt_exponent"])
        return raw.clamp(min=params["edt_min_temp"], max=params["edt_max_temp"])


class RowTemperatures:
    """The registered strategies, indexed as the request table's strategy column."""

    def __init__(self, strategies: Sequence[TemperatureStrategy]) -> None:
        self._strategies = list(strategies)

    def needs_entropy(self, strategy_ids: npt.NDArray[np.int64]) -> bool:
        return any(self._strategies[i].needs_entropy for i in strategy_ids)

    def temperatures(
        self,
        columns: Mapping[str, torch.Tensor],
        entropy: torch.Tensor | None,
        strategy_ids: npt.NDArray[np.int64],
        vocab_size: int,
    ) -> torch.Tensor:
        """Each row's temperature by its own strategy; ``strategy_ids`` are the ones
        the active rows use (known on the host, so the device is never asked)."""
        import torch

        if len(strategy_ids) == 1:
            # Every active row has this strategy; the other rows are not forced.
            strategy = self._strategies[int(strategy_ids[0])]
            return strategy.temperatures(columns, entropy, vocab_size)
        strategy_column = columns["temperature_strategy"]
        temperature = torch.ones_like(strategy_column)
        for strategy_id in strategy_ids:
            strategy = self._strategies[strategy_id]
            values = strategy.temperatures(columns, entropy, vocab_size).to(temperature.dtype)
            temperature = torch.where(strategy_column == strategy_id, values, temperature)
        return temperature
