"""One RPC exchange per mode: ask for up to ``count`` bytes per piece, get at least one
back for each.

A transport returns between 1 and ``count`` bytes per piece or raises a ``FetchError``;
topping up short replies, chunking, retries and the breaker are the source's business.
"""

from __future__ import annotations

import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TypeAlias

import grpc

from qr_source_grpc.failures import MalformedReplyError, TransportError, from_rpc_error
from qr_source_grpc.wire import decode_reply, encode_request

Metadata = tuple[tuple[str, str], ...]


class Transport(ABC):
    """Calls ``method`` (configured by the env variable ``setting``) on a channel."""

    def __init__(self, method: str, setting: str, metadata: Metadata) -> None:
        self.method = method
        self.setting = setting
        self._metadata = metadata

    def fetch(self, counts: Sequence[int], timeout_s: float) -> list[bytes]:
        """One reply per count, each cut to its count, within ``timeout_s`` per piece."""
        try:
            replies = self._exchange(counts, timeout_s)
        except grpc.RpcError as exc:
            raise from_rpc_error(
                exc, method=self.method, setting=self.setting, count=max(counts)
            ) from None
        return [reply[:count] for reply, count in zip(replies, counts, strict=True)]

    @abstractmethod
    def _exchange(self, counts: Sequence[int], timeout_s: float) -> list[bytes]:
        """For each count at least one byte (a server may send more than asked), or raise."""

    def close(self) -> None:  # noqa: B027 - only a transport that keeps a stream has state
        """Release what the transport holds beyond the channel."""


class _CallPerPiece(Transport):
    """A transport whose every piece is an RPC of its own."""

    def _exchange(self, counts: Sequence[int], timeout_s: float) -> list[bytes]:
        return [self._call_once(count, timeout_s) for count in counts]

    @abstractmethod
    def _call_once(self, count: int, timeout_s: float) -> bytes:
        """At least one byte or raise."""


class UnaryTransport(_CallPerPiece):
    """One unary call per exchange."""

    def __init__(
        self, channel: grpc.Channel, method: str, setting: str, metadata: Metadata
    ) -> None:
        super().__init__(method, setting, metadata)
        self._call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)

    def _call_once(self, count: int, timeout_s: float) -> bytes:
        raw = self._call(encode_request(count), timeout=timeout_s, metadata=self._metadata)
        return decode_reply(raw)


class ServerStreamingTransport(_CallPerPiece):
    """One request, then replies until ``count`` bytes have arrived or the stream ends.

    A single request message followed by half-close is the same on the wire whether the
    server declared a server-streaming or a bidirectional method, so this serves both.
    """

    def __init__(
        self, channel: grpc.Channel, method: str, setting: str, metadata: Metadata
    ) -> None:
        super().__init__(method, setting, metadata)
        self._call: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(method)

    def _call_once(self, count: int, timeout_s: float) -> bytes:
        replies = self._call(encode_request(count), timeout=timeout_s, metadata=self._metadata)
        received = bytearray()
        try:
            for raw in replies:
                received += decode_reply(raw)
                if len(received) >= count:
                    break
        finally:
            replies.cancel()  # a server that streams without end must stop sending
        if not received:
            raise MalformedReplyError(f"the stream {self.method} ended without a reply")
        return bytes(received)


_StreamItem: TypeAlias = "bytes | grpc.RpcError | None"


class _Stream:
    """One open bidirectional call: requests go in through a queue, a thread reads replies.

    The reader thread exists so that waiting for a reply can time out: gRPC's blocking
    iterator cannot, and the stream itself has no deadline because it outlives draws.
    """

    def __init__(
        self, call: grpc.StreamStreamMultiCallable[bytes, bytes], metadata: Metadata
    ) -> None:
        self._requests: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._replies: queue.SimpleQueue[_StreamItem] = queue.SimpleQueue()
        self._call = call(iter(self._requests.get, None), metadata=metadata)
        threading.Thread(target=self._read, name="qr-grpc-stream-reader", daemon=True).start()

    def _read(self) -> None:
        try:
            for raw in self._call:
                self._replies.put(raw)
        except grpc.RpcError as exc:
            self._replies.put(exc)
            return
        self._replies.put(None)

    def send(self, count: int) -> None:
        self._requests.put(encode_request(count))

    def receive(self, timeout_s: float) -> bytes:
        try:
            reply = self._replies.get(timeout=timeout_s)
        except queue.Empty:
            raise TransportError(
                f"DEADLINE_EXCEEDED: no reply on the stream within {timeout_s * 1000:.0f} ms"
            ) from None
        if isinstance(reply, grpc.RpcError):
            raise reply
        if reply is None:
            raise TransportError("the server closed the stream")
        return decode_reply(reply)

    def close(self) -> None:
        self._requests.put(None)  # ends the request iterator, so gRPC's sender thread exits
        self._call.cancel()


class BidiStreamingTransport(Transport):
    """One stream kept open across draws; any failure discards it and the next exchange
    opens a new one. Replies come back in request order, so exchanges take turns.

    A draw's pieces are all requested before the first reply is read, so the server
    produces one piece while the previous one crosses the wire.
    """

    def __init__(
        self, channel: grpc.Channel, method: str, setting: str, metadata: Metadata
    ) -> None:
        super().__init__(method, setting, metadata)
        self._call: grpc.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(method)
        self._lock = threading.Lock()
        self._stream: _Stream | None = None

    def _exchange(self, counts: Sequence[int], timeout_s: float) -> list[bytes]:
        with self._lock:
            if self._stream is None:
                self._stream = _Stream(self._call, self._metadata)
            stream = self._stream
            try:
                for count in counts:
                    stream.send(count)
                return [stream.receive(timeout_s) for _ in counts]
            except BaseException:
                # A late reply to this request would pair with the next one: start afresh.
                stream.close()
                self._stream = None
                raise

    def close(self) -> None:
        with self._lock:
            if self._stream is not None:
                self._stream.close()
                self._stream = None
