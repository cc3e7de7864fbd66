"""The driver API of the Raft core: feed it ticks and messages, take its Ready.

The loop a host runs (the node host in :mod:`herald.node` is the one Herald uses
in both the simulator and the real runtime)::

    node.tick() / node.step(message) / node.propose(data)   # any number of times
    if node.has_ready():
        rd = node.ready()
        send(rd.messages)                              # allowed before the writes
        write(rd.hard_state, rd.entries, rd.snapshot)  # fsync if rd.must_sync
        send(rd.persisted_messages)                    # only after the writes are durable
        apply(rd.snapshot, rd.committed_entries)
        node.advance(rd)

Only one Ready may be outstanding: call ``advance`` before the next ``ready``.
Ticks, messages and proposals may keep arriving in between; what they produce
goes into the next Ready.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from herald.errors import UsageError, WrongGroupError

from .config import Config
from .raft import Raft
from .storage import Storage
from .types import (
    NONE,
    Entry,
    HardState,
    Message,
    ReadState,
    Role,
    Snapshot,
    SoftState,
)

__all__ = ["RawNode", "Ready", "Status"]


@dataclass(frozen=True, slots=True)
class Ready:
    """Everything the host must do, and the order it must do it in.

    Ordering contract (the host must obey it; the simulator checks it does):

    1. ``messages`` may be sent at any time, even before step 2. They are the
       leader's appends, heartbeats and snapshots, and pre-vote traffic: none
       claims anything a crash of this node could take back. In particular the
       leader replicates entries while its own write of them is in progress; it
       counts its own copy towards a quorum only after ``advance``.
    2. ``hard_state`` (if set), ``entries`` and ``snapshot`` (if set) must be
       written to stable storage; entries replace any stored entries from the
       first one's index on. If ``must_sync`` is true, the write must be
       durable (fsynced) before step 3. ``must_sync`` is false only when the
       hard state changed in nothing but the commit index, which can be
       recomputed after a crash.
    3. ``persisted_messages`` may be sent only once step 2 is durable: votes,
       vote grants and append acknowledgements all promise that a term, a vote
       or entries will survive a crash.
    4. ``snapshot`` (if set) is then installed into the state machine, and
       ``committed_entries`` applied in order. They are always durable already
       (they were in an earlier Ready).
    5. ``advance(ready)`` tells the core all of the above happened.

    ``soft_state`` is set when the leader or role changed; ``read_states`` are
    answered read-index requests.
    """

    soft_state: SoftState | None
    hard_state: HardState | None
    read_states: tuple[ReadState, ...]
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    committed_entries: tuple[Entry, ...]
    messages: tuple[Message, ...]
    persisted_messages: tuple[Message, ...]
    must_sync: bool


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of a node's state for monitoring and for the simulator's checkers."""

    id: int
    term: int
    vote: int
    role: Role
    leader: int
    commit: int
    applied: int
    last_index: int
    progress: tuple[tuple[int, int], ...]  # (node, match) for a leader; else empty
    recovering: bool = False  # cut-back log: not voting until caught up


