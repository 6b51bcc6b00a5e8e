"""One RPC exchange per mode: ask for up to ``count`` bytes per piece, get at least one
back for each.

A transport returns between 1 and ``count`` bytes per piece or raises a ``FetchError``;
topping up short replies, chunking, retries and the breaker are the source's business.

Every wait here ends by a deadline of the transport's own (``time.monotonic()``), not only
by gRPC's: a call whose gRPC deadline never fires (seen on a loaded machine) still gives
up on time. gRPC's blocking iterators cannot time out, so replies are read on a thread of
their own and handed over through a queue that can.
"""

from __future__ import annotations

import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import NamedTuple, cast

import grpc

from qr_source_grpc.failures import (
    DeadlineExceededError,
    FetchError,
    MalformedReplyError,
    OutOfTimeError,
    TransportError,
    from_rpc_error,
)
from qr_source_grpc.wire import REFERENCE_FIELDS, ReplyFields, Said, decode_reply, encode_request

Metadata = tuple[tuple[str, str], ...]

#: Initial-metadata key under which a server may name itself (the reference server
#: does): gRPC tells a client nothing of which balanced server answered a call.
SERVER_NAME_METADATA = "qr-entropy-server"


def server_name(call: grpc.Call) -> str:
    """The name a server gave itself on ``call``, or "" if it gave none."""
    for key, value in call.initial_metadata() or ():
        if key == SERVER_NAME_METADATA:
            return str(value)
    return ""


class Exchange(NamedTuple):
    """The pieces one exchange got, how long the server took (waits for a busy stream
    excluded), which is what the adaptive deadline learns from, and the names of the
    servers that answered ("" for one that does not name itself) and what each piece's
    reply said about its bytes, for the records."""

    pieces: list[bytes]
    latency_s: float
    servers: frozenset[str]
    said: tuple[Said, ...] = ()


class Transport(ABC):
    """Calls ``method`` (configured by the env variable ``setting``) on a channel."""

    def __init__(
        self, method: str, setting: str, metadata: Metadata, fields: ReplyFields = REFERENCE_FIELDS
    ) -> None:
        self.method = method
        self.setting = setting
        self._metadata = metadata
        self._fields = fields

    def fetch(self, counts: Sequence[int], timeout_s: float, give_up_at: float) -> Exchange:
        """One reply per count, each cut to its count, within ``timeout_s`` for the whole
        exchange and never past ``give_up_at`` (the draw's deadline, monotonic seconds)."""
        try:
            pieces, started, servers, said = self._exchange(counts, timeout_s, give_up_at)
        except grpc.RpcError as exc:
            raise from_rpc_error(
                exc, method=self.method, setting=self.setting, count=max(counts)
            ) from None
        cut = [reply[:count] for reply, count in zip(pieces, counts, strict=True)]
        return Exchange(cut, time.monotonic() - started, servers, said)

    @abstractmethod
    def _exchange(
        self, counts: Sequence[int], timeout_s: float, give_up_at: float
    ) -> tuple[list[bytes], float, frozenset[str], tuple[Said, ...]]:
        """For each count at least one byte (a server may send more than asked), the
        monotonic time the exchange started, the servers that answered and what each
        reply said; or raise."""

    def close(self) -> None:  # noqa: B027 - only a transport that keeps a stream has state
        """Release what the transport holds beyond the channel; never waits for a reply."""


