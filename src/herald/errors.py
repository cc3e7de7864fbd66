"""The typed errors every layer of Herald raises.

Two families, after h11: a :class:`UsageError` means the caller misused an API
(a bug in the calling code, raised before anything changed); everything else
describes a condition of the system that a correct caller must handle (no
leader, entries compacted away, a log that cannot be trusted).
"""

from __future__ import annotations

__all__ = [
    "CompactedError",
    "ConfigError",
    "HeraldError",
    "InvariantError",
    "NotLeaderError",
    "ProposalDroppedError",
    "RaftError",
    "SnapshotUnavailableError",
    "StorageError",
    "UnavailableError",
    "UsageError",
    "WrongGroupError",
]


class HeraldError(Exception):
    """Base class of every error Herald raises on purpose."""


class UsageError(HeraldError):
    """The caller broke an API contract; nothing was changed."""


class ConfigError(UsageError):
    """A configuration value is invalid."""


class InvariantError(HeraldError):
    """An internal invariant does not hold: the process must not go on serving.

    Raised rather than asserted so that it survives ``python -O`` and so the
    simulator can report it as a crash with the seed that provoked it.
    """


class RaftError(HeraldError):
    """Base class of the errors of the Raft core."""


class NotLeaderError(RaftError):
    """This node is not the leader; ``leader`` is the node it believes leads (0: unknown)."""

    def __init__(self, leader: int, term: int) -> None:
        super().__init__(f"not the leader (leader hint: {leader or 'unknown'}, term {term})")
        self.leader = leader
        self.term = term


class ProposalDroppedError(RaftError):
    """The leader refused a proposal for now (for example during a leadership transfer)."""


class WrongGroupError(UsageError):
    """A message was addressed to another Raft group or another node."""


class StorageError(HeraldError):
    """Base class of the errors of stable storage."""


class CompactedError(StorageError):
    """The requested log index was compacted into a snapshot."""


class UnavailableError(StorageError):
    """The requested log index is beyond the last entry."""


class SnapshotUnavailableError(StorageError):
    """No snapshot can be produced right now; try again later."""


# -- Durable storage (herald.storage) ---------------------------------------------------
#
# Raised by the write-ahead log, the snapshot files and the file-system seam. All
# subclass StorageError. Each names the file it is about; the corruption errors
# also name the byte offset, so an operator can look at the damage before
# deciding to repair (which discards data) or to rebuild the node from its peers.

__all__ += [
    "CorruptHardStateError",
    "CorruptLogError",
    "CorruptSnapshotError",
    "CorruptionError",
    "GroupCountError",
    "LockedError",
    "StorageIOError",
    "UnsupportedFormatError",
]


class StorageIOError(StorageError):
    """The file system failed an operation (EIO, ENOSPC, a failed fsync, ...).

    After a failed fsync the written data may be lost although it is still
    readable from the page cache, so a log store that sees this refuses all
    further work: the process must restart and recover from what is on disk.
    """

    def __init__(self, path: str, operation: str, detail: str = "") -> None:
        message = f"{operation} failed on {path}"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.path = path
        self.operation = operation


class LockedError(StorageError):
    """Another process (or another open store in this one) holds the data directory."""

    def __init__(self, path: str) -> None:
        super().__init__(f"data directory {path} is locked by another open log store")
        self.path = path


class GroupCountError(StorageError):
    """The data directory holds a node of another number of data groups.

    A queue's group follows from the count (herald.wire.placement): opening the
    directory with another one would put queues in groups that do not hold them.
    """

    def __init__(self, path: str, recorded: int, asked: int) -> None:
        super().__init__(
            f"data directory {path} holds a node of {recorded} data group(s), not {asked}: "
            f"start it with --groups {recorded} (the count is fixed when a cluster is created)"
        )
        self.path = path
        self.recorded = recorded
        self.asked = asked


class UnsupportedFormatError(StorageError):
    """A file was written in a format version this code does not know (or is not ours)."""

    def __init__(self, path: str, version: int, supported: int) -> None:
        super().__init__(
            f"{path}: format version {version} is not supported (this code reads {supported})"
        )
        self.path = path
        self.version = version
        self.supported = supported


