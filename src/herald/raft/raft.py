"""The Raft protocol itself: one node's state and its reaction to every message.

This module is pure: it never reads a clock (time arrives as ``tick()``), never
touches a socket or a file (messages go to an outbox, storage is read-only), and
draws randomness only from the ``random.Random`` it is given. The per-role
behaviour is swapped, not branched: ``_step`` and ``_tick`` point at the
functions of the current role (etcd-raft's ``stepLeader`` and friends).

References in comments: "Figure 2" and "section 5.x" are the extended Raft paper
(Ongaro and Ousterhout, 2014); "dissertation 9.6" is Ongaro's PhD thesis.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from herald.errors import (
    CompactedError,
    InvariantError,
    NotLeaderError,
    ProposalDroppedError,
    SnapshotUnavailableError,
)

from .config import Config
from .log import RaftLog
from .progress import Progress, ProgressState
from .quorum import VoteResult, committed_index, quorum_size, vote_result
from .read_only import ReadOnly
from .storage import Storage
from .types import (
    NONE,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    ReadState,
    Role,
    Snapshot,
    SoftState,
)

__all__ = ["Raft"]

MT = MessageType

# Messages that may leave before this node's pending writes are durable: they
# claim nothing about local state a crash could undo. A leader's appends belong
# here, so replication overlaps the leader's own fsync (dissertation 10.2.1); the
# leader counts itself towards a quorum only once its entries are durable.
_SEND_AT_ONCE = frozenset(
    {
        MT.APPEND,
        MT.HEARTBEAT,
        MT.SNAPSHOT,
        MT.TIMEOUT_NOW,
        MT.PRE_VOTE,
        MT.PRE_VOTE_RESPONSE,
        MT.HEARTBEAT_RESPONSE,
        MT.READ_INDEX,
        MT.READ_INDEX_RESPONSE,
    }
)
# Everything else (VOTE, VOTE_RESPONSE, APPEND_RESPONSE) vouches for a term, a
# vote or entries that must survive a crash, so it waits for the fsync.

_VOTE_RESPONSE = {MT.VOTE: MT.VOTE_RESPONSE, MT.PRE_VOTE: MT.PRE_VOTE_RESPONSE}


class Raft:
    """The protocol state of one node. Hosts use it through :class:`RawNode`."""

    def __init__(self, config: Config, storage: Storage, rng: random.Random) -> None:
        self.id = config.id
        self.group = config.group
        self.config = config
        self.rng = rng
        self.voters: tuple[int, ...] = tuple(sorted(config.voters))
        self._is_voter = self.id in self.voters
        self.log = RaftLog(storage, config.max_committed_size_per_ready)

        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.role = Role.FOLLOWER
        self.votes: dict[int, bool] = {}
        self.prs: dict[int, Progress] = {}
        self.lead_transferee = NONE
        self.read_only = ReadOnly()
        # Reads that reached a leader before it committed an entry of its own term.
        self.pending_reads: list[tuple[bytes, int]] = []
        self.read_states: list[ReadState] = []

        # Outboxes: see _SEND_AT_ONCE.
        self.msgs: list[Message] = []
        self.msgs_after_persist: list[Message] = []

        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_tick
        self.campaign_transfer = False
        self.recovering_term = config.recovering_term

        self._step: Callable[[Message], None] = self._step_follower
        self._tick: Callable[[], None] = self._tick_election

        hard_state, _conf = storage.initial_state()
        if hard_state != HardState():
            self._load_hard_state(hard_state)
        if len(self.voters) == 1:
            # Nobody to catch up from and no one else's election to spoil: what
            # the cut-back log lost is lost, and refusing to lead would only
            # stop the node for good.
            self.recovering_term = 0
        if self.recovering_term and self.term <= self.recovering_term:
            # Move past the term in which lost entries may have been acknowledged:
            # a leader still serving that term is superseded (it steps down on our
            # answers), and the next leader's entries end the recovery.
            self.term = self.recovering_term + 1
            self.vote = NONE
        if config.applied:
            self.log.applied_to(config.applied)
        self.become_follower(self.term, NONE)

    # -- state ----------------------------------------------------------------------

    def _load_hard_state(self, hard_state: HardState) -> None:
        if hard_state.commit < self.log.committed or hard_state.commit > self.log.last_index():
            raise InvariantError(
                f"hard state commit {hard_state.commit} outside "
                f"[{self.log.committed}, {self.log.last_index()}]"
            )
        self.log.committed = hard_state.commit
        self.term = hard_state.term
        self.vote = hard_state.vote

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def soft_state(self) -> SoftState:
        return SoftState(self.lead, self.role)

    def promotable(self) -> bool:
        return self._is_voter and not self.recovering()

    def recovering(self) -> bool:
        """True while this node may lack entries it once acknowledged.

        A node whose storage cut its log back may have acknowledged entries that
        counted towards a commit; voting or campaigning with the shorter log could
        elect a leader without them. Every such entry was committed in a term no
        later than ``recovering_term``. An entry of a *later* term was created by
        a leader that held all of them (Leader Completeness), so once this log
        holds one, Log Matching says it holds them all, and the node may vote.
        """
        if self.recovering_term and self.log.last_term() > self.recovering_term:
            self.recovering_term = 0
        return self.recovering_term != 0

    def _quorum(self) -> int:
        return quorum_size(len(self.voters))

    # -- outbox ---------------------------------------------------------------------

    def send(self, message: Message) -> None:
        if message.type in _SEND_AT_ONCE:
            self.msgs.append(message)
        else:
            self.msgs_after_persist.append(message)

    def _message(self, kind: MessageType, to: int, **fields: object) -> Message:
        return Message(kind, self.id, to, self.term, self.group, **fields)  # type: ignore[arg-type]

    # -- role transitions --------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_election_timeout()
        self._abort_leader_transfer()
        self.votes = {}
        last = self.log.last_index()
        self.prs = {}
        for node in self.voters:
            progress = Progress(last + 1, self.config.max_inflight_msgs)
            if node == self.id:
                progress.match = self.log.stable_last_index()
            self.prs[node] = progress
        self.read_only.clear()
        self.pending_reads = []

    def _reset_randomized_election_timeout(self) -> None:
        self.randomized_election_timeout = self.rng.randint(
            self.config.election_tick, self.config.randomized_election_max
        )

    def become_follower(self, term: int, lead: int) -> None:
        self._reset(term)
        self.lead = lead
        self.role = Role.FOLLOWER
        self._step = self._step_follower
        self._tick = self._tick_election

    def become_pre_candidate(self) -> None:
        if self.role == Role.LEADER:
            raise InvariantError("a leader cannot become a pre-candidate")
        # Pre-vote changes neither term nor vote: a node that loses the
        # pre-election leaves no trace in the cluster (dissertation 9.6).
        self.votes = {}
        self.lead = NONE
        self.heartbeat_elapsed = 0
        self.role = Role.PRE_CANDIDATE
        self._step = self._step_candidate
        self._tick = self._tick_election

    def become_candidate(self) -> None:
        if self.role == Role.LEADER:
            raise InvariantError("a leader cannot become a candidate")
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE
        self._step = self._step_candidate
        self._tick = self._tick_election

    def become_leader(self) -> None:
        if self.role == Role.FOLLOWER:
            raise InvariantError("a follower cannot become leader without an election")
        self._reset(self.term)
        self.lead = self.id
        self.role = Role.LEADER
        self._step = self._step_leader
        self._tick = self._tick_heartbeat
        own = self.prs[self.id]
        own.become_replicate()
        own.match = self.log.stable_last_index()
        own.recent_active = True
        # Section 5.4.2 and 8: commit an entry of our own term first; until then
        # nothing older can be counted committed and no read can be served.
        last = self.log.last_index()
        self.log.append([Entry(self.term, last + 1, b"", EntryKind.NOOP)])

    # -- ticks ------------------------------------------------------------------------

    def tick(self) -> None:
        self._tick()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.campaign(pre_vote=self.config.pre_vote)
            return
        if self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            self.heartbeat_elapsed += 1
            if self.heartbeat_elapsed >= self.config.heartbeat_tick:
                # RPCs are retried while unanswered (Raft paper, section 5.1): a
                # lost vote request should not cost a whole election timeout.
                self.heartbeat_elapsed = 0
                self._request_votes(missing_only=True)

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_tick:
            self.election_elapsed = 0
            if self.config.check_quorum and not self._quorum_active():
                # Dissertation 6.2: a leader cut off from a majority steps down,
                # so clients stop waiting on it and go find the real leader.
                self.become_follower(self.term, NONE)
                return
            if self.lead_transferee != NONE:
                self._abort_leader_transfer()
        for node in self.voters:
            progress = self.prs[node]
            if progress.state == ProgressState.SNAPSHOT:
                progress.snapshot_elapsed += 1
                if progress.snapshot_elapsed >= self.config.snapshot_timeout:
                    # The snapshot (or its answer) was lost: probe again, which
                    # sends a fresh snapshot if the follower still needs one.
                    progress.become_probe()
        if self.heartbeat_elapsed >= self.config.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self._broadcast_heartbeat(self.read_only.last_context() or b"")

    def _quorum_active(self) -> bool:
        active = 0
        for node in self.voters:
            progress = self.prs[node]
            if node == self.id or progress.recent_active:
                active += 1
            progress.recent_active = False
        return active >= self._quorum()

    # -- elections ----------------------------------------------------------------------

    def campaign(self, pre_vote: bool, transfer: bool = False) -> None:
        """Start a (pre-)election. Figure 2, Rules for Servers, Candidates."""
        if not self.promotable():
            return
        if pre_vote:
            self.become_pre_candidate()
        else:
            self.become_candidate()
        self.campaign_transfer = transfer
        if self._poll(self.id, True) == VoteResult.WON:
            # A cluster of one wins at once.
            self._on_won_election()
            return
        self._request_votes(missing_only=False)

    def _request_votes(self, missing_only: bool) -> None:
        if self.role == Role.PRE_CANDIDATE:
            kind, term = MT.PRE_VOTE, self.term + 1
        else:
            kind, term = MT.VOTE, self.term
        last_index = self.log.last_index()
        last_term = self.log.last_term()
        for node in self.voters:
            if node == self.id or (missing_only and node in self.votes):
                continue
            self.send(
                Message(
                    kind,
                    self.id,
                    node,
                    term,
                    self.group,
                    log_term=last_term,
                    index=last_index,
                    transfer=self.campaign_transfer,
                )
            )

    def _poll(self, node: int, granted: bool) -> VoteResult:
        self.votes.setdefault(node, granted)
        return vote_result(self.voters, self.votes)

    def _on_won_election(self) -> None:
        if self.role == Role.PRE_CANDIDATE:
            self.campaign(pre_vote=False)
        else:
            self.become_leader()
            self._broadcast_append()

    # -- step: the generic part -------------------------------------------------------

    def step(self, m: Message) -> None:
        """Figure 2, Rules for Servers, All Servers, then the role's own rules."""
        if m.term > self.term:
            if m.type in (MT.VOTE, MT.PRE_VOTE):
                in_lease = (
                    self.config.check_quorum
                    and self.lead != NONE
                    and self.election_elapsed < self.config.election_tick
                )
                if in_lease and not m.transfer:
                    # We heard from a live leader within the minimum election
                    # timeout: this candidate is disruptive (dissertation 4.2.3).
                    return
            if m.type == MT.PRE_VOTE:
                pass  # never change term for a pre-vote request
            elif m.type == MT.PRE_VOTE_RESPONSE and not m.reject:
                pass  # a granted pre-vote carries the term we would campaign in
            elif m.type in (MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT):
                self.become_follower(m.term, m.src)
            else:
                # Figure 2 resets the election timer on hearing the current leader
                # or granting a vote, not on merely seeing a higher term: keeping
                # it keeps the nodes' timers apart, so a failed election is not
                # followed by another split vote among re-synchronised timers.
                elapsed = self.election_elapsed
                self.become_follower(m.term, NONE)
                self.election_elapsed = elapsed
        elif m.term < self.term:
            if m.type in (MT.APPEND, MT.HEARTBEAT):
                # Figure 2: reply false with our term, so a deposed leader learns
                # the new term and steps down. With pre-vote or check-quorum it
                # could never learn it otherwise (nobody disrupts it with a vote
                # request), nor while a recovering node sits in a later term.
                self.send(self._message(MT.APPEND_RESPONSE, m.src))
            elif m.type == MT.PRE_VOTE:
                self.send(self._message(MT.PRE_VOTE_RESPONSE, m.src, reject=True))
            return

        if m.type in (MT.VOTE, MT.PRE_VOTE):
            self._handle_vote_request(m)
        else:
            self._step(m)

    def _handle_vote_request(self, m: Message) -> None:
        """Figure 2, RequestVote receiver (and its pre-vote twin)."""
        can_vote = (
            self.vote == m.src
            or (self.vote == NONE and self.lead == NONE)
            or (m.type == MT.PRE_VOTE and m.term > self.term)
        )
        response = _VOTE_RESPONSE[m.type]
        if can_vote and not self.recovering() and self.log.is_up_to_date(m.index, m.log_term):
            # A grant carries the term of the request so a pre-candidate can tell
            # it from a stale answer; the vote is persisted before it is sent.
            self.send(Message(response, self.id, m.src, m.term, self.group))
            if m.type == MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.src
        else:
            self.send(self._message(response, m.src, reject=True))

    # -- step: followers ------------------------------------------------------------------

    def _step_follower(self, m: Message) -> None:
        kind = m.type
        if kind == MT.APPEND:
            self.election_elapsed = 0
            self.lead = m.src
            self._handle_append(m)
        elif kind == MT.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.src
            self._handle_heartbeat(m)
        elif kind == MT.SNAPSHOT:
            self.election_elapsed = 0
            self.lead = m.src
            self._handle_snapshot(m)
        elif kind == MT.TIMEOUT_NOW:
            # Leadership transfer: campaign at once, skipping pre-vote; voters
            # honour the request although they still hear the old leader.
            self.campaign(pre_vote=False, transfer=True)
        elif kind == MT.READ_INDEX_RESPONSE:
            self.read_states.append(ReadState(m.index, m.context))

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self.send(self._message(MT.APPEND_RESPONSE, m.src, index=self.log.committed))
            return
        last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self.send(self._message(MT.APPEND_RESPONSE, m.src, index=last_new))
            return
        hint_index = min(m.index, self.log.last_index())
        hint_index, hint_term = self.log.find_conflict_by_term(hint_index, m.log_term)
        self.send(
            self._message(
                MT.APPEND_RESPONSE,
                m.src,
                index=m.index,
                reject=True,
                reject_hint=hint_index,
                log_term=hint_term,
            )
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(m.commit)
        self.send(self._message(MT.HEARTBEAT_RESPONSE, m.src, context=m.context))

    def _handle_snapshot(self, m: Message) -> None:
        snapshot = m.snapshot
        if snapshot is None:
            return
        if self._restore(snapshot):
            self.send(self._message(MT.APPEND_RESPONSE, m.src, index=self.log.last_index()))
        else:
            self.send(self._message(MT.APPEND_RESPONSE, m.src, index=self.log.committed))

    def _restore(self, snapshot: Snapshot) -> bool:
        """Section 7, InstallSnapshot receiver; False if the snapshot brings nothing new."""
        if snapshot.index <= self.log.committed:
            return False
        if self.log.match_term(snapshot.index, snapshot.term):
            # We already hold the snapshot's last entry: keep the log, move commit.
            self.log.commit_to(snapshot.index)
            return False
        self.log.restore(snapshot)
        return True

    # -- step: candidates -----------------------------------------------------------------

    def _step_candidate(self, m: Message) -> None:
        kind = m.type
        wanted = MT.PRE_VOTE_RESPONSE if self.role == Role.PRE_CANDIDATE else MT.VOTE_RESPONSE
        if kind in (MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT):
            # A leader of our term exists (section 5.2): give up.
            self.become_follower(m.term, m.src)
            self._step_follower(m)
        elif kind == wanted:
            result = self._poll(m.src, not m.reject)
            if result == VoteResult.WON:
                self._on_won_election()
            elif result == VoteResult.LOST:
                self.become_follower(self.term, NONE)
        elif kind == MT.TIMEOUT_NOW:
            pass  # a candidate is already campaigning

    # -- step: the leader -------------------------------------------------------------------

    def _step_leader(self, m: Message) -> None:
        kind = m.type
        if kind == MT.READ_INDEX:
            self._handle_read_index(m.context, m.src)
            return
        progress = self.prs.get(m.src)
        if progress is None:
            return
        if kind == MT.APPEND_RESPONSE:
            progress.recent_active = True
            self._handle_append_response(m, progress)
        elif kind == MT.HEARTBEAT_RESPONSE:
            progress.recent_active = True
            self._handle_heartbeat_response(m, progress)

    def _handle_append_response(self, m: Message, progress: Progress) -> None:
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if progress.maybe_decrease_to(m.index, next_probe):
                if progress.state == ProgressState.REPLICATE:
                    progress.become_probe()
                self._send_append(m.src)
            return
        was_paused = progress.is_paused()
        # An answer that confirms exactly what we knew still ends a probe: the
        # follower's log matches ours up to there, so replication can stream.
        confirmed_probe = progress.state == ProgressState.PROBE and progress.match == m.index
        if not progress.maybe_update(m.index) and not confirmed_probe:
            return
        if progress.state == ProgressState.PROBE:
            progress.become_replicate()
        elif progress.state == ProgressState.SNAPSHOT:
            if progress.match >= progress.pending_snapshot:
                progress.become_probe()
                progress.become_replicate()
        else:
            progress.inflights.free_le(m.index)
        if self._maybe_commit():
            self._broadcast_append()
        elif was_paused:
            self._send_append(m.src)
        # Keep the pipeline full: send as much as the in-flight bound allows.
        while self._maybe_send_append(m.src, send_if_empty=False):
            pass
        if m.src == self.lead_transferee and progress.match == self.log.last_index():
            self.send(self._message(MT.TIMEOUT_NOW, m.src))

    def _handle_heartbeat_response(self, m: Message, progress: Progress) -> None:
        progress.probe_sent = False
        if progress.state == ProgressState.REPLICATE and progress.inflights.full():
            # An append or its answer may be lost; make room so replication moves.
            progress.inflights.free_first()
        if progress.match < self.log.last_index():
            self._send_append(m.src)
        if not m.context:
            return
        acks = self.read_only.receive_ack(m.src, m.context)
        if acks is None or len(acks) < self._quorum():
            return
        for request in self.read_only.release(m.context):
            self._answer_read(request.context, request.origin, request.index)

    # -- replication ----------------------------------------------------------------------

    def _send_append(self, to: int) -> None:
        self._maybe_send_append(to, send_if_empty=True)

    def _maybe_send_append(self, to: int, send_if_empty: bool) -> bool:
        """Figure 2, AppendEntries RPC, from the leader's side; False if nothing was sent."""
        progress = self.prs[to]
        if progress.is_paused():
            return False
        prev_index = progress.next - 1
        try:
            prev_term = self.log.term(prev_index)
            entries = self.log.entries_from(progress.next, self.config.max_size_per_msg)
        except CompactedError:
            return self._send_snapshot(to, progress)
        if not entries and not send_if_empty:
            return False
        self.send(
            Message(
                MT.APPEND,
                self.id,
                to,
                self.term,
                self.group,
                log_term=prev_term,
                index=prev_index,
                entries=tuple(entries),
                commit=self.log.committed,
            )
        )
        progress.sent_entries(len(entries), entries[-1].index if entries else prev_index)
        return True

    def _send_snapshot(self, to: int, progress: Progress) -> bool:
        """Section 7: the follower needs entries we compacted; send the snapshot."""
        try:
            snapshot = self.log.snapshot()
        except SnapshotUnavailableError:
            return False
        if snapshot.is_empty():
            raise InvariantError("entries compacted but no snapshot to send")
        self.send(self._message(MT.SNAPSHOT, to, snapshot=snapshot))
        progress.become_snapshot(snapshot.index)
        return True

    def _broadcast_append(self) -> None:
        for node in self.voters:
            if node != self.id:
                self._send_append(node)

    def _broadcast_heartbeat(self, context: bytes) -> None:
        for node in self.voters:
            if node != self.id:
                progress = self.prs[node]
                # Never tell a follower to commit past what it is known to hold.
                commit = min(progress.match, self.log.committed)
                self.send(self._message(MT.HEARTBEAT, node, commit=commit, context=context))

    def _maybe_commit(self) -> bool:
        """Section 5.3-5.4.2: advance commit to what a majority holds, if of our term."""
        index = committed_index([self.prs[node].match for node in self.voters])
        if not self.log.maybe_commit(index, self.term):
            return False
        if self.pending_reads and self._committed_in_current_term():
            pending, self.pending_reads = self.pending_reads, []
            for context, origin in pending:
                self._handle_read_index(context, origin)
        return True

    def _committed_in_current_term(self) -> bool:
        return self.log.term_or_zero(self.log.committed) == self.term

    def on_persisted(self) -> None:
        """The host made entries durable: the leader may now count its own copy."""
        if self.role != Role.LEADER:
            return
        if self.prs[self.id].maybe_update(self.log.stable_last_index()) and self._maybe_commit():
            self._broadcast_append()

    # -- proposals, reads, transfers ------------------------------------------------------

    def propose(self, payloads: list[bytes]) -> int:
        """Append ``payloads`` as new entries; returns the index of the first."""
        if self.role != Role.LEADER:
            raise NotLeaderError(self.lead, self.term)
        if self.lead_transferee != NONE:
            raise ProposalDroppedError(
                f"leadership is being transferred to node {self.lead_transferee}"
            )
        first = self.log.last_index() + 1
        entries = [Entry(self.term, first + offset, data) for offset, data in enumerate(payloads)]
        self.log.append(entries)
        self._broadcast_append()
        return first

    def read_index(self, context: bytes) -> None:
        """Request a linearizable read; the answer arrives as a ReadState."""
        if self.role == Role.LEADER:
            self._handle_read_index(context, self.id)
        elif self.lead != NONE and self.role == Role.FOLLOWER:
            self.send(self._message(MT.READ_INDEX, self.lead, context=context))
        else:
            raise NotLeaderError(self.lead, self.term)

    def _handle_read_index(self, context: bytes, origin: int) -> None:
        if not self._committed_in_current_term():
            # Dissertation 6.4 step 1: our commit index is only known to be
            # current once an entry of our term committed. This holds for a
            # single voter too: commit-only writes are not fsynced, so after a
            # restart its commit index may lag entries it already applied.
            self.pending_reads.append((context, origin))
            return
        if len(self.voters) == 1:
            self._answer_read(context, origin, self.log.committed)
            return
        if self.read_only.add_request(self.log.committed, context, origin):
            self.read_only.receive_ack(self.id, context)
            self._broadcast_heartbeat(context)

    def _answer_read(self, context: bytes, origin: int, index: int) -> None:
        if origin == self.id:
            self.read_states.append(ReadState(index, context))
        else:
            self.send(self._message(MT.READ_INDEX_RESPONSE, origin, index=index, context=context))

    def transfer_leader(self, target: int) -> None:
        """Dissertation 3.10: hand leadership to ``target`` once it is up to date."""
        if self.role != Role.LEADER:
            raise NotLeaderError(self.lead, self.term)
        if target == self.id or target not in self.prs:
            return
        if self.lead_transferee == target:
            return
        self._abort_leader_transfer()
        self.lead_transferee = target
        # The transfer must finish within an election timeout or it is abandoned.
        self.election_elapsed = 0
        if self.prs[target].match == self.log.last_index():
            self.send(self._message(MT.TIMEOUT_NOW, target))
        else:
            self._send_append(target)

    def _abort_leader_transfer(self) -> None:
        self.lead_transferee = NONE

    def report_unreachable(self, node: int) -> None:
        progress = self.prs.get(node)
        if (
            self.role == Role.LEADER
            and progress is not None
            and progress.state == ProgressState.REPLICATE
        ):
            progress.become_probe()

    def report_snapshot(self, node: int, success: bool) -> None:
        progress = self.prs.get(node)
        if self.role != Role.LEADER or progress is None:
            return
        if progress.state != ProgressState.SNAPSHOT:
            return
        if not success:
            progress.pending_snapshot = 0
        progress.become_probe()
        # Wait for the follower's answer (or the next heartbeat) before probing.
        progress.probe_sent = True
