"""Requests that vLLM preempts keep who they are when they come back.

Under memory pressure vLLM preempts a request: it leaves the batch and is later
admitted again, its output so far intact. Admitted afresh, it would get a new
request id and, under random arm assignment, perhaps another arm, in the middle of
its output. So every admitted request is remembered with its id, options (arm
included) and prompt, and a request that comes back takes them up again.

Neither runner hands a logits processor vLLM's request id, but both hand back the
request's own ``SamplingParams`` object when it returns, and that object is what a
request is known by here. It is held weakly: when vLLM lets the request go for
good, its entry goes with it.

- The V1 runner re-adds a preempted request through ``BatchUpdate.added`` (its
  cached request state survives preemption; the output list may be a new one
  under async scheduling) after removing it: a request out of the batch with the
  same parameters object is the one coming back.
- Model Runner V2 re-adds it with ``add_request``, having set the slot's
  ``prefill_len`` past its ``prompt_len`` (the output so far is refilled): only such
  a request is taken for a return. One preempted before its first token comes
  back as a new request, which changes nothing a record shows. Where workers get
  their own copy of the parameters (a multi-process executor), a return is not
  recognised on this runner.
"""

from __future__ import annotations

import weakref
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
    #: Whether the request is in the engine's batch now (only a request out of it
    #: can come back).
    seated: bool = True


class Readmissions:
    """Remembers each admitted request so that its return takes up the same seat."""

    def __init__(self) -> None:
        self._by_params: dict[int, tuple[weakref.ref[Any], _Seat]] = {}
        #: The same seats by their request's origin, for the V1 runner's removals.
        self._by_origin: dict[int, _Seat] = {}
        #: Requests that came back and kept their identity.
        self.resumed = 0

    def remember(self, table: RequestTable, slot: int, params: Any) -> None:
        """Note the request just seated in ``slot``, known by its ``params``."""
        origin, options = table.origins[slot], table.options[slot]
        if origin is None or options is None:
            return
        seat = _Seat(origin, options, table.prompts[slot])
        key, origin_key = id(params), id(origin)

        def forget(_: Any) -> None:
            self._by_params.pop(key, None)
            self._by_origin.pop(origin_key, None)

        try:
            ref = weakref.ref(params, forget)
        except TypeError:
            return  # parameters that cannot be held weakly give no identity to keep
        self._by_params[key] = (ref, seat)
        self._by_origin[origin_key] = seat

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
        returning: bool | None = None,
    ) -> bool:
        """Seat a returning request in ``slot`` as it was; False if it is new.
        ``returning``: the runner's word on whether it is a return (Model Runner V2);
        None: a request known and out of the batch is (the V1 runner)."""
        seat = self._returning(params, returning)
        if seat is None:
            return False
        if output is not None:
            seat.origin.output = output
        seat.seated = True
        table.put(slot, seat.options, seat.origin, seat.prompt)
        self.resumed += 1
        return True

    def _returning(self, params: Any, returning: bool | None) -> _Seat | None:
        entry = self._by_params.get(id(params))
        if entry is None or entry[0]() is not params:
            return None
        # Still seated: another request sharing one parameters object, not a return.
        back = not entry[1].seated if returning is None else returning
        return entry[1] if back else None
