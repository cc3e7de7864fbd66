"""The broker's mutable state: queues, consumer groups, leases, the dedup index, timers.

Private to the package: :mod:`herald.broker.machine` changes it and
:mod:`herald.broker.snapshot` serializes it. Each field's comment states its
invariant; :meth:`BrokerState.check` verifies them (the tests call it).

Determinism rules (so replicas stay byte-identical): dictionaries are only ever
iterated in insertion order, which is a function of the log; there are no sets
anywhere in the state; heaps hold tuples with a total order; nothing depends on
``id()`` or ``hash()``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, fields
from typing import TypeAlias

from herald.errors import BrokerError, InvariantError

from .index import Backlog, MessageIndex
from .model import (
    DeadLetter,
    DeliveryMode,
    DeliveryRecord,
    QueueCounters,
    QueueOptions,
    RedeliveryReason,
)

__all__ = [
    "COUNTER_FIELDS",
    "DELAYED",
    "LEASED",
    "READY",
    "T_DELAY",
    "T_KEYS",
    "T_LEASE",
    "T_PRODUCERS",
    "T_SESSION",
    "Attempt",
    "BrokerState",
    "Consumer",
    "Counters",
    "Group",
    "Outcome",
    "Pending",
    "Producer",
    "Queue",
    "Refusal",
    "Timer",
]

# Status of a delivered, unsettled message in a group.
LEASED = 1  # held by a consumer until ``deadline``
READY = 2  # waiting in the group's retry heap for a redelivery
DELAYED = 3  # nacked with a delay: becomes READY at ``available_at``

# Timer kinds, in the order timers due at the same instant fire.
T_KEYS = 0  # idempotency keys of a queue expire
T_PRODUCERS = 1  # idle producers of a queue are forgotten
T_LEASE = 2  # a lease reaches its deadline
T_DELAY = 3  # a delayed nack becomes ready
T_SESSION = 4  # a consumer's session may have expired

#: (due, kind, queue, group, number, token, name). Tuples compare field by field,
#: so timers due at the same instant fire in an order that is a function of the
#: state alone: kind, then names, then numbers. ``number`` is a queue or consumer
#: incarnation, or a message sequence; ``token`` the lease a timer is about.
Timer = tuple[int, int, str, str, int, int, str]


#: The counters, in the order of QueueCounters' fields.
COUNTER_FIELDS = tuple(field.name for field in fields(QueueCounters))


class Counters:
    """The mutable twin of :class:`QueueCounters` (same fields, same order)."""

    __slots__ = (
        "acked",
        "dead_lettered",
        "delivered",
        "duplicates_by_key",
        "duplicates_by_producer",
        "expired",
        "nacked",
        "published",
        "purged",
        "redelivered_consumer_gone",
        "redelivered_expired",
        "redelivered_nacked",
        "redelivered_redriven",
        "redriven",
        "rejected",
    )

    def __init__(self) -> None:
        self.published = 0
        self.duplicates_by_producer = 0
        self.duplicates_by_key = 0
        self.delivered = 0
        self.redelivered_expired = 0
        self.redelivered_nacked = 0
        self.redelivered_consumer_gone = 0
        self.redelivered_redriven = 0
        self.acked = 0
        self.nacked = 0
        self.rejected = 0
        self.expired = 0
        self.dead_lettered = 0
        self.redriven = 0
        self.purged = 0

    def freeze(self) -> QueueCounters:
        return QueueCounters(*self.values())

    def values(self) -> list[int]:
        """In the order of QueueCounters' fields (the snapshot's order)."""
        return [getattr(self, name) for name in COUNTER_FIELDS]

    def bump_redelivered(self, reason: RedeliveryReason) -> None:
        if reason is RedeliveryReason.EXPIRED:
            self.redelivered_expired += 1
        elif reason is RedeliveryReason.NACKED:
            self.redelivered_nacked += 1
        elif reason is RedeliveryReason.CONSUMER_GONE:
            self.redelivered_consumer_gone += 1
        else:
            self.redelivered_redriven += 1


class Pending:
    """A delivered, unsettled message in one group (its delivery state)."""

    __slots__ = (
        "attempts",
        "available_at",
        "base",
        "consumer",
        "deadline",
        "history",
        "reason",
        "status",
        "token",
    )

    def __init__(self) -> None:
        self.attempts = 0  # deliveries so far; only ever grows (even across a redrive)
        self.base = 0  # attempts at the last redrive: the budget is base + max_deliveries
        self.status = READY
        self.token = 0  # token of the latest lease (live iff status == LEASED)
        self.deadline = 0  # of the latest lease
        self.consumer = ""  # holder of the latest lease
        self.available_at = 0  # DELAYED: when it becomes READY
        self.reason: RedeliveryReason | None = None  # why it came back (READY/DELAYED)
        self.history: list[Attempt] = []  # one per delivery, oldest first


class Attempt:
    """One delivery of a message; ``outcome`` is "leased" while the lease is held."""

    __slots__ = ("attempt", "consumer", "deadline", "delivered_at", "outcome", "token")

    def __init__(
        self,
        attempt: int,
        token: int,
        consumer: str,
        delivered_at: int,
        deadline: int,
        outcome: str,
    ) -> None:
        self.attempt = attempt
        self.token = token
        self.consumer = consumer
        self.delivered_at = delivered_at
        self.deadline = deadline
        self.outcome = outcome

    def freeze(self) -> DeliveryRecord:
        return DeliveryRecord(
            self.attempt, self.token, self.consumer, self.delivered_at, self.deadline, self.outcome
        )


class Consumer:
    __slots__ = ("incarnation", "last_seen", "leases", "mode", "name", "session_timeout")

    def __init__(
        self, name: str, mode: DeliveryMode, session_timeout: int, last_seen: int, incarnation: int
    ) -> None:
        self.name = name
        self.mode = mode
        self.session_timeout = session_timeout
        self.last_seen = last_seen
        self.incarnation = incarnation  # tells this registration's timers from older ones'
        self.leases: dict[int, None] = {}  # sequences it holds; iterated only sorted


class Group:
    __slots__ = ("backlog", "consumers", "first_token", "name", "origin", "pending", "retry")

    def __init__(self, name: str, origin: int, first_token: int) -> None:
        self.name = name
        # Sequences never delivered in this group, increasing: first deliveries pop
        # from the left, publishes append on the right.
        self.backlog = Backlog()
        self.retry: list[int] = []  # heap of exactly the READY sequences
        self.pending: dict[int, Pending] = {}  # delivered, unsettled
        self.consumers: dict[str, Consumer] = {}
        self.origin = origin  # no sequence below this ever belonged to the group
        self.first_token = first_token  # no token below this was issued for the group


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused publish, as a producer's window remembers it.

    Not the error itself: an exception picks up a traceback and a context each
    time it is raised, and a caller may add to it. This keeps what makes a
    rebuilt error *equal* to the original (its class and its message: BrokerError
    equality is class and args) and the public attributes it had, so a retry is
    answered with an error a client cannot tell from the first one, on every
    replica and across a snapshot.
    """

    kind: type[BrokerError]
    message: str
    #: The error's public attributes (str and int values), in the order its
    #: constructor set them.
    attributes: tuple[tuple[str, str | int], ...]

    @classmethod
    def of(cls, error: BrokerError) -> Refusal:
        args = error.args
        message = args[0] if len(args) == 1 and isinstance(args[0], str) else str(error)
        attributes = tuple(
            (name, value)
            for name, value in vars(error).items()
            if not name.startswith("_") and type(value) in (str, int)
        )
        return cls(type(error), message, attributes)

    def error(self) -> BrokerError:
        """A fresh error equal to the original refusal."""
        # Built like herald.client rebuilds errors: the constructor's arguments
        # are not kept, only what it made of them.
        error = self.kind.__new__(self.kind)
        Exception.__init__(error, self.message)
        for name, value in self.attributes:
            setattr(error, name, value)
        return error


