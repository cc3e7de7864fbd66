"""Scenario ``3pc``: three-phase commit does not block on crashes, and splits on partitions.

One coordinator (node 1) and four cohorts (nodes 2-5) commit one transaction
over the network 3PC assumes: bounded delay (1 ms plus a little jitter), no
loss, no duplication. Six situations, ``trials`` runs each:

- ``all-yes``: commit;
- ``coordinator-crash``: the coordinator crashes as the last vote reaches it;
  the rank-0 cohort times out, finds everyone uncertain, aborts. Nobody waits
  for the coordinator, which restarts 1 s later and learns the outcome;
- ``coordinator-crash-after-pre-commit``: it crashes right after sending the
  pre-commits; the backup finds pre-committed cohorts and commits;
- ``coordinator-and-cohort-crash``: the coordinator and cohort 2 (rank 0)
  crash together and stay down; cohort 3 takes over and the survivors abort.
  This is exactly where 2PC blocks;
- ``partition-during-pre-commit``: the instant the coordinator sends its
  pre-commits the network splits into {1, 2, 3} and {4, 5}; the pre-commits
  to 4 and 5 are lost with the link. The coordinator's side commits (missing
  acknowledgements mean crashed cohorts to 3PC); cohorts 4 and 5 see only
  each other, both uncertain, and abort. Healing at 2 s changes nothing;
- ``partition-sweep``: random sides, the cut at a random moment 0-4 ms into
  the pre-commit phase. Atomicity breaks exactly when no cohort on the far
  side had pre-committed (or committed) before the cut; the lab checks that
  prediction trial by trial.

Checker: :func:`herald.check.atomicity.check_atomicity`. The verdict treats the
partition's atomicity violation as the expected outcome: it is the point.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
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
from herald.txn.classic3pc import Cohort, Coordinator, Timing
from herald.txn.log import DurableLog
from herald.txn.messages import Kind, TxnMessage, TxnNote

__all__ = ["COHORTS", "SITUATIONS", "run"]

NAME = "3pc"
COHORTS = (2, 3, 4, 5)
PROFILE = NetworkProfile(base_latency=MS, jitter=MS // 4, loss=0.0, duplicate=0.0, spike=0.0)
TIMING = Timing(vote_timeout=20, ack_timeout=20, resend=5, timeout=20, window=5)
#: Longest a cohort may legitimately wait: the last-ranked backup's silence plus two windows.
BLOCKING_THRESHOLD = (TIMING.timeout * (len(COHORTS) + 1) + 2 * TIMING.window) * TICK
COORDINATOR_OUTAGE = SECOND
HEAL_AT = 2 * SECOND
HORIZON = 3 * SECOND


@dataclass(slots=True)
class _Partition:
    """What the partition of one trial did, for the per-trial prediction."""

    near: tuple[int, ...] = ()
    far: tuple[int, ...] = ()
    cut_at: int = 0
    far_settled: tuple[int, ...] = ()  # far-side cohorts pre-committed (or committed) at the cut
    spans: list[tuple[int, int, str]] = field(default_factory=list)

    @property
    def predicts_violation(self) -> bool:
        return bool(self.far) and not self.far_settled


@dataclass(frozen=True, slots=True)
class Situation:
    name: str
    expected_outcome: str  # "" when the outcome is the thing under test
    arm: Callable[[CommitBench, random.Random, _Partition], None]
    violates: str = "never"  # "never", "always", or "as-predicted" (trial by trial)


def _nothing(bench: CommitBench, rng: random.Random, partition: _Partition) -> None:
    return


def _crash_on_last_vote(also: tuple[int, ...], outage: int | None) -> Callable[..., None]:
    def arm(bench: CommitBench, rng: random.Random, partition: _Partition) -> None:
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


def _crash_after_pre_commit(bench: CommitBench, rng: random.Random, partition: _Partition) -> None:
    def on_note(node: int, note: TxnNote) -> None:
        if node == COORDINATOR and note.kind == "pre-commit":
            bench.on_note = None
            bench.crash(COORDINATOR)
            bench.at(bench.now + COORDINATOR_OUTAGE, lambda: bench.restart(COORDINATOR))

    bench.on_note = on_note


def _partition_at_pre_commit(fixed: bool) -> Callable[..., None]:
    def arm(bench: CommitBench, rng: random.Random, partition: _Partition) -> None:
        near: tuple[int, ...]
        far: tuple[int, ...]
        if fixed:
            near, far, delay = (2, 3), (4, 5), 0
        else:
            shuffled = list(COHORTS)
            rng.shuffle(shuffled)
            split = rng.randint(0, len(COHORTS) - 1)
            near, far = tuple(sorted(shuffled[:split])), tuple(sorted(shuffled[split:]))
            delay = rng.randint(0, 4 * MS)
        partition.near, partition.far = near, far

        def cut() -> None:
            partition.cut_at = bench.now
            partition.far_settled = tuple(
                node for node in far if _phase(bench, node) in ("precommitted", "committed")
            )
            bench.world.network.partition([[COORDINATOR, *near], list(far)])
            bench.world.log(f"partition {[COORDINATOR, *near]} | {list(far)}")

        def heal() -> None:
            bench.world.network.heal()
            partition.spans.append((partition.cut_at, bench.now, "partitioned"))

        def on_note(node: int, note: TxnNote) -> None:
            if node == COORDINATOR and note.kind == "pre-commit":
                bench.on_note = None
                if delay == 0:
                    cut()  # the pre-commits to the far side are still in flight: lost
                else:
                    bench.at(bench.now + delay, cut)
                bench.at(HEAL_AT, heal)

        bench.on_note = on_note

    return arm


def _phase(bench: CommitBench, node: int) -> str:
    core = bench.world.core(node)
    return core.phase(TXN) if isinstance(core, Cohort) else "down"


SITUATIONS = (
    Situation("all-yes", "commit", _nothing),
    Situation("coordinator-crash", "abort", _crash_on_last_vote((), COORDINATOR_OUTAGE)),
    Situation("coordinator-crash-after-pre-commit", "commit", _crash_after_pre_commit),
    Situation("coordinator-and-cohort-crash", "abort", _crash_on_last_vote((2,), None)),
    Situation("partition-during-pre-commit", "", _partition_at_pre_commit(True), "always"),
    Situation("partition-sweep", "", _partition_at_pre_commit(False), "as-predicted"),
)


def run_situation(
    situation: Situation, seed: int, trial: int, cohort_class: type[Cohort] = Cohort
) -> tuple[TrialOutcome, _Partition]:
    rng = random.Random(f"herald-lab/{NAME}/{seed}/{situation.name}/{trial}")

    def make_coordinator(node: int, log: DurableLog[Any], cohorts: tuple[int, ...]) -> TxnCore:
        return Coordinator(node, log, TIMING)

    def make_cohort(node: int, log: DurableLog[Any]) -> TxnCore:
        return cohort_class(node, log, timing=TIMING)

    bench = CommitBench(
        random.Random(rng.getrandbits(64)), PROFILE, COHORTS, make_coordinator, make_cohort
    )
    partition = _Partition()
    situation.arm(bench, rng, partition)
    bench.start()

    def begin(core: TxnCore) -> None:
        assert isinstance(core, Coordinator)
        core.begin(TXN, COHORTS)

    def start() -> None:
        bench.world.act(COORDINATOR, begin)

    bench.at(10 * MS, start)
    bench.run_until(HORIZON)
    return bench.judge(BLOCKING_THRESHOLD), partition


def run(seed: int, trials: int, *, cohort_class: type[Cohort] = Cohort) -> LabResult:
    verdict = Verdict()
    rows: list[tuple[str, ...]] = []
    per_situation: dict[str, Json] = {}
    charts = []
    for situation in SITUATIONS:
        results = [run_situation(situation, seed, t, cohort_class) for t in range(trials)]
        outcomes = [outcome for outcome, _ in results]
        rows.append(table_row(situation.name, outcomes))
        numbers = figures(outcomes)
        if situation.violates == "as-predicted":
            numbers["predicted_violations"] = sum(p.predicts_violation for _, p in results)
        per_situation[situation.name] = numbers
        first, first_partition = results[0]
        extra = tuple(first_partition.spans)
        charts.append(lock_chart(f"{situation.name} (trial 1)", first, HORIZON, extra))
        _judge(verdict, situation, results)
    table = Table(
        f"classic 3PC: coordinator n1, cohorts {COHORTS}, {trials} trials per situation",
        TABLE_COLUMNS,
        tuple(rows),
    )
    figures_out: dict[str, Json] = {
        "cohorts": len(COHORTS),
        "blocking_threshold_ms": BLOCKING_THRESHOLD // MS,
        "horizon_ms": HORIZON // MS,
        "situations": per_situation,
    }
    notes = [
        "3PC never blocked: every live cohort decided within its timeouts, even with the "
        "coordinator and a cohort dead. Under a partition both sides decided too, "
        "differently: a backup cannot tell a crashed cohort from an unreachable one."
    ]
    return LabResult(NAME, seed, trials, verdict, figures_out, [table], charts, notes)


def _judge(
    verdict: Verdict, situation: Situation, results: list[tuple[TrialOutcome, _Partition]]
) -> None:
    name = situation.name
    n = len(results)
    outcomes = [outcome for outcome, _ in results]
    violated = [t for t in outcomes if t.violations]
    example = f" ({violated[0].violations[0]})" if violated else ""
    if situation.violates == "never":
        verdict.expect(
            not violated,
            f"{name}: atomicity held in {n}/{n} trials",
            f"{name}: atomicity violated in {len(violated)}/{n} trials{example}",
        )
    elif situation.violates == "always":
        verdict.expect(
            len(violated) < n,
            f"{name}: atomicity held in {n - len(violated)}/{n} trials",
            f"{name}: atomicity violated in {len(violated)}/{n} trials{example}",
            predicted=False,
        )
    else:
        mismatched = [
            trial
            for trial, (outcome, partition) in enumerate(results)
            if bool(outcome.violations) != partition.predicts_violation
        ]
        verdict.expect(
            not mismatched,
            f"{name}: atomicity violated in exactly the {len(violated)}/{n} trials where no "
            "cohort cut off from the coordinator had pre-committed before the cut",
            f"{name}: violation did not match the prediction in trials "
            f"{', '.join(str(t + 1) for t in mismatched)}",
        )
        if violated:
            verdict.broke.append(f"{name}: atomicity violated in {len(violated)}/{n} trials")
    if situation.expected_outcome:
        wrong = [t.outcome for t in outcomes if t.outcome != situation.expected_outcome]
        verdict.expect(
            not wrong,
            f"{name}: outcome {situation.expected_outcome} in {n}/{n} trials",
            f"{name}: outcome not {situation.expected_outcome} in {len(wrong)}/{n} trials "
            f"({', '.join(sorted(set(wrong)))})",
        )
    blocked = [t for t in outcomes if t.blocked or t.undecided]
    worst = max(t.max_uncertain for t in outcomes)
    verdict.expect(
        not blocked,
        f"{name}: non-blocking, every live cohort decided (longest uncertainty "
        f"{worst / MS:.0f} ms)",
        f"{name}: cohorts blocked in {len(blocked)}/{n} trials",
    )
