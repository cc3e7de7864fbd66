"""The idempotent producer: a producer id, a sequence number per queue, a bounded window.

Every :class:`~herald.client.Client` is an idempotent producer. Its producer id
is random (one per client instance); it numbers its publishes to each queue 1,
2, 3, ... in the order they are sent. A number names one publish for good:
after a lost connection or a leader change, every publish that was not
confirmed is resent with the *same* producer id and number, in order, so the
broker recognises a publish that had landed and answers with its original
outcome (a receipt with ``duplicate=True``, or the same refusal) instead of
applying it twice. The client never gives a number it sent to another message.

This module is sans-IO, like the rest of the client core
(:mod:`herald.client.core`): it never reads a clock or touches a socket.

Why at most 1000 in flight per queue
------------------------------------

The broker remembers the outcomes of the last ``producer_window`` numbers of
each producer on each queue (1000 by default, the most a queue allows). A
retry of a number it still remembers gets its outcome back; a retry of an
older number is refused with ``ProducerSequenceStaleError``. A client with more
than 1000 publishes unconfirmed could, after a lost connection, retry a number
the broker has already forgotten. Keeping at most ``window`` (default 1000) in
flight per queue means every retry finds its outcome. Publishes beyond the
window wait in the client, in order, and are numbered when they are sent. (A
queue created with a smaller ``producer_window`` needs a client created with a
matching ``max_in_flight``.)

Refusals and gaps
-----------------

The broker records the outcome of a number the first time it applies it --
stored, or refused (message too large, queue full, ...) -- and answers every
retry of that number with the same outcome. So a refusal concerns its own
publish only: the client fails that publish with the broker's error and
nothing else. Later publishes already on the wire keep their numbers and get
their own answers (a pipeline of m1, m2, m3 where m1 is too large stores m2
and m3 and confirms exactly those). In particular:

- ``UnknownQueueError`` and ``QueueFullError`` fail their own publish only; a
  later publish is not failed on a guess (the queue may exist, or have room,
  by the time it lands).
- ``ProducerSequenceGapError``: the broker does not know the numbers before
  this one, so this publish was surely not stored (the error says so). It
  fails with that error. If it belongs to the producer's current identity,
  the client starts a fresh identity for that queue (``{id}.1``, ``{id}.2``,
  ..., numbered from 1) for the publishes *not yet numbered*; publishes
  already sent keep their numbers and their answers (they may meet the same
  gap: each then fails with it, surely not stored).
- ``ProducerSequenceStaleError``: the number is older than the broker's
  window. The publish was applied once, stored or refused, and the broker no
  longer remembers which: **the outcome is unknown**.
- An answer the client cannot read, or a refusal that is not the broker's
  (a protocol error): the publish fails, outcome unknown; its number stays
  used.

:meth:`QueueProducer.refused` is the one place that decides this (a test
subclass can put another policy back there).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from herald.broker.model import Durability
from herald.errors import (
    ConnectionClosedError,
    HeraldError,
    MessageTooLargeError,
    ProducerSequenceGapError,
    RequestTimeoutError,
)
from herald.wire.protocol import Publish

from ._ops import Call, encode
from .types import Receipt, durability

_DURABILITY = {d.value: d for d in Durability}

if TYPE_CHECKING:
    from .core import ClientCore

__all__ = ["PublishCall", "QueueProducer", "receipt_from"]

#: Upper bounds of a request id and a sequence number, for sizing a publish that
#: waits in the backlog (numbered later): msgpack's largest unsigned integers.
_MAX_INT = (1 << 64) - 1
#: Room for an identity suffix (".12345") a gap may add before it is numbered.
_SUFFIX = "." + "9" * 20


def receipt_from(value: Any) -> Receipt:
    """A publish reply's value as a Receipt: ``[queue, sequence, duplicate,
    durability, incarnation]`` (an older server sends no incarnation: 0)."""
    if len(value) > 4:
        return Receipt(value[0], value[1], value[2], durability(value[3]), value[4])
    return Receipt(value[0], value[1], value[2], durability(value[3]), 0)


class PublishCall(Call):
    """One publish: its message, its identity and number once sent."""

    __slots__ = ("body", "generation", "headers", "key", "producer", "seq")

    def __init__(
        self,
        producer: QueueProducer,
        deadline: int,
        body: bytes,
        headers: list[tuple[str, str]],
        key: str | None,
    ) -> None:
        # Call.__init__, spelled out (the hot path); the request is made when the
        # publish is numbered (QueueProducer.publish or send).
        self.done = False
        self.value = None
        self.error = None
        self.on_done = None
        self.tag = None
        self._listeners = None
        self.request = None
        self.id = 0
        self.data = b""
        self.deadline = deadline
        self.retry = True
        self.lost_sends = 0
        self.suspect = False
        self.forgotten = False
        self.seq = 0
        self.generation = 0
        self.producer = producer
        self.body = body
        self.headers = headers
        self.key = key

    def resolve(self, value: Any) -> None:
        # Raises on a malformed value before anything changed (an unknown
        # durability is a KeyError: the core answers it as a malformed reply).
        if len(value) > 4:
            receipt = Receipt(value[0], value[1], value[2], _DURABILITY[value[3]], value[4])
        else:
            receipt = Receipt(value[0], value[1], value[2], _DURABILITY[value[3]], 0)
        producer = self.producer
        producer.inflight.pop(self.id, None)
        if producer.backlog:
            producer.pump()
        if not self.done:  # Op.succeed, spelled out: this is the hot path
            self.done = True
            self.value = receipt
            callback = self.on_done
            if callback is not None:
                callback(self)
            if self._listeners is not None:
                self._call_listeners()

    def reject(self, error: HeraldError) -> None:
        self.producer.refused(self, error)

    def expire(self, timeout_error: RequestTimeoutError) -> bool:
        # The caller stops waiting, but the publish stays in flight: its number
        # names it for good, and later numbers depend on it reaching the broker.
        if self.lost_sends or self.producer.core.is_sent(self):
            self.fail(timeout_error)
        else:
            self.fail(
                RequestTimeoutError(
                    f"{timeout_error}; the publish stays queued in the client and is "
                    "sent when a leader is reachable, so the outcome is unknown"
                )
            )
        return False

    def lost(self, error: ConnectionClosedError) -> None:
        # Only when the client closes (publishes are resent on a new connection).
        self.producer.inflight.pop(self.id, None)
        self.fail(error)


class QueueProducer:
    """The producer state of one client for one queue: its identity, its next
    number, the publishes in flight (by request id, so in number order) and those
    waiting for room in the window (numbered when sent)."""

    __slots__ = (
        "backlog",
        "base",
        "core",
        "generation",
        "inflight",
        "next_seq",
        "producer",
        "queue",
        "window",
    )

    def __init__(self, core: ClientCore, queue: str, producer: str, window: int) -> None:
        self.core = core
        self.queue = queue
        self.base = producer
        self.producer = producer
        self.generation = 0
        self.next_seq = 1
        self.window = window
        #: Numbered and unconfirmed, by request id (so in the order they were numbered).
        self.inflight: dict[int, PublishCall] = {}
        #: Waiting for room in the window; numbered when sent.
        self.backlog: deque[PublishCall] = deque()

    # -- sending ------------------------------------------------------------------------

    def publish(self, call: PublishCall) -> None:
        """Number and send ``call``, or queue it behind the window. Raises
        MessageTooLargeError (nothing changed) if it cannot fit in a frame."""
        inflight = self.inflight
        if len(inflight) < self.window and not self.backlog:
            # send(call), spelled out: this is the hot path.
            core = self.core
            seq = self.next_seq
            rid = core._next_id
            core._next_id = rid + 1
            request = Publish(
                rid, self.queue, call.body, call.headers, call.key, self.producer, seq
            )
            call.request = request
            call.id = rid
            call.data = encode(request)
            call.seq = seq
            call.generation = self.generation
            inflight[rid] = call
            try:
                core.register(call)
            except MessageTooLargeError:
                del inflight[rid]
                raise
            self.next_seq = seq + 1
            return
        bound = Publish(
            _MAX_INT,
            self.queue,
            call.body,
            call.headers,
            call.key,
            self.producer + _SUFFIX,
            _MAX_INT,
        )
        self.core.check_fits(bound)
        self.backlog.append(call)
        self.core.watch_deadline(call.deadline)

    def send(self, call: PublishCall) -> None:
        """Give ``call`` the next number of the current identity and send it.
        Raises MessageTooLargeError (nothing changed) if it cannot fit in a frame."""
        core = self.core
        seq = self.next_seq
        rid = core._next_id
        core._next_id = rid + 1
        request = Publish(rid, self.queue, call.body, call.headers, call.key, self.producer, seq)
        call.request = request
        call.id = rid
        call.data = encode(request)
        call.seq = seq
        call.generation = self.generation
        self.inflight[call.id] = call
        try:
            core.register(call)
        except MessageTooLargeError:
            del self.inflight[call.id]
            raise
        self.next_seq = seq + 1

    def pump(self) -> None:
        """Send backlogged publishes while the window has room."""
        backlog = self.backlog
        inflight = self.inflight
        window = self.window
        while backlog and len(inflight) < window:
            call = backlog.popleft()
            if call.done:
                continue  # timed out while waiting: never numbered, never sent
            try:
                self.send(call)
            except MessageTooLargeError as error:  # the frame limit shrank meanwhile
                call.fail(error)

    def new_identity(self) -> None:
        """Number the publishes not yet numbered under a fresh identity, from 1."""
        self.generation += 1
        self.producer = f"{self.base}.{self.generation}"
        self.next_seq = 1

    # -- answers ------------------------------------------------------------------------

    def settled(self, call: PublishCall) -> None:
        """``call`` was confirmed: its place in the window is free."""
        self.inflight.pop(call.id, None)
        if self.backlog:
            self.pump()

    def refused(self, call: PublishCall, error: HeraldError) -> None:
        """The broker (or the server) answered ``call`` with ``error``.

        A number names one publish and its outcome is recorded by the broker, so
        only ``call`` fails; the publishes after it keep their numbers and get
        their own answers. A gap in the current identity starts a fresh one for
        the publishes not yet numbered. See the module docstring.
        """
        self.inflight.pop(call.id, None)
        call.fail(error)
        if isinstance(error, ProducerSequenceGapError) and call.generation == self.generation:
            self.new_identity()
        self.pump()

    # -- time and the end ---------------------------------------------------------------

    def sweep(self, now: int) -> int | None:
        """Fail backlogged publishes whose deadline passed (they were never sent,
        never numbered: not published). Returns the next backlog deadline."""
        backlog = self.backlog
        while backlog and (backlog[0].deadline <= now or backlog[0].done):
            call = backlog.popleft()
            call.fail(
                RequestTimeoutError(
                    f"not sent within the timeout: {len(self.inflight)} publishes to "
                    f"{self.queue!r} were ahead of it in flight (not published)"
                )
            )
        return backlog[0].deadline if backlog else None

    def close(self, error: ConnectionClosedError) -> None:
        for call in [*self.inflight.values(), *self.backlog]:
            call.fail(error)
        self.inflight.clear()
        self.backlog.clear()

    def unfinished(self) -> list[PublishCall]:
        """The publishes whose caller still waits (in flight or backlogged)."""
        return [c for c in [*self.inflight.values(), *self.backlog] if not c.done]

    @property
    def in_flight(self) -> int:
        """Numbered and unconfirmed, plus waiting to be numbered."""
        return len(self.inflight) + len(self.backlog)
