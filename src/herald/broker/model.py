"""The broker's values: time units, queue options, messages, receipts, deliveries, results.

Everything here is a frozen, slotted dataclass or an enum: the state machine
hands these out and never looks at them again, so a caller cannot change the
state through them. Times are integers in microseconds on the leader's clock
(the timestamps written into log entries); durations are microseconds too.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, TypeAlias

from herald.errors import BrokerError, InvalidOptionsError

if TYPE_CHECKING:
    from .stored import MessageRef

__all__ = [
    "DAY",
    "HOUR",
    "KIB",
    "MAX_LEASE",
    "MAX_MESSAGE_BYTES",
    "MIB",
    "MILLISECOND",
    "MINUTE",
    "SECOND",
    "Acked",
    "AckedMany",
    "DeadLetter",
    "DeadLetterReason",
    "Deliveries",
    "Delivery",
    "DeliveryMode",
    "DeliveryRecord",
    "Durability",
    "Extended",
    "GroupDeleted",
    "GroupStats",
    "Left",
    "Message",
    "Nacked",
    "PeekState",
    "Peeked",
    "QueueCounters",
    "QueueCreated",
    "QueueDeleted",
    "QueueOptions",
    "QueuePurged",
    "QueueStats",
    "Receipt",
    "RedeliveryReason",
    "Redriven",
    "Rejected",
    "Session",
    "Ticked",
    "message_size",
]

MILLISECOND = 1_000
SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
KIB = 1024
MIB = 1024 * KIB

#: The largest message size a queue may be configured to accept (the codec's limit
#: is higher; this one keeps a single entry from starving the log).
MAX_MESSAGE_BYTES = 64 * MIB
#: The longest lease (or consumer session) anyone may ask for.
MAX_LEASE = 12 * HOUR


def message_size(body: bytes, headers: tuple[tuple[str, str], ...]) -> int:
    """A message's size for the queue's limits: its body plus the UTF-8 bytes of its headers."""
    size = len(body)
    for name, value in headers:
        size += len(name.encode()) + len(value.encode())
    return size


class Durability(enum.Enum):
    """How far a publish got; a receipt never claims more than is true.

    - ``accepted``: a node took the command; it may still be lost.
    - ``replicated``: the entry is committed (in the logs of a majority) and
      applied; the state machine reports this, since applying implies committed.
    - ``durable``: committed *and* fsynced on a majority. Only the host knows its
      fsync discipline, so only the host upgrades a receipt to this.
    """

    ACCEPTED = "accepted"
    REPLICATED = "replicated"
    DURABLE = "durable"

    @property
    def rank(self) -> int:
        return _DURABILITY_RANK[self]

    def at_least(self, other: Durability) -> bool:
        return self.rank >= other.rank


_DURABILITY_RANK = {Durability.ACCEPTED: 0, Durability.REPLICATED: 1, Durability.DURABLE: 2}


class DeliveryMode(enum.Enum):
    """Chosen per consumer when it subscribes.

    - ``at_least_once`` (default): a delivery is a lease; unless it is acked
      before its deadline the message comes back (attempt + 1). A crash
      duplicates, never loses.
    - ``at_most_once``: the message is settled in the very committed step that
      delivers it, so it is never delivered again; a consumer crash loses it.
      Such consumers receive first deliveries only (never a redelivery), so
      nothing they receive has been, or will be, delivered to anyone else.
    """

    AT_LEAST_ONCE = "at_least_once"
    AT_MOST_ONCE = "at_most_once"


class RedeliveryReason(enum.Enum):
    """Why a message came back for another delivery (recorded when its lease ended)."""

    EXPIRED = "expired"  # the lease deadline passed
    NACKED = "nacked"  # the consumer gave it back
    CONSUMER_GONE = "consumer_gone"  # the consumer left or its session expired
    REDRIVEN = "redriven"  # an operator moved it back from the dead letters


class DeadLetterReason(enum.Enum):
    MAX_DELIVERIES = "max_deliveries"  # its last allowed delivery ended unacked
    REJECTED = "rejected"  # a consumer rejected it


@dataclass(frozen=True, slots=True)
class QueueOptions:
    """A queue's limits, fixed when it is created. ``None`` means unlimited.

    Raises :class:`~herald.errors.InvalidOptionsError` when a value is out of range.
    """

    #: Largest accepted message: body plus the UTF-8 bytes of header names and values.
    max_message_bytes: int = MIB
    #: Most messages the queue retains (ready or in flight; dead letters not counted).
    max_length: int | None = None
    #: Most bytes (same measure as ``max_message_bytes``) the queue retains.
    max_bytes: int | None = None
    #: Deliveries of one message before it moves to the dead letters.
    max_deliveries: int = 5
    #: How long a user message id (idempotency key) is remembered; None: forever.
    dedup_ttl: int | None = DAY
    #: The lease of a delivery when the consumer does not ask for another.
    lease_duration: int = 30 * SECOND
    #: Outcomes (receipts and refusals) remembered per idempotent producer: its
    #: in-flight retry window. The Herald client keeps at most this many publishes
    #: in flight per queue, so a retry after a lost connection always finds the
    #: original answer.
    producer_window: int = 1000
    #: An idempotent producer silent this long is forgotten; None: never.
    producer_ttl: int | None = DAY

    def __post_init__(self) -> None:
        if not 1 <= self.max_message_bytes <= MAX_MESSAGE_BYTES:
            raise InvalidOptionsError(
                f"max_message_bytes must be in 1..{MAX_MESSAGE_BYTES}, not {self.max_message_bytes}"
            )
        for name in ("max_length", "max_bytes", "dedup_ttl", "producer_ttl"):
            value = getattr(self, name)
            if value is not None and not 1 <= value < 2**63:
                raise InvalidOptionsError(f"{name} must be positive or None, not {value}")
        if not 1 <= self.max_deliveries <= 1000:
            raise InvalidOptionsError(
                f"max_deliveries must be in 1..1000, not {self.max_deliveries}"
            )
        if not 1 <= self.lease_duration <= MAX_LEASE:
            raise InvalidOptionsError(
                f"lease_duration must be in 1..{MAX_LEASE} microseconds, not {self.lease_duration}"
            )
        if not 1 <= self.producer_window <= 1000:
            raise InvalidOptionsError(
                f"producer_window must be in 1..1000, not {self.producer_window}"
            )


@dataclass(frozen=True, slots=True)
class Message:
    """A message as stored: ``sequence`` is assigned on commit, per queue, from 1."""

    sequence: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    message_id: str | None
    publish_time: int
    producer: str | None = None

    def header(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return default


@dataclass(frozen=True, slots=True)
class Receipt:
    """The answer to a publish. ``duplicate``: this is the original message's receipt,
    returned to a retry (same producer sequence, or same message id within its TTL).
    ``incarnation`` tells the queue from a deleted namesake, which numbered its
    messages from 1 too (a duplicate carries that of the queue answering it)."""

    queue: str
    sequence: int
    duplicate: bool
    durability: Durability
    incarnation: int

    def with_durability(self, durability: Durability) -> Receipt:
        """The host upgrades a receipt once it knows more (never downgrades)."""
        if durability.rank < self.durability.rank:
            return self
        return replace(self, durability=durability)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message handed to one consumer.

    For ``at_least_once`` it is a lease: ``token`` (a fencing token, unique and
    increasing across the whole broker) must be shown to ack, nack, extend or
    reject before ``deadline``. For ``at_most_once`` the message is already
    settled: ``token`` and ``deadline`` are 0. ``incarnation`` is the queue's
    (see :class:`Receipt`). ``stored`` says where the message is in the log;
    :attr:`message` reads it from there.
    """

    queue: str
    group: str
    stored: MessageRef
    attempt: int
    token: int
    deadline: int
    redelivery: bool
    reason: RedeliveryReason | None  # why it came back, for a redelivery
    mode: DeliveryMode
    incarnation: int

    @property
    def sequence(self) -> int:
        return self.stored.sequence

    @property
    def message(self) -> Message:
        """The message, read back from the log (raises what the log's reader raises)."""
        return self.stored.load()


