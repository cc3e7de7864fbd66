"""Classic three-phase commit with timeouts: non-blocking under crashes, not under partitions.

Skeen's protocol puts a *pre-commit* state between voting and committing, so
that no cohort can commit while another is still merely uncertain:

1. the coordinator sends CAN_COMMIT; cohorts vote (a yes is forced to the log,
   locks are taken; a no aborts at once);
2. on all yes the coordinator forces a pre-commit record and sends PRE_COMMIT;
   cohorts force it and acknowledge (a missing vote aborts the transaction);
3. the coordinator commits and sends the decision. A cohort that does not
   acknowledge the pre-commit in time is presumed crashed: the coordinator
   commits anyway.

When the coordinator goes quiet a cohort runs the *termination protocol* as a
backup coordinator. The backups are ranked by id: the cohort of rank r waits
``timeout * (r + 1)`` ticks of silence, so with a synchronous network the
lowest live cohort acts first, and any STATE_REQUEST it sends silences the
others. The backup collects the states of the cohorts it can reach for
``window`` ticks, then decides:

- someone committed (or aborted): do the same;
- someone is pre-committed: pre-commit everyone it reached, wait ``window``
  ticks, commit;
- everyone it reached is uncertain: abort (nobody can have committed, *if the
  cohorts it did not reach have crashed*).

That last rule is where partitions break it: a backup cannot tell a crashed
cohort from an unreachable one. If the network splits while the pre-commits
are in flight, the side holding a pre-committed cohort (or the coordinator)
commits and the side where everyone is uncertain aborts. The protocol assumes
a synchronous network without loss; on any other network it gives up
atomicity, never liveness. The ``3pc`` lab scenario shows both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from herald.errors import UsageError

from .log import DurableLog
from .messages import Decision, Kind, TxnMessage, TxnNote

__all__ = ["Cohort", "Coordinator", "Record", "Timing"]


@dataclass(frozen=True, slots=True)
class Timing:
    """Timeouts, in ticks."""

    vote_timeout: int = 20  # coordinator: abort if votes are missing this long
    ack_timeout: int = 20  # coordinator: commit anyway if pre-commit acks are missing
    resend: int = 5  # coordinator: resend its decision to unacknowledged cohorts
    timeout: int = 20  # cohort: silence before the rank-0 backup takes over
    window: int = 5  # backup: how long to collect states, and acks of its pre-commits


@dataclass(frozen=True, slots=True)
class Record:
    """A durable record of either role: ``begin``, ``pre-commit``, ``decision``
    (coordinator); ``prepared``, ``pre-commit``, ``decision`` (cohort)."""

    kind: str
    txn: int
    peer: int = 0  # a cohort's coordinator
    participants: tuple[int, ...] = ()
    decision: Decision | None = None


def _kind_of(decision: Decision) -> Kind:
    return Kind.COMMIT if decision is Decision.COMMIT else Kind.ABORT


@dataclass(slots=True)
class _Round:
    participants: tuple[int, ...]
    phase: str = "voting"  # voting, pre-committing, decided, inquiring
    votes: set[int] = field(default_factory=set)
    acks: set[int] = field(default_factory=set)
    decision: Decision | None = None
    decision_acks: set[int] = field(default_factory=set)
    waited: int = 0


class Coordinator:
    """The 3PC coordinator."""

    def __init__(self, node_id: int, log: DurableLog[Record], timing: Timing | None = None) -> None:
        self.id = node_id
        self.log = log
        self.timing = timing or Timing()
        self.rounds: dict[int, _Round] = {}
        self.outbox: list[TxnMessage] = []
        self.notes: list[TxnNote] = []
        self._recover()

    def begin(self, txn: int, participants: Sequence[int]) -> None:
        """Start committing ``txn``; raises :class:`UsageError` if it was begun before."""
        if txn in self.rounds:
            raise UsageError(f"transaction {txn} was already begun")
        members = tuple(participants)
        self.log.append(Record("begin", txn, participants=members))
        self.rounds[txn] = _Round(members)
        self.notes.append(TxnNote("begin", txn, participants=members))
        for cohort in members:
            self._send(cohort, Kind.CAN_COMMIT, txn, members)

    def step(self, message: TxnMessage) -> None:
        state = self.rounds.get(message.txn)
        if state is None:
            return
        kind = message.kind
        if kind is Kind.VOTE_NO and state.phase == "voting":
            self._decide(message.txn, state, Decision.ABORT)
        elif kind is Kind.VOTE_YES and state.phase == "voting":
            state.votes.add(message.src)
            if state.votes.issuperset(state.participants):
                self.notes.append(TxnNote("votes-collected", message.txn))
                self.log.append(Record("pre-commit", message.txn))
                state.phase = "pre-committing"
                state.waited = 0
                self.notes.append(TxnNote("pre-commit", message.txn))
                for cohort in state.participants:
                    self._send(cohort, Kind.PRE_COMMIT, message.txn)
        elif kind is Kind.PRE_COMMIT_ACK and state.phase == "pre-committing":
            state.acks.add(message.src)
            if state.acks.issuperset(state.participants):
                self._decide(message.txn, state, Decision.COMMIT)
        elif kind is Kind.ACK and state.phase == "decided":
            state.decision_acks.add(message.src)
        elif kind is Kind.STATE_REPLY and state.phase == "inquiring":
            if message.state in ("committed", "aborted"):
                committed = message.state == "committed"
                self._decide(message.txn, state, Decision.COMMIT if committed else Decision.ABORT)
        elif kind is Kind.STATE_REQUEST and state.decision is not None:
            reply = "committed" if state.decision is Decision.COMMIT else "aborted"
            self._send(message.src, Kind.STATE_REPLY, message.txn, state=reply)

    def tick(self) -> None:
        timing = self.timing
        for txn in sorted(self.rounds):
            state = self.rounds[txn]
            state.waited += 1
            if state.phase == "voting" and state.waited >= timing.vote_timeout:
                self._decide(txn, state, Decision.ABORT)
            elif state.phase == "pre-committing" and state.waited >= timing.ack_timeout:
                # Cohorts that did not acknowledge are presumed crashed.
                self._decide(txn, state, Decision.COMMIT)
            elif state.waited % timing.resend == 0:
                if state.phase == "decided" and state.decision is not None:
                    for cohort in state.participants:
                        if cohort not in state.decision_acks:
                            self._send(cohort, _kind_of(state.decision), txn)
                elif state.phase == "inquiring":
                    for cohort in state.participants:
                        self._send(cohort, Kind.STATE_REQUEST, txn)

    def take_messages(self) -> list[TxnMessage]:
        out, self.outbox = self.outbox, []
        return out

    def take_notes(self) -> list[TxnNote]:
        out, self.notes = self.notes, []
        return out

    def missing_votes(self, txn: int) -> int:
        state = self.rounds.get(txn)
        if state is None or state.phase != "voting":
            return 0
        return len(state.participants) - len(state.votes)

    def voted(self, txn: int) -> tuple[int, ...]:
        state = self.rounds.get(txn)
        return tuple(sorted(state.votes)) if state is not None else ()

    def _decide(self, txn: int, state: _Round, decision: Decision) -> None:
        self.log.append(Record("decision", txn, decision=decision))
        state.phase = "decided"
        state.decision = decision
        state.waited = 0
        self.notes.append(TxnNote(decision.value, txn))
        for cohort in state.participants:
            self._send(cohort, _kind_of(decision), txn)

    def _send(
        self, to: int, kind: Kind, txn: int, participants: tuple[int, ...] = (), state: str = ""
    ) -> None:
        self.outbox.append(TxnMessage(self.id, to, kind, txn, participants, state))

    def _recover(self) -> None:
        for record in self.log.records():
            if record.kind == "begin":
                self.rounds[record.txn] = _Round(record.participants)
            elif record.kind == "decision":
                state = self.rounds[record.txn]
                state.phase = "decided"
                state.decision = record.decision
        for txn in sorted(self.rounds):
            state = self.rounds[txn]
            if state.decision is not None:
                for cohort in state.participants:
                    self._send(cohort, _kind_of(state.decision), txn)
            else:
                # The cohorts may have terminated without us: learn what they decided.
                state.phase = "inquiring"
                for cohort in state.participants:
                    self._send(cohort, Kind.STATE_REQUEST, txn)


@dataclass(slots=True)
class _Txn:
    coordinator: int
    participants: tuple[int, ...]
    phase: str  # uncertain, precommitted, committed, aborted
    locked: bool = False
    quiet: int = 0  # ticks without word from a coordinator or a backup
    # The termination protocol, while this cohort acts as backup coordinator:
    stage: str = ""  # "", "collecting", "pre-committing"
    attempt: int = 0
    window: int = 0
    states: dict[int, str] = field(default_factory=dict)


_UNDECIDED = ("uncertain", "precommitted")


class Cohort:
    """A 3PC cohort, and the backup coordinator it becomes when the coordinator goes quiet."""

    def __init__(
        self,
        node_id: int,
        log: DurableLog[Record],
        *,
        votes_yes: Callable[[int], bool] | None = None,
        locks_per_txn: int = 2,
        timing: Timing | None = None,
    ) -> None:
        self.id = node_id
        self.log = log
        self.votes_yes = votes_yes or (lambda txn: True)
        self.locks_per_txn = locks_per_txn
        self.timing = timing or Timing()
        self.txns: dict[int, _Txn] = {}
        self.outbox: list[TxnMessage] = []
        self.notes: list[TxnNote] = []
        self._recover()

    def phase(self, txn: int) -> str:
        work = self.txns.get(txn)
        return "unknown" if work is None else work.phase

    def step(self, message: TxnMessage) -> None:
        kind = message.kind
        txn = self.txns.get(message.txn)
        if kind is Kind.CAN_COMMIT:
            self._on_can_commit(message, txn)
        elif txn is None:
            if kind is Kind.STATE_REQUEST:
                # Never asked to vote: free to abort, and that settles it.
                txn = self._unseen(message)
                self._decide(message.txn, txn, Decision.ABORT)
                self._reply_state(message, txn)
            elif kind is Kind.ABORT:
                self._decide(message.txn, self._unseen(message), Decision.ABORT)
        elif kind is Kind.PRE_COMMIT:
            txn.quiet = 0
            if txn.phase == "uncertain":
                self._pre_commit(message.txn, txn)
            if txn.phase in ("precommitted", "committed"):
                self._send(message.src, Kind.PRE_COMMIT_ACK, message.txn)
        elif kind in (Kind.COMMIT, Kind.ABORT):
            txn.quiet = 0
            if txn.phase in _UNDECIDED:
                decision = Decision.COMMIT if kind is Kind.COMMIT else Decision.ABORT
                self._decide(message.txn, txn, decision)
            self._send(message.src, Kind.ACK, message.txn)
        elif kind is Kind.STATE_REQUEST:
            if txn.phase in _UNDECIDED:
                txn.quiet = 0
                if txn.stage and self._rank(message.src, txn) < self._rank(self.id, txn):
                    txn.stage = ""  # a better-ranked backup is at work: leave it to it
            self._reply_state(message, txn)
        elif kind is Kind.STATE_REPLY:
            if txn.stage == "collecting" and message.attempt == txn.attempt:
                txn.states[message.src] = message.state
        elif kind is Kind.PRE_COMMIT_ACK and txn.stage == "pre-committing":
            txn.states[message.src] = "precommitted"

    def tick(self) -> None:
        for number in sorted(self.txns):
            txn = self.txns[number]
            if txn.phase not in _UNDECIDED:
                continue
            if not txn.stage:
                txn.quiet += 1
                if txn.quiet >= self.timing.timeout * (self._rank(self.id, txn) + 1):
                    self._start_termination(number, txn)
                continue
            txn.window -= 1
            if txn.window > 0:
                continue
            if txn.stage == "collecting":
                self._terminate(number, txn)
            else:
                self._finish(number, txn, Decision.COMMIT)

    def take_messages(self) -> list[TxnMessage]:
        out, self.outbox = self.outbox, []
        return out

    def take_notes(self) -> list[TxnNote]:
        out, self.notes = self.notes, []
        return out

    # -- the protocol ---------------------------------------------------------------------------

    def _on_can_commit(self, message: TxnMessage, txn: _Txn | None) -> None:
        if txn is None:
            txn = _Txn(message.src, message.participants, "uncertain")
            self.txns[message.txn] = txn
            if self.votes_yes(message.txn):
                txn.locked = True
                self.notes.append(TxnNote("lock", message.txn, count=self.locks_per_txn))
                self.log.append(Record("prepared", message.txn, message.src, message.participants))
                self.notes.append(TxnNote("vote-yes", message.txn))
            else:
                self.notes.append(TxnNote("vote-no", message.txn))
                self._decide(message.txn, txn, Decision.ABORT)
        txn.quiet = 0
        vote = Kind.VOTE_NO if txn.phase == "aborted" else Kind.VOTE_YES
        self._send(message.src, vote, message.txn)

    def _pre_commit(self, number: int, txn: _Txn) -> None:
        self.log.append(Record("pre-commit", number))
        txn.phase = "precommitted"
        self.notes.append(TxnNote("pre-commit", number))

    def _rank(self, node: int, txn: _Txn) -> int:
        members = sorted(txn.participants)
        return members.index(node) if node in members else len(members)

    def _start_termination(self, number: int, txn: _Txn) -> None:
        txn.stage = "collecting"
        txn.attempt += 1
        txn.window = self.timing.window
        txn.states = {self.id: txn.phase}
        self.notes.append(TxnNote("termination", number))
        for node in txn.participants:
            if node != self.id:
                self.outbox.append(
                    TxnMessage(self.id, node, Kind.STATE_REQUEST, number, attempt=txn.attempt)
                )

    def _terminate(self, number: int, txn: _Txn) -> None:
        states = set(txn.states.values())
        if "committed" in states:
            self._finish(number, txn, Decision.COMMIT)
        elif "aborted" in states:
            self._finish(number, txn, Decision.ABORT)
        elif "precommitted" in states:
            if txn.phase == "uncertain":
                self._pre_commit(number, txn)
            txn.stage = "pre-committing"
            txn.window = self.timing.window
            for node in sorted(txn.states):
                if node != self.id:
                    self._send(node, Kind.PRE_COMMIT, number)
        else:
            # Everyone reachable is uncertain, so (if the others crashed) nobody committed.
            self._finish(number, txn, Decision.ABORT)

    def _finish(self, number: int, txn: _Txn, decision: Decision) -> None:
        self._decide(number, txn, decision)
        for node in txn.participants:
            if node != self.id:
                self._send(node, _kind_of(decision), number)

    def _decide(self, number: int, txn: _Txn, decision: Decision) -> None:
        held, txn.locked = txn.locked, False
        self.log.append(Record("decision", number, decision=decision))
        txn.phase = "committed" if decision is Decision.COMMIT else "aborted"
        txn.stage = ""
        self.notes.append(TxnNote(decision.value, number))
        if held:
            self.notes.append(TxnNote("unlock", number))

    def _reply_state(self, message: TxnMessage, txn: _Txn) -> None:
        self.outbox.append(
            TxnMessage(
                self.id,
                message.src,
                Kind.STATE_REPLY,
                message.txn,
                state=txn.phase,
                attempt=message.attempt,
            )
        )

    def _unseen(self, message: TxnMessage) -> _Txn:
        txn = _Txn(0, (), "uncertain")
        self.txns[message.txn] = txn
        return txn

    def _send(self, to: int, kind: Kind, txn: int) -> None:
        self.outbox.append(TxnMessage(self.id, to, kind, txn))

    def _recover(self) -> None:
        for record in self.log.records():
            if record.kind == "prepared":
                self.txns[record.txn] = _Txn(record.peer, record.participants, "uncertain")
            elif record.kind == "pre-commit":
                self.txns[record.txn].phase = "precommitted"
            elif record.kind == "decision" and record.decision is not None:
                txn = self.txns.get(record.txn)
                if txn is None:
                    txn = _Txn(0, (), "uncertain")
                    self.txns[record.txn] = txn
                txn.phase = "committed" if record.decision is Decision.COMMIT else "aborted"
        for number in sorted(self.txns):
            txn = self.txns[number]
            if txn.phase in _UNDECIDED:
                txn.locked = True
                self.notes.append(TxnNote("lock", number, count=self.locks_per_txn))
