"""The commands the broker applies: one per log entry, each stamped with the leader's time.

Every state change of the broker is one of these, proposed through Raft and
applied in log order on every replica. ``time`` is the leader's clock when it
proposed the command (microseconds); the state machine's clock is the largest
``time`` it has applied, so it never goes backwards even when leaders' clocks
disagree.

Commands are validated on construction (after h11's events): a command that
exists is well formed, and a field out of range raises
:class:`~herald.errors.InvalidCommandError` at the caller, before anything is
proposed. What a command *means* against the current state (an unknown queue,
a stale token) is decided at apply time, the same way on every replica.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from herald.errors import InvalidCommandError

from .model import MAX_LEASE, DeliveryMode, QueueOptions

__all__ = [
    "MAX_ACKS",
    "MAX_BATCH",
    "MAX_NAME",
    "Ack",
    "AckMany",
    "Carried",
    "Carry",
    "Command",
    "CreateQueue",
    "DeleteGroup",
    "DeleteQueue",
    "Deliver",
    "Extend",
    "Heartbeat",
    "Leave",
    "Nack",
    "Publish",
    "PurgeQueue",
    "Redrive",
    "Reject",
    "Subscribe",
    "Tick",
]

#: Longest name (queue, group, consumer, producer), in characters.
MAX_NAME = 255
#: Most messages one Deliver may lease.
MAX_BATCH = 1000
#: Most acks one AckMany may carry.
MAX_ACKS = 65_535
#: Longest user message id (idempotency key), in characters.
MAX_MESSAGE_ID = 1024
_U64 = 2**64


def _name(kind: str, value: str) -> None:
    if not value or len(value) > MAX_NAME or not value.isprintable():
        raise InvalidCommandError(
            f"{kind} name must be 1..{MAX_NAME} printable characters: {value!r}"
        )


def _u64(kind: str, value: int) -> None:
    if not 0 <= value < _U64:
        raise InvalidCommandError(f"{kind} must be in 0..2**64-1, not {value}")


def _duration(kind: str, value: int, allow_zero: bool) -> None:
    low = 0 if allow_zero else 1
    if not low <= value <= MAX_LEASE:
        raise InvalidCommandError(f"{kind} must be in {low}..{MAX_LEASE} microseconds, not {value}")


@dataclass(frozen=True, slots=True)
class Command:
    """Base of every command: ``time`` is the proposing leader's clock (microseconds)."""

    time: int = field(kw_only=True)

    def __post_init__(self) -> None:
        _u64("time", self.time)


@dataclass(frozen=True, slots=True)
class Tick(Command):
    """Advance the clock: the leader proposes one periodically so leases expire and
    idempotency keys age out even when no other command arrives."""


@dataclass(frozen=True, slots=True)
class CreateQueue(Command):
    """Create a queue; idempotent when it exists with the same options."""

    queue: str
    options: QueueOptions = field(default_factory=QueueOptions)

    def __post_init__(self) -> None:
        _u64("time", self.time)
        _name("queue", self.queue)


@dataclass(frozen=True, slots=True)
class DeleteQueue(Command):
    """Delete a queue with everything in it: messages, groups, dead letters, keys."""

    queue: str

    def __post_init__(self) -> None:
        _u64("time", self.time)
        _name("queue", self.queue)


@dataclass(frozen=True, slots=True)
class PurgeQueue(Command):
    """Drop every retained message (leases die with them); idempotency keys and producer
    state stay, so a retry of a purged message is still recognised as a duplicate."""

    queue: str
    dead_letters: bool = False  # drop the dead letters too

    def __post_init__(self) -> None:
        _u64("time", self.time)
        _name("queue", self.queue)


