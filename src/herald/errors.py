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
