"""The contract every entropy source fulfils."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, NamedTuple


class EntropySource(ABC):
    """A supplier of random bytes.

    Implementations build their own settings from the environment, so core never
    needs to know anything about a particular source.
    """

    #: The name the source is registered under (``QR_ENTROPY_SOURCE_TYPE``).
    name: str

    @abstractmethod
    def get_random_bytes(self, n: int) -> bytes:
        """Return exactly ``n`` bytes or raise ``EntropyUnavailableError``.

        ``n == 0`` returns ``b""``; a negative ``n`` is a ``ValueError``.
        """

    def served_by(self) -> str | None:
        """Which server delivered the calling thread's last draw (for the records), for
        a source that spreads draws over several; None where there is only one."""
        return None

    def device_said(self) -> DeviceWord | None:
        """What the server or device said about the calling thread's last draw (for the
        records); None for a source whose protocol carries no such word."""
        return None

    def separate(self, key: tuple[int, ...]) -> None:  # noqa: B027 - most sources are not seeded
        """Move a seeded source to a stream of its own for ``key`` (engine rank, arm
        index), so that engines and arms sharing one seed never draw the same bytes.
        Sources that are not seeded have nothing to separate."""

    def token_bytes(self) -> TokenBytes | None:
        """What serves this source's bytes token by token, for a source whose bytes
        belong to particular tokens of particular requests (a replay by records);
        None for a source whose bytes go to whichever draw comes next."""
        return None

    def health_check(self) -> dict[str, Any]:
        """Describe the source's state; JSON-serialisable and free of secrets."""
        return {"source": self.name, "healthy": True}

    def close(self) -> None:  # noqa: B027 - most sources hold nothing to release
        """Release connections; safe to call more than once."""

    def __enter__(self) -> EntropySource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class DeviceWord(NamedTuple):
    """What a server says about bytes it delivered; each None where it said nothing."""

    #: The device that made the bytes, as the server names it (several, comma-separated,
    #: when a draw's pieces came from different devices).
    device_id: str | None = None
    #: When the bytes were made, in the server's own terms (the reference server: ns
    #: since the epoch), for the draw's first piece.
    timestamp: int | str | None = None
    #: The request number the server echoed, for the draw's first piece.
    sequence_id: int | None = None


class TokenKey(NamedTuple):
    """One token's share of a draw: its request, its index in that request's output,
    and how many bytes it takes."""

    request_id: str | None
    position: int | None
    size: int


class TokenBytes(ABC):
    """Bytes that belong to particular tokens, served to them whatever the batch."""

    @abstractmethod
    def claim(self, tag: str) -> str | None:
        """The request id a newly admitted request with ``tag`` takes over, so its
        tokens find their bytes; None when none is left to take."""

    @abstractmethod
    def bytes_for(self, tokens: Sequence[TokenKey]) -> bytes:
        """Each token's bytes, back to back in the order given, or
        ``EntropyUnavailableError`` naming the first token that has none."""


def check_byte_count(n: int) -> None:
    """Reject a negative request size with a message that names the value."""
    if n < 0:
        raise ValueError(f"cannot draw a negative number of bytes ({n})")
