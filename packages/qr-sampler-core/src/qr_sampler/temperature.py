"""Temperature strategies: one temperature per row, computed on the logits' device."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

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