#: Where a peeked message stands: in the peeked group, ``backlog`` (never
#: delivered), ``ready`` (back for redelivery), ``leased`` or ``delayed`` (nacked
#: with a delay not yet passed); ``retained`` when no group was named.
PeekState: TypeAlias = Literal["backlog", "ready", "leased", "delayed", "retained"]


@dataclass(frozen=True, slots=True)
class Peeked:
    """A message as :meth:`Broker.peek <herald.broker.Broker.peek>` shows it: a
    look, not a delivery (no lease, no attempt counted). ``attempts``: its
    deliveries so far in ``group`` (0 without a group)."""

    queue: str
    group: str | None
    stored: MessageRef
    attempts: int
    state: PeekState
    incarnation: int

    @property
    def sequence(self) -> int:
        return self.stored.sequence

    @property
    def message(self) -> Message:
        return self.stored.load()


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One past delivery of a message, as kept in its delivery history."""

    attempt: int
    token: int
    consumer: str
    delivered_at: int
    deadline: int
    outcome: str  # "leased" (still held), or how it ended: expired, nacked, ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message one group gave up on; its body stays in the log until it is
    redriven, discarded or purged. ``size`` is its size for the queue's limits."""

    queue: str
    group: str
    stored: MessageRef
    size: int
    attempts: int
    reason: DeadLetterReason
    time: int
    history: tuple[DeliveryRecord, ...]

    @property
    def sequence(self) -> int:
        return self.stored.sequence

    @property
    def message(self) -> Message:
        return self.stored.load()