class RawNode:
    """A thread-unsafe Raft node: the whole protocol, none of the IO."""

    def __init__(
        self,
        config: Config,
        storage: Storage,
        rng: random.Random,
        raft_class: type[Raft] = Raft,
    ) -> None:
        self.raft = raft_class(config, storage, rng)
        self._prev_soft = self.raft.soft_state()
        self._prev_hard = self.raft.hard_state()
        self._outstanding: Ready | None = None

    @property
    def id(self) -> int:
        return self.raft.id

    # -- inputs ----------------------------------------------------------------------

    def tick(self) -> None:
        """Advance logical time by one tick (election and heartbeat timers)."""
        self.raft.tick()

    def step(self, message: Message) -> None:
        """Deliver a message from a peer.

        Raises :class:`WrongGroupError` for a message meant for another group or node.
        Messages from nodes that are not voters are ignored.
        """
        raft = self.raft
        if message.group != raft.group or message.dst != raft.id:
            raise WrongGroupError(
                f"message for group {message.group} node {message.dst} delivered to "
                f"group {raft.group} node {raft.id}"
            )
        if message.src not in raft.prs:
            return
        raft.step(message)

    def propose(self, data: bytes) -> int:
        """Propose one entry; returns its index. Raises NotLeaderError / ProposalDroppedError.

        The entry is committed once an entry at this index with the current term
        is applied; if a different entry shows up at this index, it was lost.
        """
        return self.raft.propose([data])

    def propose_many(self, payloads: list[bytes]) -> int:
        """Propose several entries at once (one append per follower); returns the first index."""
        if not payloads:
            raise UsageError("propose_many needs at least one payload")
        return self.raft.propose(payloads)

    def campaign(self) -> None:
        """Start an election now (pre-vote first if configured)."""
        if self.raft.role != Role.LEADER:
            self.raft.campaign(pre_vote=self.raft.config.pre_vote)

    def transfer_leader(self, target: int) -> None:
        """Ask this leader to hand leadership to ``target``. Raises NotLeaderError."""
        self.raft.transfer_leader(target)

    def caught_up(self, node: int) -> bool:
        """This node leads, no leadership transfer is under way, and ``node``
        (another member) holds its whole log: a transfer would take one round trip."""
        raft = self.raft
        if raft.role != Role.LEADER or raft.lead_transferee != NONE or node == raft.id:
            return False
        progress = raft.prs.get(node)
        return progress is not None and progress.match >= raft.log.last_index()

    def read_index(self, context: bytes) -> None:
        """Request a linearizable read identified by ``context``.

        The answer arrives as a :class:`ReadState` in a later Ready, or never if
        leadership changes meanwhile: hosts time such reads out and retry.
        Raises NotLeaderError when no leader is known.
        """
        if not context:
            raise UsageError("read_index needs a non-empty context")
        self.raft.read_index(context)

    def report_unreachable(self, node: int) -> None:
        """The transport failed to deliver to ``node``."""
        self.raft.report_unreachable(node)

    def report_snapshot(self, node: int, success: bool) -> None:
        """The transport knows whether a snapshot reached ``node``."""
        self.raft.report_snapshot(node, success)

    # -- outputs ---------------------------------------------------------------------

    def has_ready(self) -> bool:
        raft = self.raft
        if self._outstanding is not None:
            return False
        if raft.msgs or raft.msgs_after_persist or raft.read_states:
            return True
        log = raft.log
        if log.unstable.entries or log.unstable.snapshot is not None:
            return True
        if log.has_next_committed_entries():
            return True
        if raft.soft_state() != self._prev_soft:
            return True
        return raft.hard_state() != self._prev_hard

    def ready(self) -> Ready:
        """Take the pending work. Raises UsageError if the last Ready was not advanced."""
        if self._outstanding is not None:
            raise UsageError("advance() the previous Ready before asking for another")
        raft = self.raft
        log = raft.log
        soft = raft.soft_state()
        hard = raft.hard_state()
        entries = tuple(log.unstable.entries)
        snapshot = log.unstable.snapshot
        prev_hard = self._prev_hard
        hard_changed = hard != prev_hard
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard_changed else None,
            read_states=tuple(raft.read_states),
            entries=entries,
            snapshot=snapshot,
            committed_entries=tuple(log.next_committed_entries()),
            messages=tuple(raft.msgs),
            persisted_messages=tuple(raft.msgs_after_persist),
            must_sync=bool(entries)
            or snapshot is not None
            or (hard_changed and (hard.term != prev_hard.term or hard.vote != prev_hard.vote)),
        )
        raft.msgs = []
        raft.msgs_after_persist = []
        raft.read_states = []
        self._prev_soft = soft
        self._prev_hard = hard
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """Report that every step of ``rd`` is done (see the Ready contract)."""
        if rd is not self._outstanding:
            raise UsageError("advance() must be given the Ready last returned by ready()")
        self._outstanding = None
        log = self.raft.log
        if rd.snapshot is not None:
            log.stable_snapshot_to(rd.snapshot.index)
            log.applied_to(rd.snapshot.index)
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
        if rd.committed_entries:
            log.applied_to(rd.committed_entries[-1].index)
        self.raft.on_persisted()

    # -- inspection ------------------------------------------------------------------

    def status(self) -> Status:
        raft = self.raft
        progress: tuple[tuple[int, int], ...] = ()
        if raft.role == Role.LEADER:
            progress = tuple((node, raft.prs[node].match) for node in raft.voters)
        return Status(
            id=raft.id,
            term=raft.term,
            vote=raft.vote,
            role=raft.role,
            leader=raft.lead if raft.lead != NONE else NONE,
            commit=raft.log.committed,
            applied=raft.log.applied,
            last_index=raft.log.last_index(),
            progress=progress,
            recovering=raft.recovering(),
        )
