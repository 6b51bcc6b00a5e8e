"""Records held until the engine shows that it kept the sampled token.

vLLM's V1 runner samples every row of a step, including rows of a prompt still
being prefilled in chunks (and, after a preemption, recomputed), and then drops
those rows' tokens. A logits processor cannot tell such rows apart in advance,
but it holds each request's live output-token list: the token was kept exactly
when that list has grown past the length it had when the token was chosen
(under async scheduling the new entry is a ``-1`` placeholder, which counts).
So each step's records wait here and are written once the list says so; a
record whose token was dropped is never written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from qr_sampler.records.sink import StepRecords

logger = logging.getLogger(__name__)

#: ``RecordSink.write_step``.
WriteStep = Callable[[StepRecords], None]
#: The live output-token list of the request in a logits row (``None``: not known).
OutputOf = Callable[[int], "Sequence[int] | None"]


def _kept(position: int | None, outputs: Sequence[int] | None) -> bool:
    """The engine booked the token: its output list grew past the token's position."""
    return outputs is None or position is None or len(outputs) > position


class EmissionGate:
    """Between the sampler and the record sink: writes only tokens the engine kept."""

    def __init__(self, write_step: WriteStep, output_of: OutputOf) -> None:
        self._write_step = write_step
        self._output_of = output_of
        self._held: list[tuple[StepRecords, list[Sequence[int] | None]]] = []
        #: Tokens whose sample the engine dropped (partial prefill, recompute).
        self.dropped = 0

    def hold(self, step: StepRecords) -> None:
        """Takes the step's records in place of the sink; ``settle`` writes them."""
        self._held.append((step, [self._output_of(row) for row in step.rows]))

    def settle(self) -> None:
        """Write the held records whose token was kept; forget the dropped ones.

        Call after the engine has booked the previous step's tokens and before a
        request's output list is let go (its removal from the batch).
        """
        held, self._held = self._held, []
        for step, outputs in held:
            step.kept = [
                _kept(position, output)
                for position, output in zip(step.positions, outputs, strict=True)
            ]
            dropped = step.kept.count(False)
            if dropped:
                self.dropped += dropped
                logger.debug(
                    "qr-sampler: %d sampled token(s) dropped by vLLM (prefill chunk or "
                    "recompute); no record written for them",
                    dropped,
                )
            self._write_step(step)
