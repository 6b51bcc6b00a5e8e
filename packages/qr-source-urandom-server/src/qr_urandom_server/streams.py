"""Keeps open streams from taking every worker thread, and knows when RPCs are done.

gRPC's synchronous server runs each open ``StreamEntropy`` call on a worker thread for
as long as the client keeps it open, idle or not. Without a cap, as many idle streams
as there are workers leave no thread for unary calls or the health service.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class OpenStream:
    """One open ``StreamEntropy`` call, as the watchdog sees it."""

    context: grpc.ServicerContext
    last_active: float = field(default_factory=time.monotonic)
    timed_out: bool = False

    def touch(self) -> None:
        self.last_active = time.monotonic()


class RpcTracker:
    """Counts entropy RPCs in flight, caps open streams, and cancels streams left idle.

    A stream is idle while it waits for the client's next request; one idle for
    ``idle_timeout_s`` is cancelled (the client sees ``CANCELLED`` and may open another).
    """

    def __init__(self, max_streams: int, idle_timeout_s: float) -> None:
        self.max_streams = max_streams
        self.idle_timeout_s = idle_timeout_s
        self._condition = threading.Condition()
        self._in_flight = 0
        self._streams: set[OpenStream] = set()
        self._closing = threading.Event()
        self._watchdog: threading.Thread | None = None

    @contextmanager
    def rpc(self) -> Iterator[None]:
        """Marks one entropy RPC as in flight for the duration of the block."""
        with self._condition:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._condition:
                self._in_flight -= 1
                self._condition.notify_all()

    @contextmanager
    def stream(self, context: grpc.ServicerContext) -> Iterator[OpenStream | None]:
        """Registers an open stream; yields ``None`` when the cap is reached."""
        opened = OpenStream(context)
        with self._condition:
            if len(self._streams) >= self.max_streams:
                admitted = None
            else:
                admitted = opened
                self._streams.add(opened)
                self._start_watchdog()
        try:
            yield admitted
        finally:
            with self._condition:
                self._streams.discard(opened)

    def _start_watchdog(self) -> None:
        if self._watchdog is None and self.idle_timeout_s > 0:
            self._watchdog = threading.Thread(
                target=self._watch, name="qr-urandom-server-idle-streams", daemon=True
            )
            self._watchdog.start()

    def _watch(self) -> None:
        period = min(1.0, self.idle_timeout_s / 4)
        while not self._closing.wait(period):
            now = time.monotonic()
            with self._condition:
                idle = [s for s in self._streams if now - s.last_active >= self.idle_timeout_s]
            for stream in idle:
                stream.timed_out = True
                logger.info(
                    "cancelling a StreamEntropy stream from %s: no request for %.0f s",
                    stream.context.peer(),
                    self.idle_timeout_s,
                )
                stream.context.cancel()

    def wait_until_done(self, timeout_s: float) -> bool:
        """Block until no entropy RPC is in flight, ``timeout_s`` passes, or :meth:`close`.

        True when every RPC finished.
        """
        deadline = time.monotonic() + timeout_s
        with self._condition:
            while self._in_flight and not self._closing.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                # Short waits, so that close() from a signal handler is seen promptly.
                self._condition.wait(min(left, 0.1))
            return self._in_flight == 0

    def close(self) -> None:
        """Stops the watchdog and wakes :meth:`wait_until_done`."""
        self._closing.set()