#: What a producer's window remembers of one number: the queue sequence of the
#: message its publish was answered with (stored, or a duplicate by key), or the
#: refusal.
Outcome: TypeAlias = int | Refusal


class Producer:
    """An idempotent producer's state on one queue."""

    __slots__ = ("last_seen", "last_sequence", "outcomes")

    def __init__(self, last_sequence: int, last_seen: int) -> None:
        self.last_sequence = last_sequence
        self.last_seen = last_seen
        # The outcomes of its latest numbers, oldest first, at most the queue's
        # producer_window. Every applied number gets one (refusals too) and gaps
        # are refused, so outcomes[-1] is that of last_sequence, outcomes[-2] of
        # last_sequence - 1, and so on.
        self.outcomes: list[Outcome] = []


class Queue:
    __slots__ = (
        "counters",
        "dead_letters",
        "groups",
        "incarnation",
        "key_expiry",
        "key_order",
        "keys",
        "messages",
        "name",
        "next_sequence",
        "options",
        "producers",
    )

    def __init__(self, name: str, options: QueueOptions, incarnation: int) -> None:
        self.name = name
        self.options = options
        self.incarnation = incarnation  # tells this queue's timers from a deleted namesake's
        self.next_sequence = 1
        # The retained messages: where each is in the log, its size, its references.
        self.messages = MessageIndex()
        self.groups: dict[str, Group] = {}
        self.dead_letters: dict[tuple[str, int], DeadLetter] = {}  # (group, sequence)
        # The idempotency index: message id -> queue sequence. With a TTL, key_order and
        # key_expiry list the keys in insertion order, which is also expiry order
        # (the TTL is fixed per queue and the clock never goes backwards).
        self.keys: dict[str, int] = {}
        self.key_order: deque[str] = deque()
        self.key_expiry: deque[int] = deque()
        # Idempotent producers, least recently heard from first (touching one moves it
        # to the end), which with a fixed TTL is also expiry order.
        self.producers: dict[str, Producer] = {}
        self.counters = Counters()


