"""A bound entropy server: start it, stop it gracefully, or abort it.

:func:`qr_urandom_server.launch.create_server` builds one; this module only runs it.
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Any

import grpc

from qr_urandom_server.addresses import dial_address, is_local_only
from qr_urandom_server.servicer import SERVICE_NAME, EntropyServicer

logger = logging.getLogger(__name__)


class EntropyServer:
    """A bound ``grpc.Server`` serving ``qr_entropy.EntropyService`` plus health/reflection.

    ``port`` is the bound TCP port (0 for unix sockets); ``address`` is the target a local
    client dials. Use as a context manager (start on enter, stop on exit) or call
    :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        *,
        server: grpc.Server,
        executor: futures.ThreadPoolExecutor,
        servicer: EntropyServicer,
        health_servicer: Any,
        bind_address: str,
        port: int,
        api_key_required: bool = False,
        tls: bool = False,
    ) -> None:
        self.server = server
        self.servicer = servicer
        self.health_servicer = health_servicer
        self.bind_address = bind_address
        self.port = port
        self.address = dial_address(bind_address, port)
        self._executor = executor
        self._stopped = False
        self.api_key_required = api_key_required
        self.tls = tls

    def start(self) -> None:
        """Start serving (returns immediately)."""
        self.server.start()
        logger.info(
            "serving %s on %s (max_bytes_per_request=%d, device_id=%r)",
            SERVICE_NAME,
            self.address,
            self.servicer.max_bytes_per_request,
            self.servicer.device_id,
        )
        if not (self.api_key_required and self.tls) and not is_local_only(self.bind_address):
            logger.warning(
                "%s is reachable from the network without %s: anyone who can reach it can "
                "%s. Set an API key and TLS, or listen on 127.0.0.1 or a unix socket",
                self.bind_address,
                " or ".join(
                    name
                    for name, on in (("an API key", self.api_key_required), ("TLS", self.tls))
                    if not on
                ),
                "draw bytes from it" if not self.api_key_required else "read the bytes it sends",
            )

    def stop(self, grace: float | None = None) -> None:
        """Stop serving and block until done.

        Health turns NOT_SERVING first. For up to ``grace`` seconds the server then goes on
        answering, health included, until no entropy RPC is in flight; what is still open
        after that is cancelled (``None`` or 0: at once). :meth:`abort` cuts it short.
        """
        if self._stopped:
            return
        self._stopped = True
        if self.health_servicer is not None:
            self.health_servicer.enter_graceful_shutdown()
        if grace:
            self.servicer.tracker.wait_until_done(grace)
        self.servicer.tracker.close()
        self.server.stop(None).wait()
        self._executor.shutdown(wait=False)
        logger.info("stopped serving on %s", self.address)

    def abort(self) -> None:
        """Cancel every RPC at once, also during a graceful :meth:`stop` in another frame."""
        self.servicer.tracker.close()
        self.server.stop(None)

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Block until the server stops or ``timeout`` passes; True if it timed out."""
        timed_out: bool = self.server.wait_for_termination(timeout)
        return timed_out

    def __enter__(self) -> EntropyServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop(None)

    def __repr__(self) -> str:
        return f"EntropyServer(address={self.address!r})"
