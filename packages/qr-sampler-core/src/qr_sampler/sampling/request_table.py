"""Per-slot options of the requests in the running batch, as host arrays.

Engines address requests by slot (the V1 runner by batch row, Model Runner V2 by
request-state index). Keeping options as columns indexed by slot lets a step
gather every row's options with one fancy index instead of a loop over rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from qr_sampler.records.provenance import Origin
from qr_sampler.settings.config import NUMERIC_FIELDS, SamplingOptions

#: Named choices (plugin components, the experiment arm), stored as indices into
#: the names each may take.
CHOICE_FIELDS: tuple[str, ...] = ("signal_amplifier_type", "temperature_strategy", "arm")
#: Flags first: whether qr-sampler samples the slot at all, and whether each of its
#: tokens is recorded in full (logged per token or kept in memory); then the last
#: batch the slot was in and, where the engine says (Model Runner V2), the position
#: of its request's next token.
COLUMNS: tuple[str, ...] = (
    "active",
    "record",
    "batch",
    "next_position",
    *NUMERIC_FIELDS,
    *CHOICE_FIELDS,
)
_INDEX = {name: i for i, name in enumerate(COLUMNS)}
_BATCH, _NEXT_POSITION = _INDEX["batch"], _INDEX["next_position"]


class RequestTable:
    """Options by slot; a slot that holds no request, or a bypassed one, is inactive."""

    def __init__(self, choices: Mapping[str, Mapping[str, object]], capacity: int = 64) -> None:
        #: For each choice field, the registered names in column-value order.
        self.choice_names = {field: sorted(choices[field]) for field in CHOICE_FIELDS}
        self._choice_index = {
            field: {name: i for i, name in enumerate(names)}
            for field, names in self.choice_names.items()
        }
        self.params = np.zeros((capacity, len(COLUMNS)), dtype=np.float64)
        self.options: list[SamplingOptions | None] = [None] * capacity
        self.origins: list[Origin | None] = [None] * capacity
        #: Each request's prompt token ids, where a penalty needs them.
        self.prompts: list[npt.NDArray[np.int64] | None] = [None] * capacity
        #: Batches seen so far (``note_batch``).
        self.batches = 0

    @staticmethod
    def column(name: str) -> int:
        return _INDEX[name]

    def put(
        self,
        slot: int,
        options: SamplingOptions,
        origin: Origin | None = None,
        prompt: npt.NDArray[np.int64] | None = None,
        next_position: int = 0,
    ) -> None:
        self._ensure(slot)
        self._vacate(slot)
        row = self.params[slot]
        row[_BATCH], row[_NEXT_POSITION] = 0.0, next_position
        row[_INDEX["active"]] = 0.0 if options.bypass else 1.0
        row[_INDEX["record"]] = float(options.log_level == "full" or options.diagnostic_mode)
        for name in NUMERIC_FIELDS:
            row[_INDEX[name]] = float(getattr(options, name))
        for field in CHOICE_FIELDS:
            row[_INDEX[field]] = self._choice_index[field][getattr(options, field)]
        self.options[slot] = options
        self.origins[slot] = origin
        self.prompts[slot] = prompt

    def clear(self, slot: int) -> None:
        if slot < len(self.options):
            self._vacate(slot)
            self.params[slot, _INDEX["active"]] = 0.0
            self.options[slot] = None
            self.origins[slot] = None
            self.prompts[slot] = None

    def move(self, src: int, dst: int) -> None:
        """``dst`` takes over ``src``'s request; ``src`` is left empty."""
        self._ensure(max(src, dst))
        self.params[dst] = self.params[src]
        self.options[dst] = self.options[src]
        self.origins[dst] = self.origins[src]
        self.prompts[dst] = self.prompts[src]
        self.clear(src)

    def swap(self, a: int, b: int) -> None:
        self._ensure(max(a, b))
        self.params[[a, b]] = self.params[[b, a]]
        self.options[a], self.options[b] = self.options[b], self.options[a]
        self.origins[a], self.origins[b] = self.origins[b], self.origins[a]
        self.prompts[a], self.prompts[b] = self.prompts[b], self.prompts[a]

    def note_batch(
        self,
        slots: npt.NDArray[np.int64],
        positions: npt.NDArray[np.int64],
        emitting: npt.NDArray[np.bool_] | None,
    ) -> None:
        """Note which slots this batch holds and the position of each one's next token,
        as the engine says them (Model Runner V2): what tells apart requests that share
        one parameters object when one of them comes back (``engine.preemption``)."""
        self.batches += 1
        self.params[slots, _BATCH] = self.batches
        kept = slice(None) if emitting is None else emitting
        self.params[slots[kept], _NEXT_POSITION] = positions[kept] + 1

    def in_batch(self, slot: int, origin: Origin) -> bool:
        """Whether ``origin``'s request is in the engine's batch as far as the table can
        tell: it holds ``slot`` and was in the last batch, or was seated after it."""
        return (
            slot < len(self.origins)
            and self.origins[slot] is origin
            and self.params[slot, _BATCH] in (0, self.batches)
        )

    def next_position(self, slot: int, origin: Origin) -> int:
        """The position of the next token of ``origin``'s request as the engine last said,
        held in ``slot`` or, once the slot went to another request, by the origin."""
        if slot < len(self.origins) and self.origins[slot] is origin:
            return int(self.params[slot, _NEXT_POSITION])
        return origin.engine_position

    def _vacate(self, slot: int) -> None:
        """The request leaving ``slot`` takes its engine position along."""
        leaving = self.origins[slot]
        if leaving is not None:
            leaving.engine_position = int(self.params[slot, _NEXT_POSITION])

    def gather(
        self, slots: npt.NDArray[np.int64], emitting: npt.NDArray[np.bool_] | None = None
    ) -> npt.NDArray[np.float64]:
        """A copy of the ``[rows, columns]`` options of the given slots, in row order;
        rows where ``emitting`` is False (the engine discards their sample) inactive."""
        try:
            params = self.params[slots]
        except IndexError:  # a slot past the table, seen for the first time
            self._ensure(int(slots.max()))
            params = self.params[slots]
        if emitting is not None:
            params[~emitting, _INDEX["active"]] = 0.0
        return params

    def token_history(
        self, slots: npt.NDArray[np.int64], rows: npt.NDArray[np.int64], vocab: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The prompt and output token ids of ``rows``, each ``[rows, longest]`` and
        padded with ``vocab`` (no token has that id); the engine's -1 placeholders
        for tokens still in flight count as padding too."""
        prompts = [self.prompts[slot] for slot in slots[rows]]
        outputs = []
        for slot in slots[rows]:
            origin = self.origins[slot]
            output = origin.output if origin is not None else None
            outputs.append(np.fromiter(output, dtype=np.int64) if output else _NO_TOKENS)
        return _padded(prompts, vocab), _padded(outputs, vocab)

    def identities(
        self,
        slots: npt.NDArray[np.int64],
        rows: list[int],
        positions: npt.NDArray[np.int64] | None,
        *,
        recorded: bool = True,
    ) -> list[tuple[str | None, int | None]]:
        """Each row's request id and the output index of the token it samples: from
        the engine where it says (``positions``), else from the request's own output.
        ``recorded`` False: only asking (before the draw), the token is not counted."""
        identities: list[tuple[str | None, int | None]] = []
        for row in rows:
            origin = self.origins[slots[row]]
            if positions is not None:
                position: int | None = int(positions[row])
            elif origin is None:
                position = None
            else:
                position = origin.next_position() if recorded else origin.position()
            identities.append((origin.request_id if origin is not None else None, position))
        return identities

    def _ensure(self, slot: int) -> None:
        capacity = self.params.shape[0]
        if slot < capacity:
            return
        grown = max(slot + 1, capacity * 2)
        params = np.zeros((grown, len(COLUMNS)), dtype=np.float64)
        params[:capacity] = self.params
        self.params = params
        self.options.extend([None] * (grown - capacity))
        self.origins.extend([None] * (grown - capacity))
        self.prompts.extend([None] * (grown - capacity))


_NO_TOKENS = np.zeros(0, dtype=np.int64)


def _padded(lists: Sequence[npt.NDArray[np.int64] | None], pad: int) -> npt.NDArray[np.int64]:
    arrays = [array if array is not None else _NO_TOKENS for array in lists]
    table = np.full((len(arrays), max([1, *map(len, arrays)])), pad, dtype=np.int64)
    for row, array in enumerate(arrays):
        table[row, : len(array)] = array
    table[table < 0] = pad
    return table


def distinct(values: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """The distinct values of a non-empty choice column, as indices. Nearly always
    one (a batch on one setting), which is checked first: ``np.unique`` sorts."""
    first = values[0]
    found = values[:1] if (values == first).all() else np.unique(values)
    return found.astype(np.int64)