def _remaining(deadline: float) -> float:
    """Seconds left until ``deadline``; raises once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceededError("DEADLINE_EXCEEDED: no time left for another call")
    return left


class _CallPerPiece(Transport):
    """A transport whose every piece is an RPC of its own."""

    def _exchange(
        self, counts: Sequence[int], timeout_s: float, give_up_at: float
    ) -> tuple[list[bytes], float, frozenset[str], tuple[Said, ...]]:
        started = time.monotonic()
        deadline = min(started + timeout_s, give_up_at)
        replies = [self._call_once(count, deadline) for count in counts]
        return (
            [data for data, _, _ in replies],
            started,
            frozenset(peer for _, peer, _ in replies),
            tuple(said for _, _, said in replies),
        )

    @abstractmethod
    def _call_once(self, count: int, deadline: float) -> tuple[bytes, str, Said]:
        """At least one byte by ``deadline``, the server that sent them and what it said
        about them; or raise."""


class UnaryTransport(_CallPerPiece):
    """One unary call per exchange."""

    def __init__(
        self,
        channel: grpc.Channel,
        method: str,
        setting: str,
        metadata: Metadata,
        fields: ReplyFields = REFERENCE_FIELDS,
    ) -> None:
        super().__init__(method, setting, metadata, fields)
        self._call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)

    def _call_once(self, count: int, deadline: float) -> tuple[bytes, str, Said]:
        left = _remaining(deadline)
        future = self._call.future(encode_request(count), timeout=left, metadata=self._metadata)
        try:
            raw = future.result(timeout=left)
        except grpc.FutureTimeoutError:
            future.cancel()
            raise DeadlineExceededError(
                f"DEADLINE_EXCEEDED: no reply from {self.method} within {left * 1000:.0f} ms"
            ) from None
        except grpc.FutureCancelledError:  # the channel was closed under the call
            raise TransportError(f"the call to {self.method} was cancelled") from None
        data, said = decode_reply(raw, self._fields)
        return data, server_name(future), said


_END = object()  # the server ended the call normally
_CLOSED = object()  # the client gave the call up


class _ReplyReader:
    """Reads one call's replies on a daemon thread so that waiting for the next one can
    end at a deadline; gRPC's own iterator waits for as long as the call lives."""

    def __init__(self, call: grpc.RpcContext, replies: Iterator[bytes]) -> None:
        self._call = call
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        threading.Thread(
            target=self._read, args=(replies,), name="qr-grpc-reply-reader", daemon=True
        ).start()

    def _read(self, replies: Iterator[bytes]) -> None:
        try:
            for raw in replies:
                self._queue.put(raw)
        except grpc.RpcError as exc:
            self._queue.put(exc)
            return
        self._queue.put(_END)

    def next(self, deadline: float) -> bytes | None:
        """The next reply, or None when the server ended the call; raises ``DeadlineExceededError``
        when nothing came by ``deadline``."""
        try:
            item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise DeadlineExceededError("DEADLINE_EXCEEDED: no reply on time") from None
        if isinstance(item, grpc.RpcError):
            raise item
        if item is _CLOSED:
            raise TransportError("the call was closed by the client (the source is closing)")
        if item is _END:
            return None
        return cast(bytes, item)

    def has_unread(self) -> bool:
        return not self._queue.empty()

    def close(self) -> None:
        """Cancel the call and wake whoever waits for a reply at once."""
        self._call.cancel()
        self._queue.put(_CLOSED)


