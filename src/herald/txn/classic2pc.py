"""Classic two-phase commit: a coordinator, its cohorts, and the window in which they block.

Phase one, the coordinator sends PREPARE; each cohort does the transaction's
work, takes its locks, forces a *prepared* record and votes yes, or forces an
abort and votes no. Phase two, the coordinator forces its decision (commit only
if every vote was yes; abort on a no or when votes do not arrive in time) and
sends it until every cohort acknowledges; each cohort forces the decision and
releases its locks.

Between voting yes and hearing the decision a cohort is *uncertain*: it gave
up its right to abort, so it must hold its locks and wait. When it times out
it runs the cooperative termination protocol: it asks the coordinator and the
other cohorts. A cohort that knows the outcome answers with it; one that has
not voted yet aborts on the spot and answers abort; one that is itself
uncertain can only say so. If the coordinator is down and every reachable
cohort is uncertain, nobody can decide: that is 2PC's blocking, and no timeout
in the cohorts can end it.

Recovery reads the durable log. The coordinator uses *presumed abort*: a
transaction it began but never decided is aborted on restart, and one it has
no record of is answered with abort. A cohort with a prepared record and no
decision is uncertain again (and takes its locks again); one that did the work
but never logged a vote may abort unilaterally.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from herald.errors import UsageError

from .log import DurableLog
from .messages import Decision, Kind, TxnMessage, TxnNote

__all__ = ["Cohort", "CohortRecord", "Coordinator", "CoordinatorRecord", "Timing"]


@dataclass(frozen=True, slots=True)
class Timing:
    """Timeouts, in ticks of the node's clock."""

    vote_timeout: int = 50  # coordinator: abort when votes are missing this long
    resend: int = 5  # retransmit unanswered PREPAREs and decisions this often
    termination: int = 20  # cohort: ask others after being uncertain this long


@dataclass(frozen=True, slots=True)
class CoordinatorRecord:
    kind: str  # "begin", "decision" or "end"
    txn: int
    participants: tuple[int, ...] = ()
    decision: Decision | None = None


@dataclass(frozen=True, slots=True)
class CohortRecord:
    kind: str  # "work", "prepared" or "decision"
    txn: int
    coordinator: int = 0
    participants: tuple[int, ...] = ()
    decision: Decision | None = None


def _kind_of(decision: Decision) -> Kind:
    return Kind.COMMIT if decision is Decision.COMMIT else Kind.ABORT


@dataclass(slots=True)
class _Round:
    """The coordinator's view of one transaction still in progress."""

    participants: tuple[int, ...]
    votes: dict[int, bool] = field(default_factory=dict)
    decision: Decision | None = None
    acked: set[int] = field(default_factory=set)
    waited: int = 0  # ticks since PREPARE went out
    since_send: int = 0


