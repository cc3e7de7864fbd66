"""The idempotent producer: a producer id, a sequence number per queue, a bounded window.

Every :class:`~herald.client.Client` is an idempotent producer. Its producer id
is random (one per client instance); it numbers its publishes to each queue 1,
2, 3, ... in the order they are sent. After a lost connection or a leader
change, every publish that was not confirmed is resent with the *same* producer
id and number, in order, so the broker recognises a publish that had landed and
answers with its original receipt (``duplicate=True``) instead of storing it
twice.

Why at most 1000 in flight per queue
------------------------------------

The broker remembers the receipts of the last ``producer_window`` publishes of
each producer to each queue (1000 by default, the most a queue allows). A
retry of a number it still remembers gets its receipt back; a retry of an
older number is refused with ``ProducerSequenceStaleError`` (it *was*
published, but its receipt is gone). A client with more than 1000 publishes
unconfirmed could, after a lost connection, retry a number the broker has
already forgotten. Keeping at most ``window`` (default 1000) in flight per
queue means every retry finds its receipt. Publishes beyond the window wait in
the client, in order, and are numbered when they are sent. (A queue created
with a smaller ``producer_window`` needs a client created with a matching
``max_in_flight``.)

Refusals and gaps
-----------------

The broker accepts a producer's numbers only in order and refuses a gap, so a
refused publish (message too large, queue full, ...) leaves its number unused
and dooms every later number already on the wire. The client knows that: it
fails the refused publish and resends the later ones renumbered from the
unused number (or, for an unknown queue or a full one, fails them too: they
would have been refused as well). A gap the client did not cause (the broker
lost track of the producer) starts a fresh producer identity for that queue,
numbered from 1, beginning with the publish that met the gap: that publish
and everything after it was surely not published.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from herald.errors import (
    BrokerError,
    ConnectionClosedError,
    HeraldError,
    ProducerSequenceGapError,
    ProducerSequenceStaleError,
    QueueFullError,
    RequestTimeoutError,
    UnknownQueueError,
)
from herald.wire.protocol import Publish

from ._session import Call, Session
from .types import Receipt, durability

__all__ = ["PublishCall", "QueueProducer"]


class PublishCall(Call):
    """One publish: its message, its number once sent, and the caller's future."""

    __slots__ = ("body", "generation", "headers", "key", "seq", "state")

    def __init__(
        self,
        state: QueueProducer,
        future: asyncio.Future[Receipt],
        deadline: float,
        body: bytes,
        headers: list[tuple[str, str]],
        key: str | None,
    ) -> None:
        Call.__init__(self, None, future, deadline, True)
        self.state = state
        self.body = body
        self.headers = headers
        self.key = key
        self.seq = 0
        self.generation = 0

    def resolve(self, value: Any) -> None:
        self.state._settled(self)
        future = self.future
        if future is not None and not future.done():
            future.set_result(Receipt(value[0], value[1], value[2], durability(value[3])))

    def reject(self, error: HeraldError) -> None:
        self.state._refused(self, error)

    def fail(self, error: HeraldError) -> None:
        future = self.future
        if future is not None and not future.done():
            future.set_exception(error)

    def lost(self, error: ConnectionClosedError) -> None:
        # Only when the client closes (publishes are retried on a new connection).
        self.state.inflight.pop(self.id, None)
        self.fail(error)

    def expire(self, timeout_error: RequestTimeoutError) -> bool:
        # The caller stops waiting, but the publish stays in flight: later numbers
        # depend on this one reaching the broker.
        self.fail(timeout_error)
        return False


