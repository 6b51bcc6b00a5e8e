"""Which request a token belongs to, where in that request's output it sits, and a
fingerprint of the bytes that chose it.

vLLM hands logits processors no request id, so qr-sampler numbers requests itself
as they are admitted: a prefix unique to this process plus an admission counter.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field


class RequestIds:
    """Ids unique for the life of the server:
    ``dp<rank>-<pid hex><random hex>-<admission number>``.

    The data-parallel rank keeps the ids of a run's engine processes apart; the random
    part keeps ids from two server runs (or two replicas) apart even when the operating
    system reuses a process id.
    """

    def __init__(self, dp_rank: int = 0) -> None:
        self.prefix = f"dp{dp_rank}-{os.getpid():x}{secrets.token_hex(3)}"
        self._counter = itertools.count()

    def new(self) -> str:
        return f"{self.prefix}-{next(self._counter)}"


@dataclass
class Origin:
    """One admitted request: its id and how to tell the position of its next token.

    ``output`` is the engine's own list of the request's output tokens, which the
    engine extends after every step (vLLM's V1 runner hands it over in
    ``BatchUpdate.added``, placeholders for tokens still in flight included): its
    length *is* the position of the token being sampled. Without it (and without
    positions from the engine), the request's recorded tokens are counted.
    """

    request_id: str
    output: Sequence[int] | None = None
    _counted: int = field(default=0, repr=False)
    #: The position of its next token as the engine last said (Model Runner V2), kept
    #: here once the request has left its slot.
    engine_position: int = field(default=0, repr=False)

    def position(self) -> int:
        """The position of the token being sampled, not yet counted as recorded."""
        return len(self.output) if self.output is not None else self._counted

    def next_position(self) -> int:
        position = self.position()
        self._counted += 1
        return position


def sha256_hex(data: bytes | memoryview) -> str:
    """The ``entropy_sha256`` of a token: hex SHA-256 of exactly its bytes."""
    return hashlib.sha256(data).hexdigest()
