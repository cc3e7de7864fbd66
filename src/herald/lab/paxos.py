"""Single-decree Paxos: proposers, acceptors and learners as sans-IO cores.

Lamport's synod protocol, choosing one value:

- phase 1: a proposer picks a ballot (round, proposer id) higher than any it
  has seen and sends PREPARE to every acceptor. An acceptor that has promised
  nothing higher promises this ballot and reports the highest-ballot value it
  has accepted (if any); otherwise it answers NACK with its promise;
- phase 2: with promises from a majority, the proposer sends ACCEPT with the
  value of the highest-ballot acceptance reported, or its own value if none
  was. An acceptor accepts unless it promised a higher ballot, and tells the
  proposer and every learner;
- a learner that hears the same ballot accepted by a majority has learned the
  value; it answers LEARNED so acceptors stop repeating themselves.

Liveness needs help the protocol does not give: duelling proposers can pre-empt
each other forever. Each proposer therefore waits a random time (from its
injected ``random.Random``) before retrying after a NACK or a silent round.

Durability: an acceptor forces its promise and acceptance before answering,
and a proposer forces the highest round it used (reusing a ballot with another
value after a restart would be unsafe). Both keep them in a
:class:`~herald.txn.log.DurableLog`; everything else is volatile.

:func:`check_agreement` judges a run from the acceptors' history: a value is
*chosen* when a majority accepted it in one ballot; at most one value may be
chosen, it must have been proposed, and learners may learn only it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from herald.txn.log import DurableLog

__all__ = [
    "Acceptor",
    "AcceptorState",
    "AgreementReport",
    "Learner",
    "PaxosMessage",
    "Proposer",
    "check_agreement",
]

Ballot = tuple[int, int]  # (round, proposer id); (0, 0) is "none"
NO_BALLOT: Ballot = (0, 0)


@dataclass(frozen=True, slots=True)
class PaxosMessage:
    src: int
    dst: int
    kind: str  # prepare, promise, nack, accept, accepted, learned
    ballot: Ballot
    accepted: Ballot = NO_BALLOT  # promise: the highest ballot accepted; nack: the promise
    value: str | None = None

    def __str__(self) -> str:
        return f"{self.kind} b{self.ballot} n{self.src}->n{self.dst} {self.value or ''}"


@dataclass(frozen=True, slots=True)
class AcceptorState:
    promised: Ballot = NO_BALLOT
    accepted: Ballot = NO_BALLOT
    value: str | None = None


def _majority(count: int) -> int:
    return count // 2 + 1


class Acceptor:
    """Promises and accepts; its state is forced to its log before it answers."""

    def __init__(
        self,
        node_id: int,
        log: DurableLog[AcceptorState],
        learners: Sequence[int],
        resend: int = 5,
    ) -> None:
        self.id = node_id
        self.log = log
        self.learners = tuple(learners)
        self.resend = resend
        records = log.records()
        self.state = records[-1] if records else AcceptorState()
        self.informed: set[int] = set()  # learners that confirmed they learned
        self.outbox: list[PaxosMessage] = []
        self._ticks = 0

    def step(self, message: PaxosMessage) -> None:
        state = self.state
        if message.kind == "prepare":
            if message.ballot > state.promised:
                self._persist(AcceptorState(message.ballot, state.accepted, state.value))
                self._promise(message)
            else:
                self._send(message.src, "nack", message.ballot, state.promised)
        elif message.kind == "accept":
            if message.ballot >= state.promised:
                self._persist(AcceptorState(message.ballot, message.ballot, message.value))
                self._send(message.src, "accepted", message.ballot, value=message.value)
                self.informed.clear()
                for learner in self.learners:
                    self._send(learner, "accepted", message.ballot, value=message.value)
            else:
                self._send(message.src, "nack", message.ballot, state.promised)
        elif message.kind == "learned" and message.ballot == state.accepted:
            self.informed.add(message.src)

    def _promise(self, message: PaxosMessage) -> None:
        state = self.state
        self._send(message.src, "promise", message.ballot, state.accepted, state.value)

    def tick(self) -> None:
        self._ticks += 1
        state = self.state
        if self._ticks % self.resend or state.accepted == NO_BALLOT:
            return
        for learner in self.learners:
            if learner not in self.informed:
                self._send(learner, "accepted", state.accepted, value=state.value)

    def take_messages(self) -> list[PaxosMessage]:
        out, self.outbox = self.outbox, []
        return out

    def _persist(self, state: AcceptorState) -> None:
        self.log.append(state)
        self.state = state

    def _send(
        self,
        to: int,
        kind: str,
        ballot: Ballot,
        accepted: Ballot = NO_BALLOT,
        value: str | None = None,
    ) -> None:
        self.outbox.append(PaxosMessage(self.id, to, kind, ballot, accepted, value))


class Proposer:
    """Drives ballots until its value (or whatever value is already chosen) is accepted."""

    def __init__(
        self,
        node_id: int,
        log: DurableLog[int],
        acceptors: Sequence[int],
        value: str,
        rng: random.Random,
        *,
        timeout: tuple[int, int] = (5, 15),
        backoff: tuple[int, int] = (1, 10),
        resend: int = 3,
    ) -> None:
        self.id = node_id
        self.log = log
        self.acceptors = tuple(acceptors)
        self.own_value = value
        self.rng = rng
        self.timeout = timeout
        self.backoff = backoff
        self.resend = resend
        records = log.records()
        self.round = records[-1] if records else 0
        self.highest_seen = self.round
        self.phase = "idle"  # idle, backoff, prepare, accept, done
        self.ballot: Ballot = NO_BALLOT
        self.promises: dict[int, tuple[Ballot, str | None]] = {}
        self.accepted_by: set[int] = set()
        self.proposal: str | None = None
        self.chosen: str | None = None
        self.ballots_started = 0
        self._wait = 0
        self._waited = 0
        self.outbox: list[PaxosMessage] = []

    def start(self) -> None:
        """Begin proposing (the driver's client call)."""
        if self.phase == "idle":
            self._prepare()

    def step(self, message: PaxosMessage) -> None:
        if message.ballot != self.ballot or self.phase in ("idle", "done", "backoff"):
            if message.kind == "nack":
                self.highest_seen = max(self.highest_seen, message.accepted[0])
            return
        if message.kind == "nack":
            self.highest_seen = max(self.highest_seen, message.accepted[0])
            self._back_off()
        elif message.kind == "promise" and self.phase == "prepare":
            self.promises[message.src] = (message.accepted, message.value)
            if len(self.promises) >= _majority(len(self.acceptors)):
                self._accept()
        elif message.kind == "accepted" and self.phase == "accept":
            self.accepted_by.add(message.src)
            if len(self.accepted_by) >= _majority(len(self.acceptors)):
                self.phase = "done"
                self.chosen = self.proposal

    def tick(self) -> None:
        if self.phase in ("idle", "done"):
            return
        self._waited += 1
        if self.phase == "backoff":
            if self._waited >= self._wait:
                self._prepare()
            return
        if self._waited >= self._wait:
            self._back_off()  # a silent round: maybe a majority is unreachable
        elif self._waited % self.resend == 0:
            self._resend()

    def take_messages(self) -> list[PaxosMessage]:
        out, self.outbox = self.outbox, []
        return out

    # -- phases -------------------------------------------------------------------------------

    def _prepare(self) -> None:
        self.round = max(self.round, self.highest_seen) + 1
        self.log.append(self.round)
        self.ballot = (self.round, self.id)
        self.ballots_started += 1
        self.phase = "prepare"
        self.promises = {}
        self.accepted_by = set()
        self._waited = 0
        self._wait = self.rng.randint(*self.timeout)
        for acceptor in self.acceptors:
            self._send(acceptor, "prepare")

    def _accept(self) -> None:
        best: tuple[Ballot, str | None] = (NO_BALLOT, None)
        for accepted, value in self.promises.values():
            if accepted > best[0]:
                best = (accepted, value)
        self.proposal = best[1] if best[0] != NO_BALLOT else self.own_value
        self.phase = "accept"
        self._waited = 0
        for acceptor in self.acceptors:
            self._send(acceptor, "accept", self.proposal)

    def _resend(self) -> None:
        if self.phase == "prepare":
            for acceptor in self.acceptors:
                if acceptor not in self.promises:
                    self._send(acceptor, "prepare")
        elif self.phase == "accept":
            for acceptor in self.acceptors:
                if acceptor not in self.accepted_by:
                    self._send(acceptor, "accept", self.proposal)

    def _back_off(self) -> None:
        self.phase = "backoff"
        self._waited = 0
        self._wait = self.rng.randint(*self.backoff)

    def _send(self, to: int, kind: str, value: str | None = None) -> None:
        self.outbox.append(PaxosMessage(self.id, to, kind, self.ballot, value=value))


class Learner:
    """Learns a value once a majority of acceptors accepted it in one ballot."""

    def __init__(self, node_id: int, acceptors: Sequence[int]) -> None:
        self.id = node_id
        self.acceptors = tuple(acceptors)
        self.votes: dict[Ballot, dict[int, str | None]] = {}
        self.learned: list[str | None] = []  # more than one entry would be a violation
        self.outbox: list[PaxosMessage] = []

    def step(self, message: PaxosMessage) -> None:
        if message.kind != "accepted":
            return
        voters = self.votes.setdefault(message.ballot, {})
        voters[message.src] = message.value
        if len(voters) >= _majority(len(self.acceptors)) and message.value not in self.learned:
            self.learned.append(message.value)
        if self.learned:
            # Whatever ballot it repeats, this acceptor need not tell us again.
            self.outbox.append(PaxosMessage(self.id, message.src, "learned", message.ballot))

    def tick(self) -> None:
        return

    def take_messages(self) -> list[PaxosMessage]:
        out, self.outbox = self.outbox, []
        return out


@dataclass(slots=True)
class AgreementReport:
    chosen: list[tuple[Ballot, str | None]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    @property
    def agreement(self) -> bool:
        return not self.violations

    @property
    def value(self) -> str | None:
        return self.chosen[0][1] if self.chosen else None


def check_agreement(
    acceptances: Iterable[tuple[int, Ballot, str | None]],
    acceptors: int,
    proposed: Iterable[str],
    learned: dict[int, list[str | None]],
) -> AgreementReport:
    """Judge a run: ``acceptances`` are (acceptor, ballot, value) in the order they
    happened; ``learned`` maps each learner to what it learned."""
    report = AgreementReport()
    by_ballot: dict[Ballot, dict[int, str | None]] = {}
    for acceptor, ballot, value in acceptances:
        voters = by_ballot.setdefault(ballot, {})
        if acceptor in voters and voters[acceptor] != value:
            report.violations.append(f"acceptor n{acceptor} accepted two values in ballot {ballot}")
        voters[acceptor] = value
    for ballot in sorted(by_ballot):
        values = list(by_ballot[ballot].values())
        for value in dict.fromkeys(values):
            if values.count(value) >= _majority(acceptors):
                report.chosen.append((ballot, value))
    distinct = list(dict.fromkeys(value for _, value in report.chosen))
    if len(distinct) > 1:
        report.violations.append(
            "two values chosen: "
            + ", ".join(f"{value!r} in ballot {ballot}" for ballot, value in report.chosen)
        )
    allowed = set(proposed)
    for value in distinct:
        if value not in allowed:
            report.violations.append(f"chosen value {value!r} was never proposed")
    for learner, values in sorted(learned.items()):
        if len(values) > 1:
            report.violations.append(f"learner n{learner} learned {values}")
        for value in values:
            if value not in distinct:
                report.violations.append(f"learner n{learner} learned unchosen {value!r}")
    return report