class CorruptionError(StorageError):
    """Stored data failed verification; it cannot be trusted and was not used.

    ``path`` and ``offset`` locate the first damaged byte range found.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path} at offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class CorruptLogError(CorruptionError):
    """The write-ahead log is damaged before its tail (not a torn last write).

    Opening the store with ``repair=True`` discards the log from the damage on
    and reports it, so the node can rejoin as a learner of its leader.
    """


class CorruptHardStateError(CorruptionError):
    """The hard state (term, vote) is damaged or inconsistent with the log.

    Never repaired: a node that forgot its vote could vote twice in one term.
    """


class CorruptSnapshotError(CorruptionError):
    """A snapshot the log depends on is damaged and no older one can stand in for it."""


# -- The broker state machine (herald.broker) ---------------------------------------------
#
# Every command the broker refuses yields one of these, as the *result* of applying
# it: the state machine never raises them out of ``apply``, so every replica
# computes the same error for the same entry and stays up. Queries (which never
# change state) raise them. Two errors compare equal when they have the same type
# and the same message, which names every value involved, so tests and the
# simulator can compare the results of different replicas.

__all__ += [
    "AlreadySettledError",
    "BrokerError",
    "BrokerSnapshotError",
    "InvalidCommandError",
    "InvalidOptionsError",
    "MalformedCommandError",
    "MessageTooLargeError",
    "ProducerSequenceGapError",
    "ProducerSequenceStaleError",
    "QueueExistsError",
    "QueueFullError",
    "StaleLeaseError",
    "UnknownConsumerError",
    "UnknownDeadLetterError",
    "UnknownDeliveryError",
    "UnknownGroupError",
    "UnknownMessageError",
    "UnknownQueueError",
]


class BrokerError(HeraldError):
    """Base class of the answers the broker gives to a command it refuses.

    A refused command changed nothing (beyond the clock advance its timestamp
    carries, which any command, refused or not, performs), except a refused
    publish of an idempotent producer, which consumes its sequence number: a
    retry of that number gets the same refusal.
    """

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BrokerError) or type(other) is not type(self):
            return NotImplemented
        return other.args == self.args

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.args))


class InvalidCommandError(BrokerError):
    """A command's fields are invalid (a bad name, a negative count, ...)."""


class InvalidOptionsError(InvalidCommandError):
    """Queue options are out of range or inconsistent."""


class MalformedCommandError(InvalidCommandError):
    """A log entry does not decode to a command (garbage, truncated, unknown version)."""


class BrokerSnapshotError(BrokerError):
    """A broker snapshot does not decode; the running state was left untouched."""


class UnknownQueueError(BrokerError):
    """No queue has this name."""

    def __init__(self, queue: str) -> None:
        super().__init__(f"unknown queue {queue!r}")
        self.queue = queue


class QueueExistsError(BrokerError):
    """A queue of this name already exists with different options."""

    def __init__(self, queue: str) -> None:
        super().__init__(f"queue {queue!r} already exists with different options")
        self.queue = queue


class MessageTooLargeError(BrokerError):
    """The message (body plus headers) exceeds the queue's maximum message size."""

    def __init__(self, queue: str, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} of {queue!r}")
        self.queue = queue
        self.size = size
        self.limit = limit


class QueueFullError(BrokerError):
    """Accepting the message would exceed the queue's maximum length or bytes."""

    def __init__(self, queue: str, limit: str, value: int) -> None:
        super().__init__(f"queue {queue!r} is full ({limit} limit {value})")
        self.queue = queue
        self.limit = limit  # "length" or "bytes"
        self.value = value


class ProducerSequenceGapError(BrokerError):
    """An idempotent producer skipped a sequence number; resend from ``expected``.

    Only a producer the broker knows can skip: ``expected`` is its last applied
    number + 1. Nothing was recorded, so the refused number is still unused.
    """

    def __init__(self, queue: str, producer: str, expected: int, got: int) -> None:
        super().__init__(
            f"producer {producer!r} on {queue!r}: sequence {got} leaves a gap (expected {expected})"
        )
        self.queue = queue
        self.producer = producer
        self.expected = expected
        self.got = got


class ProducerSequenceStaleError(BrokerError):
    """A sequence number older than the outcomes the broker remembers.

    The number was applied before -- its publish was stored, or refused -- and
    the broker no longer remembers which: the outcome of that publish is
    unknown. This retry was not applied again (nothing was stored). ``oldest``
    is the oldest number whose outcome is still remembered.
    """

    def __init__(self, queue: str, producer: str, sequence: int, oldest: int) -> None:
        super().__init__(
            f"producer {producer!r} on {queue!r}: sequence {sequence} is older than the "
            f"oldest remembered receipt ({oldest})"
        )
        self.queue = queue
        self.producer = producer
        self.sequence = sequence
        self.oldest = oldest


