"""Scenario ``2pc``: classic two-phase commit is atomic, and it blocks.

One coordinator (node 1) and three cohorts (nodes 2-4) commit one transaction,
each cohort taking two locks at prepare, over a network that loses and
duplicates 2 % of messages. Five situations, ``trials`` runs each:

- ``all-yes``: everyone votes yes: commit, nobody waits long;
- ``one-no``: cohort 4 votes no: abort;
- ``coordinator-crash``: the coordinator crashes the instant the last vote
  reaches it (votes collected, nothing decided, nothing logged) and restarts
  3 s later. Every cohort voted yes, so every cohort is uncertain: asking each
  other gets only "uncertain", and they hold their locks until the coordinator
  is back (presumed abort then aborts);
- ``coordinator-and-cohort-crash``: the same moment takes cohort 2 down with
  the coordinator, and neither returns. The survivors cannot tell whether the
  dead cohort had learned a commit, so they cannot decide at all;
- ``cohort-crash``: cohort 2 voted yes and crashes just as the decision
  reaches it; it restarts 0.5 s later, its log tells it it is uncertain, and
  it asks and learns the outcome.

Checker: :func:`herald.check.atomicity.check_atomicity`; a cohort counts as
blocked when it stayed uncertain for more than 0.4 s (twice its termination
timeout) without having crashed itself.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from herald.lab.commit import (
    COORDINATOR,
    TABLE_COLUMNS,
    TICK,
    TXN,
    CommitBench,
    TrialOutcome,
    TxnCore,
    figures,
    lock_chart,
    table_row,
)
from herald.lab.result import Json, LabResult, Table, Verdict
from herald.sim.network import NetworkProfile
from herald.sim.scheduler import MS, SECOND
from herald.txn.classic2pc import Cohort, Coordinator, Timing
from herald.txn.log import DurableLog
from herald.txn.messages import Kind, TxnMessage

__all__ = ["COHORTS", "SITUATIONS", "Situation", "run"]

NAME = "2pc"
COHORTS = (2, 3, 4)
PROFILE = NetworkProfile(base_latency=MS, jitter=MS // 2, loss=0.02, duplicate=0.02, spike=0.0)
TIMING = Timing(vote_timeout=50, resend=5, termination=20)
BLOCKING_THRESHOLD = 2 * TIMING.termination * TICK
COORDINATOR_OUTAGE = 3 * SECOND
COHORT_OUTAGE = SECOND // 2
HORIZON = 5 * SECOND


@dataclass(frozen=True, slots=True)
class Situation:
    name: str
    expected_outcome: str
    blocks: bool
    arm: Callable[[CommitBench], None]
    no_voter: int = 0


def _nothing(bench: CommitBench) -> None:
    return


def _crash_on_last_vote(also: tuple[int, ...], outage: int | None) -> Callable[[CommitBench], None]:
    def arm(bench: CommitBench) -> None:
        def hook(node: int, core: TxnCore, message: TxnMessage) -> bool:
            if not (
                node == COORDINATOR
                and isinstance(core, Coordinator)
                and message.kind is Kind.VOTE_YES
                and core.missing_votes(message.txn) == 1
                and message.src not in core.voted(message.txn)
            ):
                return False
            bench.world.crash_on_receive = None
            for victim in (COORDINATOR, *also):
                bench.crash(victim)
            if outage is not None:
                bench.at(bench.now + outage, lambda: bench.restart(COORDINATOR))
            return True

        bench.world.crash_on_receive = hook

    return arm


def _crash_on_decision(victim: int, outage: int) -> Callable[[CommitBench], None]:
    def arm(bench: CommitBench) -> None:
        def hook(node: int, core: TxnCore, message: TxnMessage) -> bool:
            if node != victim or message.kind not in (Kind.COMMIT, Kind.ABORT):
                return False
            bench.world.crash_on_receive = None
            bench.crash(victim)
            bench.at(bench.now + outage, lambda: bench.restart(victim))
            return True

        bench.world.crash_on_receive = hook

    return arm


SITUATIONS = (
    Situation("all-yes", "commit", False, _nothing),
    Situation("one-no", "abort", False, _nothing, no_voter=4),
    Situation("coordinator-crash", "abort", True, _crash_on_last_vote((), COORDINATOR_OUTAGE)),
    Situation("coordinator-and-cohort-crash", "undecided", True, _crash_on_last_vote((2,), None)),
    Situation("cohort-crash", "commit", False, _crash_on_decision(2, COHORT_OUTAGE)),
)


def run_situation(
    situation: Situation, seed: int, trial: int, cohort_class: type[Cohort] = Cohort
) -> TrialOutcome:
    rng = random.Random(f"herald-lab/{NAME}/{seed}/{situation.name}/{trial}")

    def make_coordinator(node: int, log: DurableLog[Any], cohorts: tuple[int, ...]) -> TxnCore:
        return Coordinator(node, log, TIMING)

    def make_cohort(node: int, log: DurableLog[Any]) -> TxnCore:
        votes_no = node == situation.no_voter
        return cohort_class(node, log, votes_yes=lambda txn: not votes_no, timing=TIMING)

    bench = CommitBench(rng, PROFILE, COHORTS, make_coordinator, make_cohort)
    situation.arm(bench)
    bench.start()

    def begin(core: TxnCore) -> None:
        assert isinstance(core, Coordinator)
        core.begin(TXN, COHORTS)

    def start() -> None:
        bench.world.act(COORDINATOR, begin)

    bench.at(10 * MS, start)
    bench.run_until(HORIZON)
    return bench.judge(BLOCKING_THRESHOLD)


def run(seed: int, trials: int, *, cohort_class: type[Cohort] = Cohort) -> LabResult:
    """Every situation ``trials`` times; ``cohort_class`` lets tests plant a broken cohort."""
    verdict = Verdict()
    rows: list[tuple[str, ...]] = []
    per_situation: dict[str, Json] = {}
    charts = []
    for situation in SITUATIONS:
        outcomes = [run_situation(situation, seed, t, cohort_class) for t in range(trials)]
        rows.append(table_row(situation.name, outcomes))
        per_situation[situation.name] = figures(outcomes)
        charts.append(lock_chart(f"{situation.name} (trial 1)", outcomes[0], HORIZON))
        _judge(verdict, situation, outcomes)
    table = Table(
        f"classic 2PC: coordinator n1, cohorts {COHORTS}, {trials} trials per situation",
        TABLE_COLUMNS,
        tuple(rows),
    )
    figures_out: dict[str, Json] = {
        "cohorts": len(COHORTS),
        "locks_per_cohort": 2,
        "blocking_threshold_ms": BLOCKING_THRESHOLD // MS,
        "coordinator_outage_ms": COORDINATOR_OUTAGE // MS,
        "horizon_ms": HORIZON // MS,
        "situations": per_situation,
    }
    notes = [
        "Uncertain: between a cohort's yes vote and its learning the outcome. Blocked: "
        f"uncertain for more than {BLOCKING_THRESHOLD // MS} ms without having crashed. "
        "Atomicity held everywhere; the price is that a coordinator failure at the wrong "
        "moment holds every cohort's locks for as long as the coordinator is away."
    ]
    return LabResult(NAME, seed, trials, verdict, figures_out, [table], charts, notes)


def _judge(verdict: Verdict, situation: Situation, outcomes: list[TrialOutcome]) -> None:
    name = situation.name
    n = len(outcomes)
    violated = [t for t in outcomes if t.violations]
    verdict.expect(
        not violated,
        f"{name}: atomicity held in {n}/{n} trials",
        f"{name}: atomicity violated in {len(violated)}/{n} trials"
        + (f" ({violated[0].violations[0]})" if violated else ""),
    )
    wrong = [t.outcome for t in outcomes if t.outcome != situation.expected_outcome]
    verdict.expect(
        not wrong,
        f"{name}: outcome {situation.expected_outcome} in {n}/{n} trials",
        f"{name}: outcome not {situation.expected_outcome} in {len(wrong)}/{n} trials "
        f"({', '.join(sorted(set(wrong)))})",
    )
    survivors = [t for t in outcomes if t.blocked > 0]
    worst = max(t.max_uncertain for t in outcomes) / SECOND
    locks = max(t.report.locks_held_at_end for t in outcomes)
    if situation.blocks:
        held_locks = max(max((n for _, n in t.report.lock_timeline), default=0) for t in outcomes)
        undecided = min(t.undecided for t in outcomes)
        detail = f"uncertain up to {worst:.2f} s, holding up to {held_locks} locks"
        if undecided:
            detail += f"; {undecided} survivors still undecided at the end, holding {locks} locks"
        verdict.expect(
            len(survivors) < n,
            f"{name}: cohorts blocked in only {len(survivors)}/{n} trials",
            f"{name}: non-blocking — cohorts blocked in {len(survivors)}/{n} trials ({detail})",
            predicted=False,
        )
    else:
        verdict.expect(
            not survivors,
            f"{name}: no cohort blocked (longest uncertainty {worst * 1000:.1f} ms)",
            f"{name}: cohorts blocked in {len(survivors)}/{n} trials",
        )