# -- results of apply ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ticked:
    now: int


@dataclass(frozen=True, slots=True)
class QueueCreated:
    queue: str
    created: bool  # False: it existed already with the same options


@dataclass(frozen=True, slots=True)
class QueueDeleted:
    queue: str
    messages: int


@dataclass(frozen=True, slots=True)
class QueuePurged:
    queue: str
    messages: int
    dead_letters: int


@dataclass(frozen=True, slots=True)
class Session:
    """A consumer is registered (subscribe, heartbeat) until ``expires_at`` unless heard from."""

    queue: str
    group: str
    consumer: str
    mode: DeliveryMode
    expires_at: int


@dataclass(frozen=True, slots=True)
class Left:
    queue: str
    group: str
    consumer: str
    released: int  # leases given back for redelivery


@dataclass(frozen=True, slots=True)
class Deliveries:
    deliveries: tuple[Delivery, ...]


@dataclass(frozen=True, slots=True)
class Acked:
    queue: str
    group: str
    sequence: int


@dataclass(frozen=True, slots=True)
class AckedMany:
    """The outcome of each ack of an :class:`~herald.broker.commands.AckMany`, in
    its order: None when it settled the message, else the error refusing it."""

    queue: str
    group: str
    outcomes: tuple[BrokerError | None, ...]


@dataclass(frozen=True, slots=True)
class Nacked:
    queue: str
    group: str
    sequence: int
    available_at: int  # when it may be redelivered (0 when dead-lettered)
    dead_lettered: bool


@dataclass(frozen=True, slots=True)
class Extended:
    queue: str
    group: str
    sequence: int
    token: int
    deadline: int


@dataclass(frozen=True, slots=True)
class Rejected:
    queue: str
    group: str
    sequence: int


@dataclass(frozen=True, slots=True)
class Redriven:
    queue: str
    group: str
    sequences: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MovedForward:
    """How many of a Carry's messages moved to it (the rest were settled or gone)."""

    moved: int


@dataclass(frozen=True, slots=True)
class GroupDeleted:
    queue: str
    group: str


# -- queries ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueCounters:
    """Monotonic counters of one queue (reset only by deleting the queue)."""

    published: int = 0
    #: Retries answered from a producer's window (with a receipt or a remembered refusal).
    duplicates_by_producer: int = 0
    duplicates_by_key: int = 0
    delivered: int = 0  # every delivery, first or not
    redelivered_expired: int = 0
    redelivered_nacked: int = 0
    redelivered_consumer_gone: int = 0
    redelivered_redriven: int = 0
    acked: int = 0
    nacked: int = 0
    rejected: int = 0
    expired: int = 0  # leases that reached their deadline
    dead_lettered: int = 0
    redriven: int = 0
    purged: int = 0


@dataclass(frozen=True, slots=True)
class GroupStats:
    name: str
    backlog: int  # never delivered
    in_flight: int  # leased
    ready: int  # waiting for a redelivery now
    delayed: int  # nacked with a delay that has not passed
    consumers: tuple[str, ...]
    dead_letters: int


@dataclass(frozen=True, slots=True)
class QueueStats:
    queue: str
    options: QueueOptions
    length: int
    bytes: int
    dead_letters: int
    idempotency_keys: int
    producers: int
    next_sequence: int
    counters: QueueCounters
    groups: tuple[GroupStats, ...]


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The results of a :class:`~herald.broker.commands.Batch`, in its commands' order."""

    results: tuple[object, ...]