class UnknownGroupError(BrokerError):
    """The queue has no consumer group of this name."""

    def __init__(self, queue: str, group: str) -> None:
        super().__init__(f"unknown consumer group {group!r} of {queue!r}")
        self.queue = queue
        self.group = group


class UnknownConsumerError(BrokerError):
    """No consumer of this name is registered in the group (never, or its session expired)."""

    def __init__(self, queue: str, group: str, consumer: str) -> None:
        super().__init__(f"unknown consumer {consumer!r} in group {group!r} of {queue!r}")
        self.queue = queue
        self.group = group
        self.consumer = consumer


class UnknownDeliveryError(BrokerError):
    """No delivery of this message carried this token (never delivered, or a bogus token)."""

    def __init__(self, queue: str, group: str, sequence: int, token: int) -> None:
        super().__init__(
            f"no delivery of message {sequence} of {queue!r}/{group!r} with token {token}"
        )
        self.queue = queue
        self.group = group
        self.sequence = sequence
        self.token = token


class StaleLeaseError(BrokerError):
    """The token's lease ended (expired, nacked, consumer gone); the message may be
    redelivered to someone else, so the holder of this token is fenced off."""

    def __init__(self, queue: str, group: str, sequence: int, token: int) -> None:
        super().__init__(
            f"lease {token} on message {sequence} of {queue!r}/{group!r} is no longer held"
        )
        self.queue = queue
        self.group = group
        self.sequence = sequence
        self.token = token


class AlreadySettledError(BrokerError):
    """The message was already settled in this group (acked, dead-lettered or purged)."""

    def __init__(self, queue: str, group: str, sequence: int) -> None:
        super().__init__(f"message {sequence} of {queue!r}/{group!r} is already settled")
        self.queue = queue
        self.group = group
        self.sequence = sequence


class UnknownDeadLetterError(BrokerError):
    """The group's dead letters do not hold this message."""

    def __init__(self, queue: str, group: str, sequence: int) -> None:
        super().__init__(f"message {sequence} is not among the dead letters of {queue!r}/{group!r}")
        self.queue = queue
        self.group = group
        self.sequence = sequence


class UnknownMessageError(BrokerError):
    """The queue does not retain a message with this sequence number (never, or no longer)."""

    def __init__(self, queue: str, sequence: int) -> None:
        super().__init__(f"queue {queue!r} retains no message {sequence}")
        self.queue = queue
        self.sequence = sequence


# -- Histories and checkers (herald.check) -------------------------------------------------

__all__ += ["HistoryFormatError"]


class HistoryFormatError(HeraldError):
    """A history (JSON Lines) is malformed; ``line`` is its 1-based line number (0: unknown)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"history line {line}: {reason}" if line else f"history: {reason}")
        self.line = line
        self.reason = reason


# -- the wire protocol --------------------------------------------------------------------


class ProtocolError(HeraldError):
    """The peer broke the wire protocol; the connection is closed with an error frame."""


class FrameTooLargeError(ProtocolError):
    """A frame announced more bytes than the receiver accepts."""


class MalformedFrameError(ProtocolError):
    """A frame's bytes are not a valid message of the protocol."""


class HandshakeError(ProtocolError):
    """The first frame was not a valid Hello (wrong magic, version or role)."""


class ConnectionClosedError(HeraldError):
    """The connection closed before the operation completed; its outcome is unknown."""


class OverloadedError(HeraldError):
    """The server is shedding load (too much uncommitted work); retry later."""


class RequestTimeoutError(HeraldError):
    """No reply arrived in time; the operation may or may not have happened."""


__all__ += [
    "ConnectionClosedError",
    "FrameTooLargeError",
    "HandshakeError",
    "MalformedFrameError",
    "OverloadedError",
    "ProtocolError",
    "RequestTimeoutError",
]


# -- the server runtime (herald.runtime) ---------------------------------------------------
#
# What a server answers when it cannot give a request's own result. Each names what
# the client knows afterwards: ProposalLostError and ShuttingDownError mean the
# command was not applied; OutcomeUnknownError means it may or may not have been.
# All three are worth retrying (an idempotent producer's retry never duplicates).


class ProposalLostError(HeraldError):
    """The leader's entry for this request was replaced by another leader's: the
    command was not applied. Retry at the current leader."""


class OutcomeUnknownError(HeraldError):
    """The node lost leadership (or stopped) before the request's entry committed:
    it may or may not be applied. Retry idempotently."""


class ShuttingDownError(HeraldError):
    """The node is stopping and took no new work; the request was not applied."""


__all__ += ["OutcomeUnknownError", "ProposalLostError", "ShuttingDownError"]