class QueueProducer:
    """The producer state of one client for one queue."""

    __slots__ = (
        "backlog",
        "base",
        "generation",
        "inflight",
        "next_seq",
        "producer",
        "queue",
        "session",
        "window",
    )

    def __init__(self, session: Session, queue: str, producer: str, window: int) -> None:
        self.session = session
        self.queue = queue
        self.base = producer
        self.producer = producer
        self.generation = 0
        self.next_seq = 1
        self.window = window
        #: Sent and unconfirmed, by request id (so in the order they were numbered).
        self.inflight: dict[int, PublishCall] = {}
        #: Waiting for room in the window; numbered when sent.
        self.backlog: deque[PublishCall] = deque()

    def publish(self, call: PublishCall) -> None:
        if len(self.inflight) < self.window and not self.backlog:
            self._send(call)
        else:
            self.backlog.append(call)

    def _send(self, call: PublishCall) -> None:
        session = self.session
        seq = self.next_seq
        self.next_seq = seq + 1
        rid = session.new_id()
        call.id = rid
        call.seq = seq
        call.generation = self.generation
        call.request = Publish(
            rid, self.queue, call.body, call.headers, call.key, self.producer, seq
        )
        self.inflight[rid] = call
        session.submit(call, len(call.body) + 96)

    def _pump(self) -> None:
        backlog = self.backlog
        inflight = self.inflight
        window = self.window
        while backlog and len(inflight) < window:
            call = backlog.popleft()
            future = call.future
            if future is not None and future.done():
                continue  # timed out while waiting: never numbered, never sent
            self._send(call)

    def _settled(self, call: PublishCall) -> None:
        del self.inflight[call.id]
        if self.backlog:
            self._pump()

    def _later(self, call: PublishCall) -> list[PublishCall]:
        """The calls of ``call``'s identity numbered after it, in number order; they
        leave the window and the session forgets their request ids."""
        later = [
            c
            for c in self.inflight.values()
            if c.generation == call.generation and c.seq > call.seq
        ]
        later.sort(key=_seq)
        for c in later:
            del self.inflight[c.id]
            self.session.forget(c.id)
        return later

    def _refused(self, call: PublishCall, error: HeraldError) -> None:
        self.inflight.pop(call.id, None)
        current = call.generation == self.generation
        if isinstance(error, ProducerSequenceStaleError):
            # Published long ago; only its receipt is forgotten. The number is used.
            call.fail(error)
        elif isinstance(error, ProducerSequenceGapError):
            # The broker does not know the numbers before this one: none of this
            # call and the ones after it was published. Start a fresh identity.
            later = self._later(call)
            self.generation += 1
            self.producer = f"{self.base}.{self.generation}"
            self.next_seq = 1
            for c in [call, *later]:
                if c.future is None or not c.future.done():
                    self._send(c)
        elif isinstance(error, (UnknownQueueError, QueueFullError)):
            # Every later number on the wire meets the same refusal (or a gap).
            later = self._later(call)
            if current:
                self.next_seq = call.seq
            call.fail(error)
            for c in later:
                c.fail(_same(error))
        elif not isinstance(error, BrokerError):
            # Not the broker's refusal (a reply this client cannot read, say): the
            # outcome is unknown, so the number stays used. Should it not have
            # been published, the next number meets a gap, handled above.
            call.fail(error)
        else:
            # A refusal of this message alone: its number is free again, and the
            # later ones, doomed to a gap, go again renumbered.
            later = self._later(call)
            if current:
                self.next_seq = call.seq
            call.fail(error)
            for c in later:
                if c.future is None or not c.future.done():
                    self._send(c)
        self._pump()

    def sweep(self, now: float) -> None:
        """Fail backlogged publishes whose deadline passed (they were never sent)."""
        backlog = self.backlog
        while backlog and backlog[0].deadline <= now:
            call = backlog.popleft()
            call.fail(
                RequestTimeoutError(
                    f"not sent within the timeout: {len(self.inflight)} publishes to "
                    f"{self.queue!r} were ahead of it in flight (not published)"
                )
            )

    def close(self, error: ConnectionClosedError) -> None:
        for call in [*self.inflight.values(), *self.backlog]:
            call.fail(error)
        self.inflight.clear()
        self.backlog.clear()

    def futures(self) -> list[asyncio.Future[Any]]:
        return [
            c.future
            for c in [*self.inflight.values(), *self.backlog]
            if c.future is not None and not c.future.done()
        ]


def _seq(call: PublishCall) -> int:
    return call.seq


def _same(error: HeraldError) -> HeraldError:
    """A fresh exception of ``error``'s class and message (one instance per future)."""
    clone = type(error).__new__(type(error))
    Exception.__init__(clone, *error.args)
    clone.__dict__.update(error.__dict__)
    return clone
