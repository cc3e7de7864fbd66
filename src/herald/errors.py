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
