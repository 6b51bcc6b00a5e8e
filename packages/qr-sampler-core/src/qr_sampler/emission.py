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
from collections.abc import Callable, Sized
from dataclasses import dataclass

from qr_sampler.records import TokenRecord

logger = logging.getLogger(__name__)

#: ``RecordSink.write_step``'s signature: records, log-in-full flags, keep flags.
WriteStep = Callable[[list[TokenRecord], list[bool], list[bool]], None]
#: The live output-token list of the request in a logits row (``None``: not known).
OutputOf = Callable[[int], "Sized | None"]


@dataclass
class _Held:
    record: TokenRecord
    log_full: bool
    keep: bool
    outputs: Sized | None

    def kept(self) -> bool:
        """The engine booked the token: its output list grew past the token's position."""
        position = self.record.position
        return self.outputs is None or position is None or len(self.outputs) > position


class EmissionGate:
    """Between the sampler and the record sink: writes only tokens the engine kept."""

    def __init__(self, write_step: WriteStep, output_of: OutputOf) -> None:
        self._write_step = write_step
        self._output_of = output_of
        self._held: list[_Held] = []
        #: Tokens whose sample the engine dropped (partial prefill, recompute).
        self.dropped = 0

    def hold(self, records: list[TokenRecord], log_full: list[bool], keep: list[bool]) -> None:
        """Takes the step's records in place of the sink; ``settle`` writes them."""
        for record, full, kept in zip(records, log_full, keep, strict=True):
            self._held.append(_Held(record, full, kept, self._output_of(record.row)))

    def settle(self) -> None:
        """Write the held records whose token was kept; forget the dropped ones.

        Call after the engine has booked the previous step's tokens and before a
        request's output list is let go (its removal from the batch).
        """
        if not self._held:
            return
        records, log_full, keep = [], [], []
        for held in self._held:
            if held.kept():
                records.append(held.record)
                log_full.append(held.log_full)
                keep.append(held.keep)
            else:
                self.dropped += 1
        if len(records) < len(self._held):
            logger.debug(
                "qr-sampler: %d sampled token(s) dropped by vLLM (prefill chunk or "
                "recompute); no record written for them",
                len(self._held) - len(records),
            )
        self._held = []
        self._write_step(records, log_full, keep)