class Coordinator:
    """The 2PC coordinator. Drive it with :meth:`begin`, :meth:`step` and :meth:`tick`."""

    def __init__(
        self, node_id: int, log: DurableLog[CoordinatorRecord], timing: Timing | None = None
    ) -> None:
        self.id = node_id
        self.log = log
        self.timing = timing or Timing()
        self.rounds: dict[int, _Round] = {}
        self.decided: dict[int, Decision] = {}
        self.outbox: list[TxnMessage] = []
        self.notes: list[TxnNote] = []
        self._recover()

    # -- the core's interface ---------------------------------------------------------------

    def begin(self, txn: int, participants: Sequence[int]) -> None:
        """Start committing ``txn`` across ``participants``.

        Raises :class:`UsageError` if ``txn`` was begun before.
        """
        if txn in self.rounds or txn in self.decided:
            raise UsageError(f"transaction {txn} was already begun")
        members = tuple(participants)
        self.log.append(CoordinatorRecord("begin", txn, members))
        self.rounds[txn] = _Round(members)
        self.notes.append(TxnNote("begin", txn, participants=members))
        for cohort in members:
            self._send(cohort, Kind.PREPARE, txn, members)

    def step(self, message: TxnMessage) -> None:
        kind = message.kind
        if kind in (Kind.VOTE_YES, Kind.VOTE_NO):
            self._on_vote(message)
        elif kind is Kind.ACK:
            self._on_ack(message)
        elif kind is Kind.DECISION_REQUEST:
            self._on_decision_request(message)

    def tick(self) -> None:
        timing = self.timing
        for txn in sorted(self.rounds):
            state = self.rounds[txn]
            state.waited += 1
            state.since_send += 1
            if state.decision is None and state.waited >= timing.vote_timeout:
                self._decide(txn, Decision.ABORT)
            elif state.since_send >= timing.resend:
                state.since_send = 0
                if state.decision is None:
                    for cohort in state.participants:
                        if cohort not in state.votes:
                            self._send(cohort, Kind.PREPARE, txn, state.participants)
                else:
                    for cohort in state.participants:
                        if cohort not in state.acked:
                            self._send(cohort, _kind_of(state.decision), txn)

    def take_messages(self) -> list[TxnMessage]:
        out, self.outbox = self.outbox, []
        return out

    def take_notes(self) -> list[TxnNote]:
        out, self.notes = self.notes, []
        return out

    def missing_votes(self, txn: int) -> int:
        """How many votes ``txn`` still waits for (0 once decided or unknown)."""
        state = self.rounds.get(txn)
        if state is None or state.decision is not None:
            return 0
        return len(state.participants) - len(state.votes)

    def voted(self, txn: int) -> tuple[int, ...]:
        """The cohorts whose votes on ``txn`` arrived (while it is undecided)."""
        state = self.rounds.get(txn)
        return tuple(sorted(state.votes)) if state is not None else ()

    # -- handlers ---------------------------------------------------------------------------

    def _on_vote(self, message: TxnMessage) -> None:
        state = self.rounds.get(message.txn)
        if state is None or state.decision is not None or message.src in state.votes:
            return
        state.votes[message.src] = message.kind is Kind.VOTE_YES
        if not state.votes[message.src]:
            self._decide(message.txn, Decision.ABORT)
        elif len(state.votes) == len(state.participants):
            self.notes.append(TxnNote("votes-collected", message.txn))
            self._decide(message.txn, Decision.COMMIT)

    def _on_ack(self, message: TxnMessage) -> None:
        state = self.rounds.get(message.txn)
        if state is None or state.decision is None:
            return
        state.acked.add(message.src)
        if state.acked.issuperset(state.participants):
            self.log.append(CoordinatorRecord("end", message.txn))
            del self.rounds[message.txn]

    def _on_decision_request(self, message: TxnMessage) -> None:
        decision = self.decided.get(message.txn)
        if decision is not None:
            self._send(message.src, _kind_of(decision), message.txn)
        elif message.txn not in self.rounds:
            # Presumed abort: no record means it never committed.
            self._send(message.src, Kind.ABORT, message.txn)
        # Still collecting votes: the decision will come.

    def _decide(self, txn: int, decision: Decision) -> None:
        state = self.rounds[txn]
        self.log.append(CoordinatorRecord("decision", txn, decision=decision))
        state.decision = decision
        state.since_send = 0
        self.decided[txn] = decision
        self.notes.append(TxnNote(decision.value, txn))
        for cohort in state.participants:
            self._send(cohort, _kind_of(decision), txn)

    def _send(self, to: int, kind: Kind, txn: int, participants: tuple[int, ...] = ()) -> None:
        self.outbox.append(TxnMessage(self.id, to, kind, txn, participants))

    def _recover(self) -> None:
        for record in self.log.records():
            if record.kind == "begin":
                self.rounds[record.txn] = _Round(record.participants)
            elif record.kind == "decision" and record.decision is not None:
                self.decided[record.txn] = record.decision
                if record.txn in self.rounds:
                    self.rounds[record.txn].decision = record.decision
            elif record.kind == "end":
                self.rounds.pop(record.txn, None)
        for txn in sorted(self.rounds):
            state = self.rounds[txn]
            if state.decision is None:
                self._decide(txn, Decision.ABORT)  # presumed abort
            else:
                for cohort in state.participants:
                    self._send(cohort, _kind_of(state.decision), txn)


@dataclass(slots=True)
class _Work:
    """A cohort's view of one transaction."""

    coordinator: int
    participants: tuple[int, ...]
    phase: str  # "working" (work done, no vote logged), "prepared", "committed", "aborted"
    uncertain_ticks: int = 0


