"""Requests that vLLM preempts keep who they are when they come back.

Under memory pressure vLLM preempts a request: it leaves the batch and is later
admitted again, its output so far intact. Admitted afresh, it would get a new
request id and, under random arm assignment, perhaps another arm, in the middle of
its output. So every admitted request is remembered with its id, options (arm
included) and prompt, and a request that comes back takes them up again.

Neither runner hands a logits processor vLLM's request id, but both hand back the
request's own ``SamplingParams`` object when it returns, and that object is what a
request is known by here. It is held weakly: when vLLM lets the request go for
good, its entry goes with it. One object may stand for several requests: vLLM
gives the n children of a request without a seed one shared object (in an engine
that runs in the caller's process; across processes each child gets a copy). So
each object keeps a list of seats, and a return is matched to one of them:

- The V1 runner re-adds a preempted request through ``BatchUpdate.added`` (its
  cached request state survives preemption) after removing it: of the seats out of
  the batch, the one whose output list it hands back (the same list, or under async
  scheduling a new one that begins with its tokens) is the one coming back.
- Model Runner V2 re-adds it with ``add_request``, having set the slot's
  ``prefill_len`` past its ``prompt_len`` by the output so far (the output is
  refilled): of several seats, one out of the batch (not in the last one, nor
  seated since) whose next position is that many tokens is the one coming back;
  none, and it is admitted as new. One preempted before its first token comes back
  as a new request, which changes nothing a record shows. Where workers get their
  own copy of the parameters (a multi-process executor), a return is not
  recognised on this runner.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from qr_sampler.records.provenance import Origin
from qr_sampler.sampling.request_table import RequestTable
from qr_sampler.settings.config import SamplingOptions


@dataclass
class _Seat:
    origin: Origin
    options: SamplingOptions
    prompt: npt.NDArray[np.int64] | None
    #: Where the request sat last (Model Runner V2 never moves a request; on the V1
    #: runner the slot goes stale and ``seated`` says instead).
    slot: int
    #: Whether the request is in the engine's batch now (V1 runner: only a request
    #: out of it can come back).
    seated: bool = True


class Readmissions:
    """Remembers each admitted request so that its return takes up the same seat."""

    def __init__(self) -> None:
        self._by_params: dict[int, tuple[weakref.ref[Any], list[_Seat]]] = {}
        #: The same seats by their request's origin, for the V1 runner's removals.
        self._by_origin: dict[int, _Seat] = {}
        #: Requests that came back and kept their identity.
        self.resumed = 0

    def remember(self, table: RequestTable, slot: int, params: Any) -> None:
        """Note the request just seated in ``slot``, known by its ``params``."""
        origin, options = table.origins[slot], table.options[slot]
        if origin is None or options is None:
            return
        key = id(params)
        entry = self._by_params.get(key)
        if entry is None or entry[0]() is not params:

            def forget(_: Any) -> None:
                gone = self._by_params.pop(key, None)
                for seat in gone[1] if gone is not None else ():
                    self._by_origin.pop(id(seat.origin), None)

            try:
                entry = (weakref.ref(params, forget), [])
            except TypeError:
                return  # parameters that cannot be held weakly give no identity to keep
            self._by_params[key] = entry
        seat = _Seat(origin, options, table.prompts[slot], slot)
        entry[1].append(seat)
        self._by_origin[id(origin)] = seat

    def left(self, table: RequestTable, slot: int) -> None:
        """The V1 runner took the request in ``slot`` out of the batch."""
        origin = table.origins[slot] if slot < len(table.origins) else None
        seat = self._by_origin.get(id(origin))
        if seat is not None and seat.origin is origin:
            seat.seated = False

    def resume(
        self,
        table: RequestTable,
        slot: int,
        params: Any,
        output: list[int] | None = None,
        *,
        refilled: int | None = None,
    ) -> bool:
        """Seat a returning request in ``slot`` as it was; False if it is new.
        ``output``: the V1 runner's output list of the request; ``refilled``: Model
        Runner V2's word on how many output tokens it came back with (0: none, new)."""
        entry = self._by_params.get(id(params))
        if entry is None or entry[0]() is not params:
            return False
        if refilled is None:
            seat = _by_output([s for s in entry[1] if not s.seated], output)
        else:
            seat = _by_refill(table, entry[1], refilled) if refilled else None
        if seat is None:
            return False
        if output is not None:
            seat.origin.output = output
        seat.seated, seat.slot = True, slot
        table.put(slot, seat.options, seat.origin, seat.prompt, refilled or 0)
        self.resumed += 1
        return True


def _by_refill(table: RequestTable, seats: list[_Seat], refilled: int) -> _Seat | None:
    """The seat Model Runner V2's refilled request takes: the one there is, or, of
    several sharing its parameters, one out of the batch whose next token is the
    ``refilled``-th."""
    if len(seats) == 1:
        return seats[0]
    return next(
        (
            s
            for s in seats
            if table.next_position(s.slot, s.origin) == refilled
            and not table.in_batch(s.slot, s.origin)
        ),
        None,
    )


def _by_output(away: list[_Seat], output: Sequence[int] | None) -> _Seat | None:
    """Of the seats out of the batch, the one the V1 runner's ``output`` belongs to: its
    own list, else the one whose tokens begin it. Async scheduling hands back a new
    list, holding the tokens that were still -1 placeholders in the old one when the
    request left. Without an output, only a lone seat is sure."""
    if output is None:
        return away[0] if len(away) == 1 else None
    for seat in away:
        if seat.origin.output is output:
            return seat
    tokens = _booked(output)
    found, longest = None, -1
    for seat in away:
        mine = _booked(seat.origin.output) if seat.origin.output is not None else None
        if mine is not None and tokens[: len(mine)] == mine and len(mine) > longest:
            found, longest = seat, len(mine)
    return found


def _booked(output: Sequence[int]) -> list[int]:
    """The tokens of an output list, without the V1 runner's -1 placeholders."""
    return [token for token in output if token >= 0]
