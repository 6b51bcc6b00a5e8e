"""Each row's u from its bytes, by the amplifier its request chose."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from qr_sampler.entropy.amplification import Amplified, SignalAmplifier
from qr_sampler.experiments.arms import StepDraw
from qr_sampler.sampling.columns import HostColumns
from qr_sampler.sampling.request_table import RequestTable, distinct

_AMPLIFIER = RequestTable.column("signal_amplifier_type")


class RowAmplifiers:
    """The registered amplifiers, indexed as the request table's amplifier column."""

    def __init__(self, amplifiers: Sequence[SignalAmplifier]) -> None:
        self._amplifiers = list(amplifiers)

    def amplify(
        self, draw: StepDraw, params: npt.NDArray[np.float64], active: npt.NDArray[np.bool_]
    ) -> Amplified:
        """One call per amplifier in use, over all of its active rows."""
        data = np.frombuffer(draw.data, dtype=np.uint8)
        rows = params.shape[0]
        # Inactive rows get u = 0.5 as a placeholder; they are never forced.
        u, z, mean = np.full(rows, 0.5), np.zeros(rows), np.zeros(rows)
        if not active.any():  # a step of greedy rows only: nothing was drawn
            return Amplified(u=u, z_score=z, sample_mean=mean)
        for amplifier_id in distinct(params[active, _AMPLIFIER]):
            mask = active & (params[:, _AMPLIFIER] == amplifier_id)
            amplifier = self._amplifiers[amplifier_id]
            out = amplifier.amplify(
                data, draw.offsets[mask], draw.counts[mask], HostColumns(params[mask])
            )
            u[mask], z[mask], mean[mask] = out.u, out.z_score, out.sample_mean
        return Amplified(u=u, z_score=z, sample_mean=mean)