class ServerStreamingTransport(_CallPerPiece):
    """One request, then replies until ``count`` bytes have arrived or the stream ends.

    A single request message followed by half-close is the same on the wire whether the
    server declared a server-streaming or a bidirectional method, so this serves both.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        method: str,
        setting: str,
        metadata: Metadata,
        fields: ReplyFields = REFERENCE_FIELDS,
    ) -> None:
        super().__init__(method, setting, metadata, fields)
        self._call: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(method)

    def _call_once(self, count: int, deadline: float) -> tuple[bytes, str, Said]:
        call = self._call(
            encode_request(count), timeout=_remaining(deadline), metadata=self._metadata
        )
        reader = _ReplyReader(call, call)
        received = bytearray()
        said: Said | None = None
        try:
            while len(received) < count:
                raw = reader.next(deadline)
                if raw is None:
                    break
                data, reply_said = decode_reply(raw, self._fields)
                received += data
                # The first reply speaks for the piece: it made the piece's first bytes.
                said = said or reply_said
        finally:
            reader.close()  # a server that streams without end must stop sending
        if not received:
            raise MalformedReplyError(f"the stream {self.method} ended without a reply")
        return bytes(received), server_name(call), said or Said()


class _Stream:
    """One open bidirectional call: requests go in through a queue, replies come out of a
    ``_ReplyReader``. The call has no gRPC deadline because it outlives draws.

    Requests are numbered from 1 in field 2. A server that echoes the number (as
    ``qr_entropy``'s ``sequence_id`` does) has each reply matched to its request, so a
    surplus reply is skipped instead of being taken for the answer to a later request. The
    echo is read from the reply's sequence field (``QR_GRPC_SEQUENCE_ID_FIELD``). The
    first reply tells whether the server echoes; a foreign protocol that uses that field
    for something else (a timestamp, say) is read in order.
    """

    def __init__(
        self,
        call: grpc.StreamStreamMultiCallable[bytes, bytes],
        metadata: Metadata,
        fields: ReplyFields,
    ) -> None:
        self._fields = fields
        self._requests: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        rendezvous = call(iter(self._requests.get, None), metadata=metadata)
        self._reader = _ReplyReader(rendezvous, rendezvous)
        self._rendezvous = rendezvous
        self._last_id = 0
        self._echoes: bool | None = None

    def exchange(self, counts: Sequence[int], deadline: float) -> list[tuple[bytes, Said]]:
        first = self._last_id + 1
        for count in counts:
            self._last_id += 1
            self._requests.put(encode_request(count, self._last_id))
        return [self._reply_to(first + i, deadline) for i in range(len(counts))]

    def _reply_to(self, sequence_id: int, deadline: float) -> tuple[bytes, Said]:
        while True:
            raw = self._reader.next(deadline)
            if raw is None:
                raise TransportError("the server closed the stream")
            data, said = decode_reply(raw, self._fields)
            echoed = said.sequence_id or 0
            if self._echoes is None:
                self._echoes = echoed == sequence_id
            if not self._echoes or echoed == sequence_id:
                return data, said
            if not 0 < echoed < sequence_id:
                raise TransportError(
                    f"a reply on the stream carries sequence_id {echoed}, which was never "
                    "sent; the stream is out of step"
                )
            # A second reply to an earlier request: its bytes predate this request.

    @property
    def server(self) -> str:
        """The server the stream is open to."""
        return server_name(self._rendezvous)

    def out_of_step(self) -> bool:
        """Something arrived that no request of an exchange has read: a surplus reply, or
        the end of the call. Its next reply could predate the next request."""
        return self._reader.has_unread()

    def close(self) -> None:
        self._requests.put(None)  # ends the request iterator, so gRPC's sender thread exits
        self._reader.close()


class BidiStreamingTransport(Transport):
    """One stream kept open across draws; exchanges take turns on it. Any failure, and any
    reply nobody asked for, discards the stream and the next exchange opens a new one.

    A draw's pieces are all requested before the first reply is read, so the server
    produces one piece while the previous one crosses the wire. Waiting for the stream
    counts against the draw's deadline, not against the exchange's timeout.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        method: str,
        setting: str,
        metadata: Metadata,
        fields: ReplyFields = REFERENCE_FIELDS,
    ) -> None:
        super().__init__(method, setting, metadata, fields)
        self._call: grpc.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(method)
        self._lock = threading.Lock()
        self._stream: _Stream | None = None
        self._closed = False

    def _exchange(
        self, counts: Sequence[int], timeout_s: float, give_up_at: float
    ) -> tuple[list[bytes], float, frozenset[str], tuple[Said, ...]]:
        if not self._lock.acquire(timeout=max(0.0, give_up_at - time.monotonic())):
            raise OutOfTimeError(
                "the stream stayed busy with other draws until this draw's deadline"
            )
        try:
            started = time.monotonic()
            stream = self._open_stream()
            try:
                replies = stream.exchange(counts, min(started + timeout_s, give_up_at))
            except BaseException:
                # A late reply to this request would pair with the next one: start afresh.
                self._discard(stream)
                raise
            return (
                [data for data, _ in replies],
                started,
                frozenset({stream.server}),
                tuple(said for _, said in replies),
            )
        finally:
            self._lock.release()

    def _open_stream(self) -> _Stream:
        if self._closed:
            raise FetchError("the source is closed")
        stream = self._stream
        if stream is not None and stream.out_of_step():
            self._discard(stream)
            stream = None
        if stream is None:
            stream = self._stream = _Stream(self._call, self._metadata, self._fields)
        return stream

    def _discard(self, stream: _Stream) -> None:
        stream.close()
        if self._stream is stream:
            self._stream = None

    def close(self) -> None:
        # Without the lock: a draw holding it may be waiting for a reply that never comes,
        # and closing its stream is what wakes it.
        self._closed = True
        stream = self._stream
        if stream is not None:
            self._discard(stream)
