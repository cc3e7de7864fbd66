"""A test bench for commit protocols: one coordinator, some cohorts, a history, crashes.

The 2PC and 3PC scenarios share it. A :class:`CommitBench` puts the cores of
one protocol into a :class:`~herald.lab.harness.LabWorld`, gives each node a
:class:`~herald.txn.log.DurableLog` that survives its crashes, stamps every
note the cores emit into a :class:`~herald.check.atomicity.TxnEvent` history,
and records crashes there too (a crash empties a node's lock table). The
scenario decides when to crash, restart and partition; :meth:`CommitBench.judge`
hands the history to the atomicity checker.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from herald.check.atomicity import AtomicityReport, TxnEvent, check_atomicity
from herald.lab.harness import LabWorld
from herald.lab.result import Chart, Json, Series
from herald.sim.network import NetworkProfile
from herald.sim.scheduler import MS, SECOND
from herald.txn.log import DurableLog
from herald.txn.messages import TxnMessage, TxnNote

__all__ = [
    "COORDINATOR",
    "TABLE_COLUMNS",
    "TICK",
    "TXN",
    "CommitBench",
    "TrialOutcome",
    "TxnCore",
    "figures",
    "lock_chart",
    "table_row",
    "tally",
]

COORDINATOR = 1
TXN = 1  # each trial commits one transaction
TICK = 10 * MS


class TxnCore(Protocol):
    def step(self, message: TxnMessage) -> None: ...

    def tick(self) -> None: ...

    def take_messages(self) -> list[TxnMessage]: ...

    def take_notes(self) -> list[TxnNote]: ...


@dataclass(slots=True)
class TrialOutcome:
    """What one trial of one situation came to, as the tables and JSON show it."""

    outcome: str  # commit, abort, mixed or undecided
    violations: list[str]
    max_uncertain: int  # microseconds, over cohorts that never crashed
    max_uncertain_any: (
        int  # microseconds, over every cohort (a crashed one is uncertain while down)
    )
    blocked: int  # cohorts that never crashed yet stayed uncertain past the threshold
    undecided: int  # cohorts that never crashed, still uncertain at the end
    locks_at_end: int
    lock_time: int  # lock-microseconds
    messages: int
    terminations: int  # times a cohort asked others for the outcome
    report: AtomicityReport
    downtime: list[tuple[int, int, int]] = field(default_factory=list)  # (node, start, end)


class CommitBench:
    """One trial: a coordinator (node 1) and cohorts over the simulated network."""

    def __init__(
        self,
        rng: random.Random,
        profile: NetworkProfile,
        cohorts: tuple[int, ...],
        make_coordinator: Callable[[int, DurableLog[Any], tuple[int, ...]], TxnCore],
        make_cohort: Callable[[int, DurableLog[Any]], TxnCore],
    ) -> None:
        self.cohorts = cohorts
        self.world: LabWorld[TxnMessage, TxnCore] = LabWorld(rng, profile, TICK)
        self.events: list[TxnEvent] = []
        self.crashed: set[int] = set()
        self._down_since: dict[int, int] = {}
        self.downtime: list[tuple[int, int, int]] = []
        coordinator_log: DurableLog[Any] = DurableLog()
        self.world.add(
            COORDINATOR, functools.partial(make_coordinator, COORDINATOR, coordinator_log, cohorts)
        )
        for cohort in cohorts:
            log: DurableLog[Any] = DurableLog()
            self.world.add(cohort, functools.partial(make_cohort, cohort, log))
        self.world.after_input = self._record
        #: Called with each note right after it is recorded (scenarios crash nodes here).
        self.on_note: Callable[[int, TxnNote], None] | None = None

    @property
    def now(self) -> int:
        return self.world.scheduler.now

    def _record(self, node: int, core: TxnCore) -> None:
        now = self.world.scheduler.now
        for note in core.take_notes():
            self.events.append(
                TxnEvent(now, node, note.txn, note.kind, note.count, note.participants)
            )
            if self.on_note is not None:
                self.on_note(node, note)

    def start(self) -> None:
        self.world.start()

    def crash(self, node: int) -> None:
        if not self.world.up(node):
            return
        self.world.crash(node)
        self.crashed.add(node)
        self._down_since[node] = self.now
        self.events.append(TxnEvent(self.now, node, 0, "crash"))

    def restart(self, node: int) -> None:
        if self.world.up(node):
            return
        self.downtime.append((node, self._down_since.pop(node), self.now))
        self.world.restart(node)

    def at(self, time: int, action: Callable[[], None]) -> None:
        self.world.scheduler.at(time, action)

    def run_until(self, deadline: int, stop: Callable[[], bool] | None = None) -> None:
        self.world.run_until(deadline, stop)

    def judge(self, threshold: int) -> TrialOutcome:
        end = self.now
        for node, since in sorted(self._down_since.items()):
            self.downtime.append((node, since, end))
        report = check_atomicity(self.events, end, threshold)
        outcome = report.outcomes.get(TXN, "undecided")
        blocked = sum(1 for u in report.blocked if u.node not in self.crashed)
        live = [u for u in report.uncertain if u.node not in self.crashed]
        undecided = sum(1 for u in live if u.end is None)
        return TrialOutcome(
            outcome=outcome,
            violations=list(report.violations),
            max_uncertain=max((u.duration(end) for u in live), default=0),
            max_uncertain_any=report.max_uncertain,
            blocked=blocked,
            undecided=undecided,
            locks_at_end=report.locks_held_at_end,
            lock_time=report.lock_time,
            messages=self.world.network.sent,
            terminations=sum(1 for e in self.events if e.kind == "termination"),
            report=report,
            downtime=list(self.downtime),
        )


def tally(outcomes: list[TrialOutcome]) -> str:
    """``commit 10/10`` or ``commit 7, abort 3`` (of N trials)."""
    counts: dict[str, int] = {}
    for trial in outcomes:
        counts[trial.outcome] = counts.get(trial.outcome, 0) + 1
    if len(counts) == 1:
        ((name, count),) = counts.items()
        return f"{name} {count}/{len(outcomes)}"
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))


def figures(outcomes: list[TrialOutcome]) -> dict[str, Json]:
    """The measured figures of one situation over its trials (times in milliseconds)."""
    n = len(outcomes)
    counts: dict[str, int] = {}
    for trial in outcomes:
        counts[trial.outcome] = counts.get(trial.outcome, 0) + 1
    return {
        "outcomes": counts,
        "atomicity_violations": sum(1 for t in outcomes if t.violations),
        "violations": [v for t in outcomes for v in t.violations][:5],
        "max_uncertain_ms": round(max(t.max_uncertain for t in outcomes) / MS, 3),
        "mean_max_uncertain_ms": round(sum(t.max_uncertain for t in outcomes) / n / MS, 3),
        "max_uncertain_incl_crashed_ms": round(max(t.max_uncertain_any for t in outcomes) / MS, 3),
        "blocked_cohorts_per_trial": round(sum(t.blocked for t in outcomes) / n, 3),
        "undecided_at_end_per_trial": round(sum(t.undecided for t in outcomes) / n, 3),
        "locks_held_at_end_per_trial": round(sum(t.locks_at_end for t in outcomes) / n, 3),
        "lock_seconds_per_trial": round(sum(t.lock_time for t in outcomes) / n / SECOND, 4),
        "messages_per_trial": round(sum(t.messages for t in outcomes) / n, 2),
        "termination_requests_per_trial": round(sum(t.terminations for t in outcomes) / n, 2),
    }


def table_row(name: str, outcomes: list[TrialOutcome]) -> tuple[str, ...]:
    n = len(outcomes)
    violated = sum(1 for t in outcomes if t.violations)
    worst = max(t.max_uncertain for t in outcomes)
    return (
        name,
        tally(outcomes),
        f"held {n}/{n}" if not violated else f"VIOLATED {violated}/{n}",
        f"{worst / MS:,.1f}",
        f"{sum(t.blocked for t in outcomes) / n:.1f}",
        f"{sum(t.undecided for t in outcomes) / n:.1f}",
        f"{sum(t.locks_at_end for t in outcomes) / n:.1f}",
        f"{sum(t.lock_time for t in outcomes) / n / SECOND:.2f}",
        f"{sum(t.messages for t in outcomes) / n:.0f}",
    )


TABLE_COLUMNS = (
    "situation",
    "outcome",
    "atomicity",
    "max uncertain ms",
    "blocked",
    "undecided at end",
    "locks at end",
    "lock-s",
    "msgs",
)


def lock_chart(
    title: str, trial: TrialOutcome, horizon: int, extra: tuple[tuple[int, int, str], ...] = ()
) -> Chart:
    """Locks held over one trial, with each node's downtime (and ``extra`` spans) shaded."""
    timeline = [(0, 0), *trial.report.lock_timeline, (horizon, trial.report.locks_held_at_end)]
    xs = tuple(t / SECOND for t, _ in timeline)
    ys = tuple(float(n) for _, n in timeline)
    spans = [(start, end, f"n{node} down") for node, start, end in trial.downtime]
    spans.extend(extra)
    bands = tuple((start / SECOND, end / SECOND, label) for start, end, label in spans)
    series = (Series("locks held", xs, ys, "step"),)
    return Chart(title, "time (s)", "locks held", series, bands=bands)