class Cohort:
    """A 2PC cohort (a resource manager): votes, holds locks while uncertain, obeys."""

    def __init__(
        self,
        node_id: int,
        log: DurableLog[CohortRecord],
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
        self.work: dict[int, _Work] = {}
        self.outbox: list[TxnMessage] = []
        self.notes: list[TxnNote] = []
        self._recover()

    # -- the core's interface ---------------------------------------------------------------

    def step(self, message: TxnMessage) -> None:
        kind = message.kind
        if kind is Kind.PREPARE:
            self._on_prepare(message)
        elif kind in (Kind.COMMIT, Kind.ABORT):
            decision = Decision.COMMIT if kind is Kind.COMMIT else Decision.ABORT
            self._on_decision(message, decision)
        elif kind is Kind.DECISION_REQUEST:
            self._on_decision_request(message)

    def tick(self) -> None:
        for txn in sorted(self.work):
            work = self.work[txn]
            if work.phase != "prepared":
                continue
            work.uncertain_ticks += 1
            if work.uncertain_ticks >= self.timing.termination:
                work.uncertain_ticks = 0
                self._ask_for_decision(txn, work)

    def take_messages(self) -> list[TxnMessage]:
        out, self.outbox = self.outbox, []
        return out

    def take_notes(self) -> list[TxnNote]:
        out, self.notes = self.notes, []
        return out

    def phase(self, txn: int) -> str:
        work = self.work.get(txn)
        return "unknown" if work is None else work.phase

    # -- handlers ---------------------------------------------------------------------------

    def _on_prepare(self, message: TxnMessage) -> None:
        txn = message.txn
        work = self.work.get(txn)
        if work is None:
            self.log.append(CohortRecord("work", txn, message.src, message.participants))
            work = _Work(message.src, message.participants, "working")
            self.work[txn] = work
            if self.votes_yes(txn):
                self.notes.append(TxnNote("lock", txn, count=self.locks_per_txn))
                self._persist_vote(txn)
                work.phase = "prepared"
                self.notes.append(TxnNote("vote-yes", txn))
            else:
                self.notes.append(TxnNote("vote-no", txn))
                self._decide(txn, work, Decision.ABORT)
        if work.phase == "prepared":
            self._send(message.src, Kind.VOTE_YES, txn)
        elif work.phase == "aborted":
            self._send(message.src, Kind.VOTE_NO, txn)

    def _persist_vote(self, txn: int) -> None:
        """Force the yes vote before sending it: after this the cohort may not abort alone."""
        work = self.work[txn]
        self.log.append(CohortRecord("prepared", txn, work.coordinator, work.participants))

    def _on_decision(self, message: TxnMessage, decision: Decision) -> None:
        txn = message.txn
        work = self.work.get(txn)
        if work is None and decision is Decision.ABORT:
            # Aborted before our PREPARE arrived: remember, so a late PREPARE gets a no.
            work = self._unseen(txn)
        if work is not None and work.phase in ("prepared", "working"):
            self._decide(txn, work, decision)
        self._send(message.src, Kind.ACK, txn)

    def _on_decision_request(self, message: TxnMessage) -> None:
        txn = message.txn
        work = self.work.get(txn)
        if work is None:
            # Not voted yet: free to abort, and saying so settles it for everyone.
            work = self._unseen(txn)
            self._decide(txn, work, Decision.ABORT)
        if work.phase == "committed":
            self._send(message.src, Kind.COMMIT, txn)
        elif work.phase == "aborted":
            self._send(message.src, Kind.ABORT, txn)
        else:
            self._send(message.src, Kind.UNCERTAIN, txn)

    def _ask_for_decision(self, txn: int, work: _Work) -> None:
        self.notes.append(TxnNote("termination", txn))
        for node in (work.coordinator, *work.participants):
            if node != self.id:
                self._send(node, Kind.DECISION_REQUEST, txn)

    def _decide(self, txn: int, work: _Work, decision: Decision) -> None:
        held = work.phase == "prepared"
        self.log.append(CohortRecord("decision", txn, decision=decision))
        work.phase = "committed" if decision is Decision.COMMIT else "aborted"
        self.notes.append(TxnNote(decision.value, txn))
        if held:
            self.notes.append(TxnNote("unlock", txn))

    def _unseen(self, txn: int) -> _Work:
        work = _Work(0, (), "working")
        self.work[txn] = work
        return work

    def _send(self, to: int, kind: Kind, txn: int) -> None:
        self.outbox.append(TxnMessage(self.id, to, kind, txn))

    def _recover(self) -> None:
        for record in self.log.records():
            if record.kind == "work":
                self.work[record.txn] = _Work(record.coordinator, record.participants, "working")
            elif record.kind == "prepared":
                self.work[record.txn].phase = "prepared"
            elif record.kind == "decision" and record.decision is not None:
                committed = record.decision is Decision.COMMIT
                work = self.work.get(record.txn) or self._unseen(record.txn)
                work.phase = "committed" if committed else "aborted"
        for txn in sorted(self.work):
            work = self.work[txn]
            if work.phase == "working":
                # It never voted yes, so nobody can have committed: abort alone.
                self._decide(txn, work, Decision.ABORT)
            elif work.phase == "prepared":
                # Still bound by its vote: take the locks again and ask at once.
                self.notes.append(TxnNote("lock", txn, count=self.locks_per_txn))
                self._ask_for_decision(txn, work)
