"""How much one request may ask for, and how many threads and streams a server gets.

The defaults live apart from the servicer and the server so that the command line can
show them in ``--help`` and check its flags against the same bounds.
"""

from __future__ import annotations

#: Default per-request cap on ``bytes_needed`` (1 MiB).
DEFAULT_MAX_BYTES_PER_REQUEST = 1 << 20
#: The largest cap a server accepts: one message must stay well under 2 GiB.
LARGEST_MAX_BYTES_PER_REQUEST = (1 << 31) - 1
#: Default size of the worker thread pool (each open stream holds one worker). Its 48
#: streams serve a few dozen vLLM replicas with one stream each; clients beyond that are
#: refused a stream and draw by unary calls (qr-source-grpc does so by itself).
DEFAULT_MAX_WORKERS = 64
#: Seconds a stream may wait for its next request before the server cancels it.
DEFAULT_STREAM_IDLE_TIMEOUT_S = 300.0


def default_max_streams(max_workers: int) -> int:
    """Three quarters of the workers: the rest (at least one) stay for unary calls and health."""
    return max_workers - max(1, max_workers // 4)


def validate_max_bytes_per_request(max_bytes_per_request: int) -> int:
    """Return the cap unchanged, or raise :class:`TypeError` / :class:`ValueError`."""
    # bool is an int subclass; True as a cap of one byte is a mistake, not a choice.
    if isinstance(max_bytes_per_request, bool) or not isinstance(max_bytes_per_request, int):
        raise TypeError(
            f"max_bytes_per_request must be an int, got {type(max_bytes_per_request).__name__}"
        )
    if not 1 <= max_bytes_per_request <= LARGEST_MAX_BYTES_PER_REQUEST:
        raise ValueError(
            f"max_bytes_per_request must be between 1 and {LARGEST_MAX_BYTES_PER_REQUEST}, "
            f"got {max_bytes_per_request}"
        )
    return max_bytes_per_request