class BrokerState:
    __slots__ = ("next_incarnation", "next_token", "now", "queues", "timers")

    def __init__(self) -> None:
        self.now = 0  # the largest command time applied; never goes backwards
        self.next_token = 1  # fencing tokens: unique and increasing across the broker
        self.next_incarnation = 1
        self.queues: dict[str, Queue] = {}
        # A heap of timers. It may also hold stale ones (a lease acked before its
        # deadline, a deleted queue's): every timer is checked against the state
        # when it fires, and acts only if it is still exactly due.
        self.timers: list[Timer] = []

    def check(self) -> None:
        """Raise InvariantError if a structural invariant does not hold (O(state); tests)."""
        for queue in self.queues.values():
            _check_queue(queue, self.next_token)


def _fail(queue: Queue, what: str) -> None:
    raise InvariantError(f"broker state of {queue.name!r}: {what}")


def _check_queue(queue: Queue, next_token: int) -> None:
    messages = queue.messages
    try:
        messages.check()
    except ValueError as error:
        _fail(queue, f"message index: {error}")
    for group in queue.groups.values():
        _check_group(queue, group, next_token)
    if len(queue.groups) <= 1:
        _check_refs_of_one_group(queue)
    else:
        _check_refs(queue)


def _check_group(queue: Queue, group: Group, next_token: int) -> None:
    """What holds within one group: O(its ranges and its messages in flight)."""
    ranges = group.backlog.ranges()
    previous = 0
    for low, high in ranges:
        if not previous <= low < high:
            _fail(queue, f"backlog of {group.name!r} not increasing")
        previous = high
    if sorted(group.retry) != sorted(seq for seq, p in group.pending.items() if p.status == READY):
        _fail(queue, f"retry heap of {group.name!r}")
    starts = [low for low, _high in ranges]
    for seq in group.pending:
        at = bisect_right(starts, seq) - 1
        if at >= 0 and seq < ranges[at][1]:
            _fail(queue, f"message {seq} both in backlog and pending in {group.name!r}")
        if seq not in queue.messages:
            _fail(queue, f"group {group.name!r} holds unretained message {seq}")
    leased: dict[str, list[int]] = {}
    for seq, pending in group.pending.items():
        if pending.attempts <= pending.base and pending.status == LEASED:
            _fail(queue, f"leased message {seq} without an attempt")
        if pending.attempts - pending.base > queue.options.max_deliveries:
            _fail(queue, f"message {seq} over its delivery budget")
        if pending.status == LEASED:
            leased.setdefault(pending.consumer, []).append(seq)
            if not 0 < pending.token < next_token:
                _fail(queue, f"lease token {pending.token} out of range")
    for name, consumer in group.consumers.items():
        if sorted(consumer.leases) != sorted(leased.pop(name, [])):
            _fail(queue, f"leases of consumer {name!r}")
    if leased:
        _fail(queue, f"leases held by unknown consumers {sorted(leased)}")


def _check_refs_of_one_group(queue: Queue) -> None:
    """With one group, every retained message is in its backlog or in flight there,
    once, and has one reference: checked by counting, over the index's columns, so
    restoring a checkpoint of a long queue does not walk every message."""
    messages = queue.messages
    for group in queue.groups.values():
        for low, high in group.backlog.ranges():
            if messages.count_between(low, high) != high - low:
                _fail(queue, f"group {group.name!r} holds unretained messages in {low}..{high}")
        if len(group.backlog) + len(group.pending) != len(messages):
            _fail(queue, f"retained messages outside group {group.name!r}")
        if not messages.refs_all(1):
            _fail(queue, "a reference count is not the one group's")


def _check_refs(queue: Queue) -> None:
    """Each retained message's references are the groups that hold it (O(messages))."""
    refs: dict[int, int] = dict.fromkeys(queue.messages.sequences(), 0)
    for group in queue.groups.values():
        for seq in [*group.backlog, *group.pending]:
            if seq not in refs:
                _fail(queue, f"group {group.name!r} holds unretained message {seq}")
            refs[seq] += 1
    for seq, count in refs.items():
        if queue.messages.refs(seq) != count or count == 0:
            _fail(queue, f"reference count of message {seq}")

    if len(queue.key_order) != len(queue.key_expiry):
        _fail(queue, "key order and expiry differ in length")
    if queue.options.dedup_ttl is not None and list(queue.key_order) != list(queue.keys):
        _fail(queue, "key order")
    expiry = list(queue.key_expiry)
    if expiry != sorted(expiry):
        _fail(queue, "key expiry not in order")
    for name, producer in queue.producers.items():
        if (
            not 0
            < len(producer.outcomes)
            <= min(queue.options.producer_window, producer.last_sequence)
        ):
            _fail(queue, f"outcomes of producer {name!r}")
    ttl = queue.options.producer_ttl
    if ttl is not None:
        seen = [producer.last_seen for producer in queue.producers.values()]
        if seen != sorted(seen):
            _fail(queue, "producers not in order of last activity")
