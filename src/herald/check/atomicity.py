"""Atomic commitment, judged from a history: atomicity, validity and blocking.

The history is a list of :class:`TxnEvent`, stamped by whoever drove the
participants (the checker never looks inside a protocol). Properties:

- **atomicity**: no transaction is committed at one participant and aborted at
  another (the coordinator's decision counts as a participant's);
- **stability**: no participant decides one way and later the other (a node
  that forgot its vote across a crash does exactly this, or aborts while the
  others commit);
- **validity**: a transaction is committed only if every participant voted yes
  before the commit.

And the cost of safety, **blocking**: a cohort is *uncertain* from its yes vote
until it learns the decision. The report gives every uncertain interval (still
open at the end of the history if the cohort never learned), which of them
exceeded the caller's threshold (``blocked``), and how many locks were held over
time: a crashed node's lock table is volatile and empties, and a recovering
cohort that is still uncertain takes its locks again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["AtomicityReport", "TxnEvent", "Uncertainty", "check_atomicity"]

_DECISIONS = ("commit", "abort")


@dataclass(frozen=True, slots=True)
class TxnEvent:
    """One thing that happened: ``kind`` is ``begin`` (with ``participants``),
    ``vote-yes``, ``vote-no``, ``commit``, ``abort``, ``lock`` (``count`` locks
    now held for ``txn``), ``unlock``, or ``crash`` (``txn`` ignored); other
    kinds are kept but not judged."""

    time: int
    node: int
    txn: int
    kind: str
    count: int = 0
    participants: tuple[int, ...] = ()


@dataclass(slots=True)
class Uncertainty:
    """A cohort between its yes vote and learning the outcome (``end`` None: never)."""

    node: int
    txn: int
    start: int
    end: int | None = None

    def duration(self, end_time: int) -> int:
        return (self.end if self.end is not None else end_time) - self.start


@dataclass(slots=True)
class AtomicityReport:
    end_time: int
    transactions: int = 0
    outcomes: dict[int, str] = field(default_factory=dict)  # commit/abort/mixed/undecided
    violations: list[str] = field(default_factory=list)
    uncertain: list[Uncertainty] = field(default_factory=list)
    blocked: list[Uncertainty] = field(default_factory=list)
    lock_timeline: list[tuple[int, int]] = field(default_factory=list)  # (time, locks held)
    locks_held_at_end: int = 0
    lock_time: int = 0  # the integral of locks held over time (lock-microseconds)

    @property
    def atomic(self) -> bool:
        return not self.violations

    @property
    def max_uncertain(self) -> int:
        return max((u.duration(self.end_time) for u in self.uncertain), default=0)

    @property
    def undecided_at_end(self) -> int:
        return sum(u.end is None for u in self.uncertain)


def check_atomicity(
    events: Iterable[TxnEvent], end_time: int, blocking_threshold: int
) -> AtomicityReport:
    """Judge a history; ``blocking_threshold`` (same unit as event times) separates
    a cohort that waited for a normal round trip from one that was blocked."""
    report = AtomicityReport(end_time)
    ordered = sorted(events, key=lambda e: e.time)  # stable: keeps same-time order
    participants: dict[int, tuple[int, ...]] = {}
    votes: dict[int, dict[int, str]] = {}
    decided: dict[int, dict[int, str]] = {}
    open_uncertainty: dict[tuple[int, int], Uncertainty] = {}
    locks: dict[tuple[int, int], int] = {}
    validated: set[int] = set()
    total = 0
    last_time = 0

    def set_locks(key: tuple[int, int], count: int, time: int) -> None:
        nonlocal total, last_time
        before = locks.get(key, 0)
        if before == count:
            return
        report.lock_time += total * (time - last_time)
        last_time = time
        total += count - before
        if count:
            locks[key] = count
        else:
            locks.pop(key, None)
        report.lock_timeline.append((time, total))

    for event in ordered:
        kind, node, txn = event.kind, event.node, event.txn
        if kind == "begin":
            participants[txn] = event.participants
        elif kind in ("vote-yes", "vote-no"):
            votes.setdefault(txn, {})[node] = kind
            if kind == "vote-yes" and (node, txn) not in open_uncertainty:
                interval = Uncertainty(node, txn, event.time)
                open_uncertainty[(node, txn)] = interval
                report.uncertain.append(interval)
        elif kind in _DECISIONS:
            earlier = decided.setdefault(txn, {}).get(node)
            if earlier is None:
                decided[txn][node] = kind
            elif earlier != kind:
                report.violations.append(
                    f"txn {txn}: n{node} decided {earlier}, then {kind} (it forgot)"
                )
            resolved = open_uncertainty.pop((node, txn), None)
            if resolved is not None:
                resolved.end = event.time
            if kind == "commit" and txn not in validated:
                validated.add(txn)
                _check_validity(report, txn, node, participants, votes)
        elif kind == "lock":
            set_locks((node, txn), event.count, event.time)
        elif kind == "unlock":
            set_locks((node, txn), 0, event.time)
        elif kind == "crash":
            for key in sorted(k for k in locks if k[0] == node):
                set_locks(key, 0, event.time)

    report.lock_time += total * max(0, end_time - last_time)
    report.locks_held_at_end = total
    txns = sorted(set(participants) | set(decided) | set(votes))
    report.transactions = len(txns)
    for txn in txns:
        by_node = decided.get(txn, {})
        kinds = set(by_node.values())
        if kinds == {"commit", "abort"}:
            committed = ", ".join(f"n{n}" for n in sorted(by_node) if by_node[n] == "commit")
            aborted = ", ".join(f"n{n}" for n in sorted(by_node) if by_node[n] == "abort")
            report.violations.append(
                f"txn {txn}: committed at {committed} but aborted at {aborted}"
            )
            report.outcomes[txn] = "mixed"
        elif kinds:
            report.outcomes[txn] = kinds.pop()
        else:
            report.outcomes[txn] = "undecided"
    report.blocked = [
        u for u in report.uncertain if u.end is None or u.duration(end_time) > blocking_threshold
    ]
    return report


def _check_validity(
    report: AtomicityReport,
    txn: int,
    node: int,
    participants: dict[int, tuple[int, ...]],
    votes: dict[int, dict[int, str]],
) -> None:
    cast = votes.get(txn, {})
    members = participants.get(txn, tuple(sorted(cast)))
    missing = [n for n in members if cast.get(n) != "vote-yes"]
    if missing:
        who = ", ".join(f"n{n} ({cast.get(n, 'no vote')})" for n in missing)
        report.violations.append(f"txn {txn}: n{node} committed without a yes from {who}")
