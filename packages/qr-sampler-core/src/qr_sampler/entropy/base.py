"""The contract every entropy source fulfils."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


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

    def health_check(self) -> dict[str, Any]:
        """Describe the source's state; JSON-serialisable and free of secrets."""
        return {"source": self.name, "healthy": True}

    def close(self) -> None:  # noqa: B027 - most sources hold nothing to release
        """Release connections; safe to call more than once."""

    def __enter__(self) -> EntropySource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def check_byte_count(n: int) -> None:
    """Reject a negative request size with a message that names the value."""
    if n < 0:
        raise ValueError(f"cannot draw a negative number of bytes ({n})")
