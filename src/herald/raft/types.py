"""The values the Raft core exchanges with its host: entries, messages, state.

Every value is a frozen, slotted dataclass: cheap to build, impossible to mutate
behind the core's back, and comparable, which the tests and the simulator's
checkers rely on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "NONE",
    "ConfState",
    "Entry",
    "EntryKind",
    "HardState",
    "Message",
    "MessageType",
    "ReadState",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "SoftState",
]

#: The id meaning "no node" (no vote cast, no leader known). Real node ids are positive.
NONE = 0


class Role(enum.IntEnum):
    """A node's role in its current term."""

    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


class MessageType(enum.IntEnum):
    """Every message one Raft node sends another."""

    APPEND = 1
    APPEND_RESPONSE = 2
    VOTE = 3
    VOTE_RESPONSE = 4
    PRE_VOTE = 5
    PRE_VOTE_RESPONSE = 6
    HEARTBEAT = 7
    HEARTBEAT_RESPONSE = 8
    SNAPSHOT = 9
    TIMEOUT_NOW = 10
    READ_INDEX = 11
    READ_INDEX_RESPONSE = 12


class EntryKind(enum.IntEnum):
    """What an entry carries: user data, or the empty entry a new leader appends."""

    NORMAL = 0
    # A leader commits one entry of its own term before it may count older entries
    # as committed (Raft paper, section 5.4.2) or answer reads (section 8).
    NOOP = 1


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. ``index`` starts at 1; ``data`` is opaque to the core."""

    term: int
    index: int
    data: bytes = b""
    kind: EntryKind = EntryKind.NORMAL

    def size(self) -> int:
        """The entry's size for batching limits: its payload plus a fixed header."""
        return len(self.data) + 16


@dataclass(frozen=True, slots=True)
class HardState:
    """What must survive a crash: current term, the vote cast in it, the commit index."""

    term: int = 0
    vote: int = NONE
    commit: int = 0


@dataclass(frozen=True, slots=True)
class ConfState:
    """The voting members of a group. Membership changes are not yet supported."""

    voters: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Where a snapshot stands in the log: it replaces entries ``1..index``."""

    index: int = 0
    term: int = 0
    conf: ConfState = ConfState()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A state-machine snapshot: metadata plus the application's opaque bytes."""

    meta: SnapshotMeta = SnapshotMeta()
    data: bytes = b""

    @property
    def index(self) -> int:
        return self.meta.index

    @property
    def term(self) -> int:
        return self.meta.term

    def is_empty(self) -> bool:
        return self.meta.index == 0


@dataclass(slots=True)
class Message:
    """A message between two nodes of one Raft group.

    Treated as immutable once sent; not a frozen dataclass because one is made
    for every message every node sends and receives, and a frozen one costs
    five times as much to build (3.7 against 0.7 us: an idle group of a node
    of many groups is mostly heartbeats).

    Field use by type (unused fields keep their defaults):

    - APPEND: ``index``/``log_term`` locate the entry preceding ``entries``;
      ``commit`` is the leader's commit index.
    - APPEND_RESPONSE: ``index`` is the follower's last matching index; on
      ``reject``, ``index`` is the rejected probe and ``reject_hint``/``log_term``
      point the leader at the follower's last entry that may match (fast back-off).
    - VOTE / PRE_VOTE: ``index``/``log_term`` describe the candidate's last entry;
      ``transfer`` marks a campaign started by a leadership transfer, which
      voters honour even while they believe a leader is alive.
    - HEARTBEAT: ``commit`` is min(follower's match, leader's commit);
      ``context`` carries a read-index request id, echoed by the response.
    - SNAPSHOT: ``snapshot`` is the snapshot to install.
    - READ_INDEX: ``context`` is the request id; READ_INDEX_RESPONSE adds ``index``.

    ``wall`` is not Raft's: the core never sets or reads it. A host may stamp
    its wall clock (microseconds) on the messages it sends, so that the leader
    can tell the time a majority of clocks agree on (``herald.node.clock``).
    """

    type: MessageType
    src: int
    dst: int
    term: int
    group: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: Snapshot | None = None
    context: bytes = b""
    transfer: bool = False
    wall: int = 0


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state a host may want to watch: who leads and what we are."""

    leader: int = NONE
    role: Role = Role.FOLLOWER


@dataclass(frozen=True, slots=True)
class ReadState:
    """A read-index result: a read issued with ``context`` may be served once the
    local state machine has applied ``index``."""

    index: int
    context: bytes