@dataclass(frozen=True, slots=True)
class Publish(Command):
    """Publish one message.

    ``message_id``: an optional idempotency key; a second publish with the same
    id within the queue's ``dedup_ttl`` returns the original receipt.
    ``producer``/``producer_sequence``: an idempotent producer numbers its
    publishes to one queue 1, 2, 3, ...; each number is applied once, stored or
    refused, and a retry of a remembered number gets that same answer (the
    original receipt, or an equal refusal); a gap is refused (see
    :mod:`herald.broker.machine`). Without a producer, ``producer_sequence``
    must be 0.
    """

    queue: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    message_id: str | None = None
    producer: str | None = None
    producer_sequence: int = 0

    def __post_init__(self) -> None:
        _u64("time", self.time)
        _name("queue", self.queue)
        if self.headers:
            seen: set[str] = set()
            for pair in self.headers:
                if len(pair) != 2 or not isinstance(pair[0], str) or not isinstance(pair[1], str):
                    raise InvalidCommandError(f"a header must be a (str, str) pair: {pair!r}")
                if not pair[0] or pair[0] in seen:
                    raise InvalidCommandError(f"empty or repeated header name {pair[0]!r}")
                seen.add(pair[0])
        message_id = self.message_id
        if message_id is not None and not 0 < len(message_id) <= MAX_MESSAGE_ID:
            raise InvalidCommandError(f"message_id must be 1..{MAX_MESSAGE_ID} characters")
        if self.producer is None:
            if self.producer_sequence != 0:
                raise InvalidCommandError("producer_sequence without a producer")
        else:
            _name("producer", self.producer)
            if not 1 <= self.producer_sequence < _U64:
                raise InvalidCommandError(
                    f"producer_sequence must be at least 1, not {self.producer_sequence}"
                )


@dataclass(frozen=True, slots=True)
class Subscribe(Command):
    """Register a consumer in a group (creating the group), or refresh its registration.

    A new group starts at the oldest message the queue retains. The consumer is
    forgotten, and its leases given back, ``session_timeout`` after it was last
    heard from (any command naming it, or one of its leases, counts).
    """

    queue: str
    group: str
    consumer: str
    mode: DeliveryMode = DeliveryMode.AT_LEAST_ONCE
    session_timeout: int = 30_000_000

    def __post_init__(self) -> None:
        _u64("time", self.time)
        _name("queue", self.queue)
        _name("group", self.group)
        _name("consumer", self.consumer)
        _duration("session_timeout", self.session_timeout, allow_zero=False)


@dataclass(frozen=True, slots=True)
class Heartbeat(Command):
    queue: str
    group: str
    consumer: str

    def __post_init__(self) -> None:
        _u64("time", self.time)
        _name("queue", self.queue)
        _name("group", self.group)
        _name("consumer", self.consumer)


@dataclass(frozen=True, slots=True)
class Leave(Command):
    """Unregister a consumer; its leases end with reason ``consumer_gone``."""

    queue: str
    group: str
    consumer: str

    def __post_init__(self) -> None:
        _u64("time", self.time)
        _name("queue", self.queue)
        _name("group", self.group)
        _name("consumer", self.consumer)


@dataclass(frozen=True, slots=True)
class DeleteGroup(Command):
    queue: str
    group: str

    def __post_init__(self) -> None:
        _u64("time", self.time)
        _name("queue", self.queue)
        _name("group", self.group)


@dataclass(frozen=True, slots=True)
class Deliver(Command):
    """Lease up to ``max_messages`` to a registered consumer (redeliveries first, then
    first deliveries in queue order). ``lease_duration`` 0: the queue's default."""

    queue: str
    group: str
    consumer: str
    max_messages: int = 1
    lease_duration: int = 0

    def __post_init__(self) -> None:
        _u64("time", self.time)
        _name("queue", self.queue)
        _name("group", self.group)
        _name("consumer", self.consumer)
        if not 1 <= self.max_messages <= MAX_BATCH:
            raise InvalidCommandError(
                f"max_messages must be in 1..{MAX_BATCH}, not {self.max_messages}"
            )
        _duration("lease_duration", self.lease_duration, allow_zero=True)


@dataclass(frozen=True, slots=True)
class _LeaseCommand(Command):
    queue: str
    group: str
    sequence: int
    token: int

    def __post_init__(self) -> None:
        _u64("time", self.time)
        _name("queue", self.queue)
        _name("group", self.group)
        _u64("sequence", self.sequence)
        _u64("token", self.token)


@dataclass(frozen=True, slots=True)
class Ack(_LeaseCommand):
    """The message was processed: settle it in this group."""


