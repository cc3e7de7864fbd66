"""The broker state machine: queues, idempotent publishing, leases, dead letters.

:class:`Broker` implements the node host's ``StateMachine`` port. It is sans-IO
and deterministic: its state is a pure function of the commands it applied, so
every replica that applied the same log holds the same state and takes
byte-identical snapshots.

What goes through the log
-------------------------

**Every state change is a command in the log**, stamped by the leader with its
clock: publish, deliver (the lease grant), ack, nack, extend, reject, consumer
subscribe/heartbeat/leave, redrive, purge, queue and group administration, and
a :class:`~herald.broker.commands.Tick` the leader proposes when a timer is
due (see :meth:`Broker.next_timer`; and once a second) so time moves when
nothing else happens. Nothing is decided on the leader alone.

Why deliveries, too, and not only publishes and acks: a lease that lived only
in a leader's memory would die with that leader. Its successor would not know
the message had been delivered, so it would deliver it again *as a first
delivery* with attempt 1 -- attempt counts would go backwards and
``max_deliveries`` would not hold -- and it would not know which fencing
tokens were live, so it could not refuse a stale ack. With the grant in the
log, a delivery is handed to a consumer only once it is committed; after a
failover the new leader knows every lease, every attempt count and every
token. An at-most-once delivery settles the message in the very entry that
delivers it, so no later leader can deliver it again. The cost is one
replicated entry per ``Deliver`` (which leases a batch) and per ack; batching
amortises both.

Time
----

The state machine's clock is the largest command timestamp it has applied; it
never goes backwards, whatever the leaders' clocks do. Before a command takes
effect, the clock advances to its timestamp and every timer due by then fires,
in the order (due time, kind, names, numbers) -- a function of the state
alone. Timers: a lease reaching its deadline (redelivery with reason
``expired``, or the dead letters once the attempts are used up), a delayed
nack becoming ready, a consumer session expiring (its leases come back with
reason ``consumer_gone``), idempotency keys and idle producers aging out.
Deadlines are computed from the state's clock. A leader whose clock lags can
only delay expiries; one whose clock runs ahead expires leases early in real
time, which costs redeliveries (counted, marked, with the old token fenced
off), never safety.

A :class:`~herald.broker.commands.Batch` is not a moment: its own timestamp
(when the leader proposed it) moves nothing and fires no timer. Each inner
command advances the clock to its own time, exactly as if it had its own
entry. Advancing to the batch's time first would apply an ack stamped before
its lease's deadline *after* that deadline, in a batch proposed just past it,
and refuse it as stale although it arrived in time. (``_batch`` is the one
place a test subclass has to change to put that bug back.)

A command the broker refuses (every :class:`~herald.errors.BrokerError`) is
answered with that error as its result, identically on every replica, and
changes nothing -- except the clock advance its timestamp carries, which is
exactly what a ``Tick`` with the same timestamp would do, and except that a
refused publish of an idempotent producer consumes its number (below).

Idempotent producers
--------------------

A producer numbers its publishes to one queue 1, 2, 3, ... A number names one
publish: the first time the broker applies it decides its outcome -- stored, a
duplicate of an idempotency key, or refused (too large, queue full: any
refusal once the queue is found) -- and the broker remembers that outcome.
Per producer and queue it keeps the last number and the outcomes of the last
``producer_window`` numbers (default 1000, the client's in-flight limit),
refusals counted like the others:

- the next number (last + 1) is applied, and its outcome recorded, refusal
  or not: a refusal creates the producer if it was unknown and advances its
  last number, like a stored message;
- a remembered number is a retry, answered with exactly its outcome: the
  original receipt with ``duplicate=True``, or an error equal to the original
  refusal (same class, same message and attributes), even across a snapshot.
  Nothing is applied again; a refused number stays refused, so the producer
  publishes that body again under a new number if it wants to;
- an older number is refused with ``ProducerSequenceStaleError``: it was
  applied (stored or refused) and the broker no longer remembers which, so
  its outcome is unknown;
- a gap (a known producer, number > last + 1) is refused with
  ``ProducerSequenceGapError`` naming the expected number, and records
  nothing. Refusing gaps keeps a producer's messages in order and means a lost
  request is never silently skipped: the producer resends from the gap.
- an unknown queue is refused with ``UnknownQueueError`` and records nothing:
  there is no queue to remember it in.

Why recording refusals matters: a client pipelines publishes 1, 2, 3. If a
refusal of 1 left the number free, 2 would be taken as the first number of
the producer, and a client that then reused the free number for the next
message would have that message answered with another's receipt -- a
confirmed publish that was never stored. With refusals recorded, every number
has one outcome for good, and a client never renumbers a publish it sent.

Any number is accepted as the *first* number of a producer the broker does
not know: a client whose producer was forgotten after ``producer_ttl``, or
whose queue was deleted and created again, goes on numbering where it was.
That is safe because a producer's numbers reach the log in the order the
client sent them: the client sends in order, on one connection at a time, and
resends in order, never renumbering; the server never lets a later write of
a connection overtake an earlier one it turned away. So when number n of a
producer is applied, every number the client sent before n was applied before
it, and -- refusals consuming numbers -- recorded. If the producer is unknown
at n, n is its first number or the broker forgot the producer since; either
way no lower number can still be "free" behind n, waiting to be applied and
answered with a receipt that is not its own. (A lower number arriving anyway
is refused as stale.)

A producer unheard of for ``producer_ttl`` (default 24 h) is forgotten,
whether its window holds receipts or refusals; a retry arriving after that is
applied again. That is the price of bounded memory.

Idempotency keys
----------------

A message id, when given, is remembered for the queue's ``dedup_ttl`` (24 h by
default, or forever) from the original publish; a publish with a remembered id
returns the original receipt with ``duplicate=True``, even after the original
message was consumed or purged. Expired keys are dropped when their timer
fires, deterministically.

Leases and tokens
-----------------

A delivery of an at-least-once consumer is a lease (sequence, attempt,
deadline, token). Ack, nack, extend and reject must show the live token; an
ended lease's token is refused with ``StaleLeaseError`` (fencing), a token
never issued for that message with ``UnknownDeliveryError``, and any token of
a message already settled (acked, dead-lettered, purged) with
``AlreadySettledError``. Deliver serves redeliveries first (lowest sequence
first), then first deliveries in queue order. At-most-once consumers take
first deliveries only: nothing they receive was, or will be, delivered to
anyone else in their group.

Consumer groups
---------------

Each group receives every message (fan-out); the consumers of a group compete
for its messages. A new group starts at the oldest message the queue retains. A
message is retained until every group has settled it; a queue without any
group retains everything it is sent (up to its limits).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import replace
from itertools import islice
from typing import Any, Final, TypeAlias

from herald.errors import (
    AlreadySettledError,
    BrokerError,
    InvalidCommandError,
    MalformedCommandError,
    MessageTooLargeError,
    ProducerSequenceGapError,
    ProducerSequenceStaleError,
    QueueExistsError,
    QueueFullError,
    StaleLeaseError,
    UnknownConsumerError,
    UnknownDeadLetterError,
    UnknownDeliveryError,
    UnknownGroupError,
    UnknownMessageError,
    UnknownQueueError,
)
from herald.raft import Entry, EntryKind

from . import snapshot as _snapshot
from .codec import Span, decode_entry, decode_publish
from .commands import (
    Ack,
    AckMany,
    Batch,
    Carry,
    Command,
    CreateQueue,
    DeleteGroup,
    DeleteQueue,
    Deliver,
    Extend,
    Heartbeat,
    Leave,
    Nack,
    Publish,
    PurgeQueue,
    Redrive,
    Reject,
    Subscribe,
    Tick,
)
from .index import Backlog
from .model import (
    Acked,
    AckedMany,
    BatchResult,
    DeadLetter,
    DeadLetterReason,
    Deliveries,
    Delivery,
    DeliveryMode,
    Durability,
    Extended,
    GroupDeleted,
    GroupStats,
    Left,
    Message,
    MovedForward,
    Nacked,
    Peeked,
    PeekState,
    QueueCreated,
    QueueDeleted,
    QueueOptions,
    QueuePurged,
    QueueStats,
    Receipt,
    RedeliveryReason,
    Redriven,
    Rejected,
    Session,
    Ticked,
    message_size,
)
from .state import (
    DELAYED,
    LEASED,
    READY,
    T_DELAY,
    T_KEYS,
    T_LEASE,
    T_PRODUCERS,
    T_SESSION,
    Attempt,
    BrokerState,
    Consumer,
    Group,
    Outcome,
    Pending,
    Producer,
    Queue,
    Refusal,
    Timer,
)
from .stored import EntryReader, MessageRef

__all__ = ["PEEK_LIMIT", "Broker", "Result"]

#: What applying one command yields: a value, or the BrokerError refusing it.
Result: TypeAlias = (
    Ticked
    | QueueCreated
    | QueueDeleted
    | QueuePurged
    | Receipt
    | Session
    | Left
    | Deliveries
    | Acked
    | AckedMany
    | Nacked
    | Extended
    | Rejected
    | Redriven
    | GroupDeleted
    | MovedForward
    | BatchResult
    | BrokerError
)

_REPLICATED = Durability.REPLICATED
#: What a publish applied with answered=False returns: nobody reads it.
_UNANSWERED: Final = Receipt("", 0, False, _REPLICATED, 0)
_AT_MOST_ONCE = DeliveryMode.AT_MOST_ONCE
_AT_LEAST_ONCE = DeliveryMode.AT_LEAST_ONCE
# Stale timers are swept out of the heap once they are this many, and half of it.
_SWEEP_AT = 4096
#: The most messages one peek shows (and what a limit of 0 or less means).
PEEK_LIMIT: Final = 1000
_PEEK_STATES: Final[dict[int, PeekState]] = {LEASED: "leased", READY: "ready", DELAYED: "delayed"}


class Broker:
    """The replicated queue state machine. Not thread-safe; one host drives it."""

    __slots__ = (
        "_answered",
        "_garbage",
        "_handlers",
        "_spans",
        "_state",
        "applied_index",
        "reader",
    )

    def __init__(self, reader: EntryReader | None = None) -> None:
        self._state = BrokerState()
        self.applied_index = 0
        #: Reads a committed entry's data back from the log: message bodies stay
        #: there, and are read when a delivery, peek or dead letter is looked at.
        self.reader = reader
        #: While an entry is applied: where each of its commands is in its data (see
        #: _where); None outside apply.
        self._spans: list[Span] | None = None
        self._garbage = 0  # an estimate of the stale timers in the heap
        self._answered = True  # see apply
        self._handlers: dict[type[Command], Callable[[Any], Result]] = {
            Publish: self._publish,
            Deliver: self._deliver,
            Ack: self._ack,
            AckMany: self._ack_many,
            Tick: self._tick,
            Nack: self._nack,
            Extend: self._extend,
            Reject: self._reject,
            Heartbeat: self._heartbeat,
            Subscribe: self._subscribe,
            Leave: self._leave,
            CreateQueue: self._create_queue,
            DeleteQueue: self._delete_queue,
            PurgeQueue: self._purge_queue,
            Redrive: self._redrive,
            Carry: self._carry,
            DeleteGroup: self._delete_group,
            Batch: self._batch,
        }

    # -- the StateMachine port ------------------------------------------------------------

    def apply(self, entry: Entry, *, answered: bool = True) -> Result:
        """Apply one committed entry. Never raises for bad input: an undecodable entry
        yields a MalformedCommandError result, a refused command its BrokerError.

        ``answered=False``: nobody reads the results (a follower applying the
        leader's entries), so a Deliver returns no deliveries and builds none, and
        a stored publish returns one shared placeholder receipt. The state changes
        exactly as with ``answered=True``; only the results differ.
        """
        self.applied_index = entry.index
        if entry.kind != EntryKind.NORMAL:
            return Ticked(self._state.now)
        try:
            command, spans = decode_entry(entry.data)
        except MalformedCommandError as error:
            return error
        if answered:
            return self.apply_decoded(entry.index, command, spans)
        self._answered = False
        try:
            return self.apply_decoded(entry.index, command, spans)
        finally:
            self._answered = True

    def apply_decoded(self, index: int, command: Command, spans: list[Span]) -> Result:
        """Apply entry ``index`` from its already decoded command; ``spans`` says where
        each command is in the entry's data (what :func:`~herald.broker.codec.decode_entry`
        returns): a stored message is known by that place in the log."""
        self.applied_index = index
        self._spans = spans
        try:
            return self.execute(command)
        finally:
            self._spans = None

    def snapshot(self) -> bytes:
        """The whole state, deterministically serialized (see :mod:`herald.broker.snapshot`)."""
        return _snapshot.dump(self._state)

    def checkpoint(self) -> list[bytes | memoryview]:
        """:meth:`snapshot`'s bytes as buffers that stay valid while the state goes
        on changing: the index's columns are not copied but frozen, copied on their
        next write (see :func:`herald.broker.snapshot.dump_parts`)."""
        return _snapshot.dump_parts(self._state)

    def restore(self, data: bytes, index: int) -> None:
        """Replace the state by a snapshot taken at ``index``. Raises BrokerSnapshotError
        (and keeps the current state) if ``data`` does not decode."""
        self._state = _snapshot.load(data, self._read)
        self._garbage = 0
        self.applied_index = index

    def pin(self) -> int:
        """The lowest log index this state still reads: the oldest entry holding a
        retained or dead-lettered message (``applied_index + 1`` if there is none).
        The log must keep every entry from here on."""
        lowest = self.applied_index + 1
        for queue in self._state.queues.values():
            retained = queue.messages.pin()
            if retained:
                lowest = min(lowest, retained)
            for letter in queue.dead_letters.values():
                lowest = min(lowest, letter.stored.index)
        return lowest

    def _read(self, index: int) -> bytes:
        reader = self.reader
        if reader is None:
            raise InvalidCommandError("this broker was given no log to read message bodies from")
        return reader(index)

    # -- applying commands ------------------------------------------------------------------

    def execute(self, command: Command) -> Result:
        """Apply an already decoded command (what ``apply`` does after decoding)."""
        command_type = type(command)
        handler = self._handlers.get(command_type)
        if handler is None:
            return InvalidCommandError(f"not a broker command: {command_type.__name__}")
        if command_type is not Batch:  # a batch is not a moment: see _batch
            self._advance_clock(command.time)
        try:
            return handler(command)
        except BrokerError as error:
            return error
        finally:
            if self._garbage > _SWEEP_AT and 2 * self._garbage > len(self._state.timers):
                self._sweep_timers()

    def _advance_clock(self, time: int) -> None:
        """Move the clock to ``time`` (never back) and fire every timer due by then."""
        state = self._state
        if time > state.now:
            state.now = time
            timers = state.timers
            if timers and timers[0][0] <= time:
                self._fire_due_timers()

    def _batch(self, command: Batch) -> BatchResult:
        # Each inner command is applied as if it had its own entry: it advances
        # the clock to its own time and fires its own timers; its refusal is its
        # own result. The batch's time is only when the leader proposed it:
        # advancing to it first would expire a lease an inner ack, stamped
        # before the deadline, was in time for. (A test subclass that calls
        # self._advance_clock(command.time) here puts that bug back.)
        execute = self.execute
        spans = self._spans
        if spans is None or len(spans) != len(command.commands):
            return BatchResult(tuple(execute(inner) for inner in command.commands))
        results: list[Result] = []
        for span, inner in zip(spans, command.commands, strict=True):
            self._spans = [span]
            results.append(execute(inner))
        self._spans = spans
        return BatchResult(tuple(results))

    def _tick(self, command: Tick) -> Ticked:
        return Ticked(self._state.now)

    # -- queues ----------------------------------------------------------------------------------

    def _create_queue(self, command: CreateQueue) -> QueueCreated:
        state = self._state
        queue = state.queues.get(command.queue)
        if queue is not None:
            if queue.options != command.options:
                raise QueueExistsError(command.queue)
            return QueueCreated(command.queue, False)
        state.queues[command.queue] = Queue(command.queue, command.options, state.next_incarnation)
        state.next_incarnation += 1
        return QueueCreated(command.queue, True)

    def _delete_queue(self, command: DeleteQueue) -> QueueDeleted:
        queue = self._queue(command.queue)
        del self._state.queues[command.queue]
        self._garbage += 2 + sum(
            len(group.pending) + len(group.consumers) for group in queue.groups.values()
        )
        return QueueDeleted(command.queue, len(queue.messages))

    def _purge_queue(self, command: PurgeQueue) -> QueuePurged:
        queue = self._queue(command.queue)
        purged = len(queue.messages)
        dead = len(queue.dead_letters) if command.dead_letters else 0
        for group in queue.groups.values():
            self._garbage += len(group.pending)
            group.backlog.clear()
            group.retry.clear()
            group.pending.clear()
            for consumer in group.consumers.values():
                consumer.leases.clear()
        queue.messages.clear()
        if command.dead_letters:
            queue.dead_letters.clear()
        queue.counters.purged += purged
        return QueuePurged(command.queue, purged, dead)

    # -- publishing ----------------------------------------------------------------------------

    def _publish(self, command: Publish) -> Receipt:
        spans = self._spans
        if spans is None or len(spans) != 1:
            # Bodies stay in the log, so a publish is only applied from its entry.
            raise InvalidCommandError("a publish is only applied from its log entry (apply)")
        queue = self._state.queues.get(command.queue)
        if queue is None:
            raise UnknownQueueError(command.queue)
        name = command.producer
        if name is None:
            return self._store(queue, command, None, None, spans[0])
        number = command.producer_sequence
        producer = queue.producers.get(name)
        if producer is not None:
            last = producer.last_sequence
            if number <= last:
                return self._answer_retry(queue, name, producer, number)
            if number != last + 1:
                raise ProducerSequenceGapError(queue.name, name, last + 1, number)
        try:
            return self._store(queue, command, name, producer, spans[0])
        except BrokerError as refusal:
            self._record_refusal(queue, name, producer, number, refusal)
            raise

    def _answer_retry(self, queue: Queue, name: str, producer: Producer, number: int) -> Receipt:
        """A number the producer used: its remembered outcome, or stale if forgotten."""
        outcomes = producer.outcomes
        last = producer.last_sequence
        offset = number - last - 1 + len(outcomes)
        if offset < 0:
            raise ProducerSequenceStaleError(queue.name, name, number, last + 1 - len(outcomes))
        queue.counters.duplicates_by_producer += 1
        self._touch_producer(queue, name, producer)
        outcome = outcomes[offset]
        if isinstance(outcome, Refusal):
            raise outcome.error()
        return Receipt(queue.name, outcome, True, _REPLICATED, queue.incarnation)

    def _store(
        self,
        queue: Queue,
        command: Publish,
        name: str | None,
        producer: Producer | None,
        span: Span,
    ) -> Receipt:
        """Store the message (or answer it as a duplicate of its key) and record the
        outcome of the producer's number, ``name`` being the producer (or None).
        ``span``: where the publish is in the entry being applied.

        Refuses (raises) before changing anything; the caller records the refusal.
        """
        state = self._state
        options = queue.options
        body = command.body
        headers = command.headers
        size = message_size(body, headers) if headers else len(body)
        if size > options.max_message_bytes:
            raise MessageTooLargeError(queue.name, size, options.max_message_bytes)

        message_id = command.message_id
        if message_id is not None:
            original = queue.keys.get(message_id)
            if original is not None:
                queue.counters.duplicates_by_key += 1
                if name is not None:
                    self._record_producer(
                        queue, name, producer, command.producer_sequence, original
                    )
                return Receipt(queue.name, original, True, _REPLICATED, queue.incarnation)

        if options.max_length is not None and len(queue.messages) >= options.max_length:
            raise QueueFullError(queue.name, "length", options.max_length)
        if options.max_bytes is not None and queue.messages.bytes + size > options.max_bytes:
            raise QueueFullError(queue.name, "bytes", options.max_bytes)

        offset, length = span

        # Accepted: nothing below can fail.
        now = state.now
        sequence = queue.next_sequence
        queue.next_sequence = sequence + 1
        groups = queue.groups
        queue.messages.add(sequence, (self.applied_index, offset, length, size, now, len(groups)))
        for group in groups.values():
            group.backlog.append(sequence)
        if message_id is not None:
            queue.keys[message_id] = sequence
            ttl = options.dedup_ttl
            if ttl is not None:
                if not queue.key_order:
                    heapq.heappush(
                        state.timers, (now + ttl, T_KEYS, queue.name, "", queue.incarnation, 0, "")
                    )
                queue.key_order.append(message_id)
                queue.key_expiry.append(now + ttl)
        if name is not None:
            self._record_producer(queue, name, producer, command.producer_sequence, sequence)
        queue.counters.published += 1
        if not self._answered:
            return _UNANSWERED  # nobody reads it (see apply): a follower's every publish
        return Receipt(queue.name, sequence, False, _REPLICATED, queue.incarnation)

    def _record_refusal(
        self,
        queue: Queue,
        name: str,
        producer: Producer | None,
        number: int,
        refusal: BrokerError,
    ) -> None:
        """The publish numbered ``number`` was refused: the number is used up, and a
        retry of it will be answered with an equal refusal.

        The one place where a refusal consumes a producer number. A test subclass
        that overrides this to do nothing gets the old, buggy behaviour back (a
        refusal leaves the number free, so the next number is taken as the first).
        """
        self._record_producer(queue, name, producer, number, Refusal.of(refusal))

    def _record_producer(
        self,
        queue: Queue,
        name: str,
        producer: Producer | None,
        number: int,
        outcome: Outcome,
    ) -> None:
        """The producer's ``number`` (its next, or its first) was applied with ``outcome``."""
        now = self._state.now
        if producer is None:
            producer = Producer(number, now)
            ttl = queue.options.producer_ttl
            if not queue.producers and ttl is not None:
                heapq.heappush(
                    self._state.timers,
                    (now + ttl, T_PRODUCERS, queue.name, "", queue.incarnation, 0, ""),
                )
            queue.producers[name] = producer
        else:
            producer.last_sequence = number
            self._touch_producer(queue, name, producer)
        outcomes = producer.outcomes
        outcomes.append(outcome)
        if len(outcomes) > queue.options.producer_window:
            del outcomes[0]

    def _touch_producer(self, queue: Queue, name: str, producer: Producer) -> None:
        producer.last_seen = self._state.now
        # Least recently heard from first: move it to the end.
        del queue.producers[name]
        queue.producers[name] = producer

    # -- consumers -----------------------------------------------------------------------------

    def _subscribe(self, command: Subscribe) -> Session:
        state = self._state
        queue = self._queue(command.queue)
        group = queue.groups.get(command.group)
        if group is None:
            backlog = Backlog.of_ranges(queue.messages.ranges())
            origin = backlog[0] if backlog else queue.next_sequence
            group = Group(command.group, origin, state.next_token)
            group.backlog = backlog
            queue.messages.add_ref_to_all()
            queue.groups[command.group] = group
        consumer = group.consumers.get(command.consumer)
        now = state.now
        if consumer is None or consumer.session_timeout != command.session_timeout:
            # A new registration, or a new timeout: a new incarnation, whose timer
            # replaces any older one.
            incarnation = state.next_incarnation
            state.next_incarnation += 1
            if consumer is None:
                consumer = Consumer(
                    command.consumer, command.mode, command.session_timeout, now, incarnation
                )
                group.consumers[command.consumer] = consumer
            else:
                self._garbage += 1
                consumer.session_timeout = command.session_timeout
                consumer.incarnation = incarnation
            heapq.heappush(
                state.timers,
                (
                    now + command.session_timeout,
                    T_SESSION,
                    queue.name,
                    group.name,
                    incarnation,
                    0,
                    consumer.name,
                ),
            )
        consumer.mode = command.mode
        consumer.last_seen = now
        return Session(
            queue.name, group.name, consumer.name, consumer.mode, now + consumer.session_timeout
        )

    def _heartbeat(self, command: Heartbeat) -> Session:
        queue = self._queue(command.queue)
        group = self._group(queue, command.group)
        consumer = self._consumer(queue, group, command.consumer)
        consumer.last_seen = self._state.now
        return Session(
            queue.name,
            group.name,
            consumer.name,
            consumer.mode,
            consumer.last_seen + consumer.session_timeout,
        )

    def _leave(self, command: Leave) -> Left:
        queue = self._queue(command.queue)
        group = self._group(queue, command.group)
        consumer = self._consumer(queue, group, command.consumer)
        released = self._drop_consumer(queue, group, consumer)
        self._garbage += 1
        return Left(queue.name, group.name, consumer.name, released)

    def _delete_group(self, command: DeleteGroup) -> GroupDeleted:
        queue = self._queue(command.queue)
        group = self._group(queue, command.group)
        del queue.groups[group.name]
        for consumer in group.consumers.values():
            self._garbage += 1 + len(consumer.leases)
        for sequence in group.backlog:
            self._release(queue, sequence)
        for sequence in group.pending:
            self._release(queue, sequence)
        for key in [key for key in queue.dead_letters if key[0] == group.name]:
            del queue.dead_letters[key]
        return GroupDeleted(queue.name, group.name)

    def _drop_consumer(self, queue: Queue, group: Group, consumer: Consumer) -> int:
        """Forget a consumer; its leases end with reason consumer_gone."""
        leases = sorted(consumer.leases)
        for sequence in leases:
            self._end_lease(queue, group, sequence, group.pending[sequence], _CONSUMER_GONE, 0)
        self._garbage += len(leases)
        del group.consumers[consumer.name]
        return len(leases)

    # -- deliveries -------------------------------------------------------------------------------

    def _deliver(self, command: Deliver) -> Deliveries:
        state = self._state
        queue = self._queue(command.queue)
        group = self._group(queue, command.group)
        consumer = self._consumer(queue, group, command.consumer)
        consumer.last_seen = state.now
        duration = command.lease_duration or queue.options.lease_duration
        limit = command.max_messages
        out: list[Delivery] = []
        answered = self._answered
        if consumer.mode is _AT_LEAST_ONCE:
            retry = group.retry
            pending = group.pending
            grant = self._grant
            granted = 0
            while retry and granted < limit:
                sequence = heapq.heappop(retry)
                grant(queue, group, consumer, sequence, pending[sequence], duration, out)
                granted += 1
            backlog = group.backlog
            while backlog and granted < limit:
                sequence = backlog.popleft()
                entry = Pending()
                pending[sequence] = entry
                grant(queue, group, consumer, sequence, entry, duration, out)
                granted += 1
        else:
            # Settled in this very step: nothing is leased, nothing can come back.
            backlog = group.backlog
            counters = queue.counters
            granted = 0
            while backlog and granted < limit:
                sequence = backlog.popleft()
                granted += 1
                counters.delivered += 1
                if not answered:
                    self._release(queue, sequence)
                    continue
                out.append(
                    Delivery(
                        queue.name,
                        group.name,
                        self._ref(queue, sequence),
                        1,
                        0,
                        0,
                        False,
                        None,
                        _AT_MOST_ONCE,
                        queue.incarnation,
                    )
                )
                self._release(queue, sequence)
        return Deliveries(tuple(out))

    def _grant(
        self,
        queue: Queue,
        group: Group,
        consumer: Consumer,
        sequence: int,
        pending: Pending,
        duration: int,
        out: list[Delivery],
    ) -> None:
        """Lease ``sequence`` to ``consumer``; its Delivery goes to ``out`` when the
        result is answered (see apply)."""
        state = self._state
        now = state.now
        token = state.next_token
        state.next_token = token + 1
        pending.attempts += 1
        attempt = pending.attempts
        reason = pending.reason
        counters = queue.counters
        counters.delivered += 1
        if reason is not None:
            counters.bump_redelivered(reason)
        deadline = now + duration
        pending.status = LEASED
        pending.token = token
        pending.deadline = deadline
        pending.consumer = consumer.name
        pending.reason = None
        pending.history.append(Attempt(attempt, token, consumer.name, now, deadline, "leased"))
        consumer.leases[sequence] = None
        heapq.heappush(
            state.timers, (deadline, T_LEASE, queue.name, group.name, sequence, token, "")
        )
        if self._answered:
            out.append(
                Delivery(
                    queue.name,
                    group.name,
                    self._ref(queue, sequence),
                    attempt,
                    token,
                    deadline,
                    attempt > 1,
                    reason,
                    _AT_LEAST_ONCE,
                    queue.incarnation,
                )
            )

    def _held(self, queue: Queue, group: Group, sequence: int, token: int) -> Pending:
        """The live lease ``token`` on ``sequence``, or the typed error explaining why not.

        Pure: changes nothing.
        """
        if (
            token == 0
            or token >= self._state.next_token
            or token < group.first_token
            or sequence < group.origin
            or sequence >= queue.next_sequence
        ):
            raise UnknownDeliveryError(queue.name, group.name, sequence, token)
        pending = group.pending.get(sequence)
        if pending is not None:
            if pending.status == LEASED and pending.token == token:
                return pending
            for attempt in pending.history:
                if attempt.token == token:
                    raise StaleLeaseError(queue.name, group.name, sequence, token)
            raise UnknownDeliveryError(queue.name, group.name, sequence, token)
        backlog = group.backlog
        if backlog and sequence >= backlog[0]:
            raise UnknownDeliveryError(queue.name, group.name, sequence, token)
        raise AlreadySettledError(queue.name, group.name, sequence)

    def _ack(self, command: Ack) -> Acked:
        queue = self._queue(command.queue)
        group = self._group(queue, command.group)
        sequence = command.sequence
        pending = self._held(queue, group, sequence, command.token)
        consumer = group.consumers[pending.consumer]
        consumer.last_seen = self._state.now
        del consumer.leases[sequence]
        del group.pending[sequence]
        self._release(queue, sequence)
        queue.counters.acked += 1
        self._garbage += 1
        return Acked(queue.name, group.name, sequence)

    def _ack_many(self, command: AckMany) -> AckedMany:
        # _ack for each (sequence, token), with the lookups hoisted: a draining
        # consumer's acks arrive here by the hundred.
        queue = self._queue(command.queue)
        group = self._group(queue, command.group)
        held = self._held
        pending_of = group.pending
        consumers = group.consumers
        release = queue.messages.release
        keep = not queue.groups
        now = self._state.now
        outcomes: list[BrokerError | None] = []
        settled = 0
        for sequence, token in zip(command.sequences, command.tokens, strict=True):
            try:
                pending = held(queue, group, sequence, token)
            except BrokerError as error:
                outcomes.append(error)
                continue
            consumer = consumers[pending.consumer]
            consumer.last_seen = now
            del consumer.leases[sequence]
            del pending_of[sequence]
            release(sequence, keep=keep)
            outcomes.append(None)
            settled += 1
        queue.counters.acked += settled
        self._garbage += settled
        return AckedMany(queue.name, group.name, tuple(outcomes))

    def _nack(self, command: Nack) -> Nacked:
        queue = self._queue(command.queue)
        group = self._group(queue, command.group)
        sequence = command.sequence
        pending = self._held(queue, group, sequence, command.token)
        group.consumers[pending.consumer].last_seen = self._state.now
        queue.counters.nacked += 1
        self._garbage += 1
        dead = self._end_lease(queue, group, sequence, pending, _NACKED, command.delay)
        if dead:
            return Nacked(queue.name, group.name, sequence, 0, True)
        available = pending.available_at if command.delay else self._state.now
        return Nacked(queue.name, group.name, sequence, available, False)

    def _extend(self, command: Extend) -> Extended:
        state = self._state
        queue = self._queue(command.queue)
        group = self._group(queue, command.group)
        sequence = command.sequence
        pending = self._held(queue, group, sequence, command.token)
        group.consumers[pending.consumer].last_seen = state.now
        deadline = state.now + command.duration
        pending.deadline = deadline
        pending.history[-1].deadline = deadline
        heapq.heappush(
            state.timers, (deadline, T_LEASE, queue.name, group.name, sequence, pending.token, "")
        )
        self._garbage += 1
        return Extended(queue.name, group.name, sequence, pending.token, deadline)

    def _reject(self, command: Reject) -> Rejected:
        queue = self._queue(command.queue)
        group = self._group(queue, command.group)
        sequence = command.sequence
        pending = self._held(queue, group, sequence, command.token)
        consumer = group.consumers[pending.consumer]
        consumer.last_seen = self._state.now
        del consumer.leases[sequence]
        pending.history[-1].outcome = "rejected"
        self._dead_letter(queue, group, sequence, pending, DeadLetterReason.REJECTED)
        queue.counters.rejected += 1
        self._garbage += 1
        return Rejected(queue.name, group.name, sequence)

    def _end_lease(
        self,
        queue: Queue,
        group: Group,
        sequence: int,
        pending: Pending,
        reason: RedeliveryReason,
        delay: int,
    ) -> bool:
        """The lease on ``sequence`` ended without an ack; True if it went to the dead letters."""
        consumer = group.consumers.get(pending.consumer)
        if consumer is not None:
            consumer.leases.pop(sequence, None)
        pending.history[-1].outcome = reason.value
        if pending.attempts - pending.base >= queue.options.max_deliveries:
            self._dead_letter(queue, group, sequence, pending, DeadLetterReason.MAX_DELIVERIES)
            return True
        pending.reason = reason
        if delay:
            available = self._state.now + delay
            pending.status = DELAYED
            pending.available_at = available
            heapq.heappush(
                self._state.timers,
                (available, T_DELAY, queue.name, group.name, sequence, pending.token, ""),
            )
        else:
            pending.status = READY
            heapq.heappush(group.retry, sequence)
        return False

    def _dead_letter(
        self,
        queue: Queue,
        group: Group,
        sequence: int,
        pending: Pending,
        reason: DeadLetterReason,
    ) -> None:
        queue.dead_letters[(group.name, sequence)] = DeadLetter(
            queue.name,
            group.name,
            self._ref(queue, sequence),
            queue.messages.record(sequence)[3],
            pending.attempts,
            reason,
            self._state.now,
            tuple(attempt.freeze() for attempt in pending.history),
        )
        del group.pending[sequence]
        self._release(queue, sequence)
        queue.counters.dead_lettered += 1

    def _release(self, queue: Queue, sequence: int) -> None:
        """One group settled the message: forget it once every group has, unless the
        queue has no group left (a queue without groups retains everything)."""
        queue.messages.release(sequence, keep=not queue.groups)

    def _ref(self, queue: Queue, sequence: int) -> MessageRef:
        """Where retained message ``sequence`` is in the log (KeyError if it is not)."""
        entry, offset, length, _size, time, _refs = queue.messages.record(sequence)
        return MessageRef(sequence, entry, offset, length, time, self._read)

    # -- dead letters --------------------------------------------------------------------------

    def _redrive(self, command: Redrive) -> Redriven:
        queue = self._queue(command.queue)
        group = self._group(queue, command.group)
        dead_letters = queue.dead_letters
        if command.sequences:
            keys = [(group.name, sequence) for sequence in command.sequences]
            for key in keys:
                if key not in dead_letters:
                    raise UnknownDeadLetterError(queue.name, group.name, key[1])
        else:
            keys = [key for key in dead_letters if key[0] == group.name]
        for key in keys:
            letter = dead_letters.pop(key)
            sequence = key[1]
            record = queue.messages.get(sequence)
            if record is None:
                ref = letter.stored
                queue.messages.add(
                    sequence, (ref.index, ref.offset, ref.length, letter.size, ref.publish_time, 1)
                )
            else:
                queue.messages.set_refs(sequence, record[5] + 1)
            pending = Pending()
            pending.attempts = pending.base = letter.attempts
            pending.history = [
                Attempt(r.attempt, r.token, r.consumer, r.delivered_at, r.deadline, r.outcome)
                for r in letter.history
            ]
            pending.token = letter.history[-1].token if letter.history else 0
            pending.reason = RedeliveryReason.REDRIVEN
            group.pending[sequence] = pending
            heapq.heappush(group.retry, sequence)
            queue.counters.redriven += 1
        return Redriven(queue.name, group.name, tuple(key[1] for key in keys))

    # -- moving long-lived messages forward ------------------------------------------------------

    def _carry(self, command: Carry) -> MovedForward:
        """Move each carried message that is still where the leader saw it to its copy
        in this entry; one settled, redriven elsewhere or of another incarnation
        meanwhile is left alone (every replica decides the same, from the state)."""
        spans = self._spans
        if spans is None or len(spans) != len(command.items):
            raise InvalidCommandError("a carry is only applied from its log entry (apply)")
        index = self.applied_index
        queues = self._state.queues
        moved = 0
        for item, (offset, length) in zip(command.items, spans, strict=True):
            queue = queues.get(item.queue)
            if queue is None or queue.incarnation != item.incarnation:
                continue
            try:
                publish = decode_publish(item.publish)
            except MalformedCommandError:
                continue
            size = message_size(publish.body, publish.headers)
            if not item.group:
                record = queue.messages.get(item.sequence)
                if record is None or record[3] != size or record[0] >= index:
                    continue
                queue.messages.move(item.sequence, index, offset, length)
            else:
                key = (item.group, item.sequence)
                letter = queue.dead_letters.get(key)
                if letter is None or letter.size != size or letter.stored.index >= index:
                    continue
                moved_ref = letter.stored.moved(index, offset, length)
                queue.dead_letters[key] = replace(letter, stored=moved_ref)
            moved += 1
        return MovedForward(moved)

    def carry_candidates(
        self, before: int, limit: int, max_bytes: int
    ) -> list[tuple[str, int, str, MessageRef]] | None:
        """What a Carry would copy to let the log start at ``before``: every retained
        message and dead letter whose publish is in an earlier entry, as (queue,
        incarnation, group -- empty for a retained message --, where it is). None if
        they are more than ``limit`` or their publishes more than ``max_bytes``:
        then the log before ``before`` is mostly live and copying would not pay."""
        found: list[tuple[str, int, str, MessageRef]] = []
        total = 0
        for queue in self._state.queues.values():
            old = queue.messages.older_than(before, limit - len(found))
            if old is None:
                return None
            for sequence, (entry, offset, length, _size, time, _refs) in old:
                ref = MessageRef(sequence, entry, offset, length, time, self._read)
                found.append((queue.name, queue.incarnation, "", ref))
                total += length
            for (group, _sequence), letter in queue.dead_letters.items():
                if letter.stored.index < before:
                    if len(found) == limit:
                        return None
                    found.append((queue.name, queue.incarnation, group, letter.stored))
                    total += letter.stored.length
            if total > max_bytes:
                return None
        return found

    # -- timers ------------------------------------------------------------------------------------

    def _fire_due_timers(self) -> None:
        state = self._state
        timers = state.timers
        now = state.now
        queues = state.queues
        while timers and timers[0][0] <= now:
            due, kind, queue_name, group_name, number, token, name = heapq.heappop(timers)
            queue = queues.get(queue_name)
            if queue is None:
                continue
            if kind == T_LEASE:
                group = queue.groups.get(group_name)
                pending = None if group is None else group.pending.get(number)
                if (
                    group is None
                    or pending is None
                    or pending.status != LEASED
                    or pending.token != token
                    or pending.deadline != due
                ):
                    continue
                queue.counters.expired += 1
                self._end_lease(queue, group, number, pending, _EXPIRED, 0)
            elif kind == T_DELAY:
                group = queue.groups.get(group_name)
                pending = None if group is None else group.pending.get(number)
                if (
                    group is None
                    or pending is None
                    or pending.status != DELAYED
                    or pending.token != token
                    or pending.available_at != due
                ):
                    continue
                pending.status = READY
                heapq.heappush(group.retry, number)
            elif kind == T_SESSION:
                group = queue.groups.get(group_name)
                consumer = None if group is None else group.consumers.get(name)
                if group is None or consumer is None or consumer.incarnation != number:
                    continue
                expires = consumer.last_seen + consumer.session_timeout
                if expires > due:
                    # Heard from since: act at the true expiry, in its place in the order.
                    heapq.heappush(timers, (expires, kind, queue_name, group_name, number, 0, name))
                else:
                    self._drop_consumer(queue, group, consumer)
            elif kind == T_KEYS:
                if queue.incarnation != number:
                    continue
                keys, order, expiry = queue.keys, queue.key_order, queue.key_expiry
                while expiry and expiry[0] <= now:
                    expiry.popleft()
                    del keys[order.popleft()]
                if expiry:
                    heapq.heappush(timers, (expiry[0], kind, queue_name, "", number, 0, ""))
            elif kind == T_PRODUCERS:
                if queue.incarnation != number or queue.options.producer_ttl is None:
                    continue
                ttl = queue.options.producer_ttl
                producers = queue.producers
                while producers:
                    oldest = next(iter(producers))
                    if producers[oldest].last_seen + ttl > now:
                        break
                    del producers[oldest]
                if producers:
                    first = producers[next(iter(producers))]
                    heapq.heappush(
                        timers, (first.last_seen + ttl, kind, queue_name, "", number, 0, "")
                    )

    def _timer_live(self, timer: Timer) -> bool:
        """Would this timer still do anything (or re-arm)? Used to sweep stale ones."""
        due, kind, queue_name, group_name, number, token, name = timer
        queue = self._state.queues.get(queue_name)
        if queue is None:
            return False
        if kind in (T_KEYS, T_PRODUCERS):
            return queue.incarnation == number
        group = queue.groups.get(group_name)
        if group is None:
            return False
        if kind == T_SESSION:
            consumer = group.consumers.get(name)
            return consumer is not None and consumer.incarnation == number
        pending = group.pending.get(number)
        if pending is None or pending.token != token:
            return False
        if kind == T_LEASE:
            return pending.status == LEASED and pending.deadline == due
        return pending.status == DELAYED and pending.available_at == due

    def _sweep_timers(self) -> None:
        state = self._state
        state.timers = [timer for timer in state.timers if self._timer_live(timer)]
        heapq.heapify(state.timers)
        self._garbage = 0

    # -- lookups -------------------------------------------------------------------------------

    def _queue(self, name: str) -> Queue:
        queue = self._state.queues.get(name)
        if queue is None:
            raise UnknownQueueError(name)
        return queue

    @staticmethod
    def _group(queue: Queue, name: str) -> Group:
        group = queue.groups.get(name)
        if group is None:
            raise UnknownGroupError(queue.name, name)
        return group

    @staticmethod
    def _consumer(queue: Queue, group: Group, name: str) -> Consumer:
        consumer = group.consumers.get(name)
        if consumer is None:
            raise UnknownConsumerError(queue.name, group.name, name)
        return consumer

    # -- queries (pure: they never change the state) ---------------------------------------

    @property
    def now(self) -> int:
        """The state machine's clock: the largest command time applied."""
        return self._state.now

    def next_timer(self) -> int | None:
        """When the earliest timer is due (log time; it may be one already
        superseded, which fires as nothing), or None when no timer is set."""
        timers = self._state.timers
        return timers[0][0] if timers else None

    def list_queues(self) -> tuple[str, ...]:
        return tuple(sorted(self._state.queues))

    def queue_options(self, queue: str) -> QueueOptions:
        """Raises UnknownQueueError."""
        return self._queue(queue).options

    def stats(self, queue: str) -> QueueStats:
        """Gauges and counters of a queue. Raises UnknownQueueError."""
        q = self._queue(queue)
        groups = []
        for group in q.groups.values():
            statuses = [pending.status for pending in group.pending.values()]
            groups.append(
                GroupStats(
                    group.name,
                    len(group.backlog),
                    statuses.count(LEASED),
                    statuses.count(READY),
                    statuses.count(DELAYED),
                    tuple(group.consumers),
                    sum(1 for key in q.dead_letters if key[0] == group.name),
                )
            )
        return QueueStats(
            q.name,
            q.options,
            len(q.messages),
            q.messages.bytes,
            len(q.dead_letters),
            len(q.keys),
            len(q.producers),
            q.next_sequence,
            q.counters.freeze(),
            tuple(groups),
        )

    def message(self, queue: str, sequence: int) -> Message:
        """A message the queue retains. Raises UnknownQueueError, UnknownMessageError."""
        q = self._queue(queue)
        if sequence not in q.messages:
            raise UnknownMessageError(q.name, sequence)
        return self._ref(q, sequence).load()

    def peek(self, queue: str, group: str | None, limit: int) -> tuple[Peeked, ...]:
        """Look at messages without taking them: nothing is leased, counted or changed.

        With ``group``: the messages that group has not settled, in sequence
        order, each with its attempts and its state there (backlog, ready,
        leased, delayed). Without: every message the queue retains, in sequence
        order (attempts 0, state retained). At most ``limit`` of them; a limit of
        0 or less means :data:`PEEK_LIMIT`. Costs O(limit) per group plus
        O(in flight), not O(backlog), except on a queue without any group.
        Raises UnknownQueueError, UnknownGroupError.
        """
        q = self._queue(queue)
        if limit <= 0:
            limit = PEEK_LIMIT
        incarnation = q.incarnation
        if group is not None:
            g = self._group(q, group)
            pending = g.pending
            shown = []
            state: PeekState
            for sequence in islice(self._unsettled(g, limit), limit):
                entry = pending.get(sequence)
                if entry is None:
                    attempts, state = 0, "backlog"
                else:
                    attempts, state = entry.attempts, _PEEK_STATES[entry.status]
                shown.append(
                    Peeked(q.name, g.name, self._ref(q, sequence), attempts, state, incarnation)
                )
            return tuple(shown)
        if q.groups:
            # Every retained message is unsettled in some group (the state's
            # reference counts say so), so merging the groups' sorted streams
            # finds the first ``limit`` without looking at the rest.
            merged = heapq.merge(*(self._unsettled(g, limit) for g in q.groups.values()))
            sequences: list[int] = []
            for sequence in merged:
                if not sequences or sequences[-1] != sequence:
                    sequences.append(sequence)
                    if len(sequences) == limit:
                        break
        else:
            sequences = list(islice(q.messages.sequences(), limit))
        return tuple(
            Peeked(q.name, None, self._ref(q, sequence), 0, "retained", incarnation)
            for sequence in sequences
        )

    @staticmethod
    def _unsettled(group: Group, limit: int) -> Iterator[int]:
        """The group's unsettled sequences in increasing order: the first ``limit`` of
        them, and possibly some more (the caller stops)."""
        # The backlog is increasing; the pending are few (in flight) but unordered.
        return heapq.merge(heapq.nsmallest(limit, group.pending), islice(group.backlog, limit))

    def dead_letters(
        self, queue: str, group: str | None = None, limit: int | None = None
    ) -> tuple[DeadLetter, ...]:
        """Dead letters in the order they died, optionally of one group only."""
        q = self._queue(queue)
        if group is not None:
            self._group(q, group)
        letters = [
            letter for key, letter in q.dead_letters.items() if group is None or key[0] == group
        ]
        return tuple(letters if limit is None else letters[:limit])

    def dead_letter(self, queue: str, group: str, sequence: int) -> DeadLetter:
        """Inspect one dead letter with its delivery history. Raises UnknownDeadLetterError."""
        q = self._queue(queue)
        letter = q.dead_letters.get((group, sequence))
        if letter is None:
            raise UnknownDeadLetterError(q.name, group, sequence)
        return letter

    def check_invariants(self) -> None:
        """Raise InvariantError if the state is inconsistent (O(state); for tests)."""
        self._state.check()


_EXPIRED = RedeliveryReason.EXPIRED
_NACKED = RedeliveryReason.NACKED
_CONSUMER_GONE = RedeliveryReason.CONSUMER_GONE