@dataclass(frozen=True, slots=True)
class AckMany(Command):
    """Several acks of one group, in one command: ``tokens[i]`` is the lease on
    ``sequences[i]``. Applied in order, each exactly as its own :class:`Ack` at
    this command's time, with its own outcome.

    A leader folds the acks that arrive one after another into one of these
    (herald.node.server): a consumer acks every message, and one command per
    message was most of what a follower decoded and applied while a backlog
    drained.
    """

    queue: str
    group: str
    sequences: tuple[int, ...]
    tokens: tuple[int, ...]

    def __post_init__(self) -> None:
        _u64("time", self.time)
        _name("queue", self.queue)
        _name("group", self.group)
        count = len(self.sequences)
        if not 1 <= count <= MAX_ACKS:
            raise InvalidCommandError(f"an AckMany holds 1..{MAX_ACKS} acks, not {count}")
        if len(self.tokens) != count:
            raise InvalidCommandError(
                f"{count} sequences but {len(self.tokens)} tokens in an AckMany"
            )
        # min and max are C loops: this runs for every ack a follower applies.
        for kind, values in (("sequence", self.sequences), ("token", self.tokens)):
            _u64(kind, min(values))
            _u64(kind, max(values))


@dataclass(frozen=True, slots=True)
class Reject(_LeaseCommand):
    """The message can never be processed: move it to the dead letters now."""


@dataclass(frozen=True, slots=True)
class Nack(_LeaseCommand):
    """Give the message back, for redelivery after ``delay`` (0: at once)."""

    delay: int = 0

    def __post_init__(self) -> None:
        _LeaseCommand.__post_init__(self)
        _duration("delay", self.delay, allow_zero=True)


@dataclass(frozen=True, slots=True)
class Extend(_LeaseCommand):
    """Still working: the lease's deadline becomes now + ``duration``."""

    duration: int = 30_000_000

    def __post_init__(self) -> None:
        _LeaseCommand.__post_init__(self)
        _duration("duration", self.duration, allow_zero=False)


@dataclass(frozen=True, slots=True)
class Redrive(Command):
    """Move dead letters of a group back for redelivery (all of them when
    ``sequences`` is empty). Attempt numbers continue; the message gets a fresh
    budget of ``max_deliveries``. An operator's decision: the queue's length and
    byte limits do not apply."""

    queue: str
    group: str
    sequences: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _u64("time", self.time)
        _name("queue", self.queue)
        _name("group", self.group)
        for sequence in self.sequences:
            _u64("sequence", sequence)
        if len(set(self.sequences)) != len(self.sequences):
            raise InvalidCommandError("repeated sequence in a redrive")


@dataclass(frozen=True, slots=True)
class Carried:
    """One message whose publish a Carry copies forward: retained in ``queue``
    (``group`` empty) or a dead letter of ``group``. ``publish`` is its Publish
    command, byte for byte as the log holds it."""

    queue: str
    incarnation: int
    group: str
    sequence: int
    publish: bytes

    def __post_init__(self) -> None:
        _name("queue", self.queue)
        if self.group:
            _name("group", self.group)
        _u64("incarnation", self.incarnation)
        _u64("sequence", self.sequence)
        if not self.publish:
            raise InvalidCommandError("a carried message needs its publish")


@dataclass(frozen=True, slots=True)
class Carry(Command):
    """Copy the publishes of long-lived messages into this entry, so the log before
    them can be compacted (see :mod:`herald.broker.machine`).

    The leader proposes it when a few old messages -- a lease held for hours, a
    dead letter nobody redrives -- are all that keeps the log from being
    compacted. Applying it moves each message that is still there, as it was, to
    its copy here; one settled or gone meanwhile is skipped.
    """

    items: tuple[Carried, ...] = ()

    def __post_init__(self) -> None:
        super(Carry, self).__post_init__()
        if not self.items:
            raise InvalidCommandError("a carry needs at least one message")


@dataclass(frozen=True, slots=True)
class Batch(Command):
    """Several commands in one log entry, applied in order, one result each.

    A leader groups the requests that arrive together into one entry (one
    append, one fsync, one replication round), which is where a replicated
    queue's throughput comes from. Each inner command keeps its own ``time``
    and moves the clock to it; the batch's own ``time`` (when it was proposed)
    moves nothing. A batch cannot hold another batch.
    """

    commands: tuple[Command, ...] = ()

    def __post_init__(self) -> None:
        super(Batch, self).__post_init__()
        if not self.commands:
            raise InvalidCommandError("a batch needs at least one command")
        for command in self.commands:
            if isinstance(command, (Batch, Carry)):
                raise InvalidCommandError("a batch cannot hold another batch or a carry")
            if not isinstance(command, Command):
                raise InvalidCommandError(f"not a broker command: {command!r}")
