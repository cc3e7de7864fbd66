"""Classic 3PC, driven by hand: commit, termination after a coordinator crash, and a split."""

from __future__ import annotations

from typing import Any

from herald.txn.classic3pc import Cohort, Coordinator, Timing
from herald.txn.log import DurableLog
from herald.txn.messages import Kind, TxnMessage

from .pump import Pump

TIMING = Timing(vote_timeout=10, ack_timeout=10, resend=5, timeout=4, window=2)
COHORTS = (2, 3, 4, 5)


def cluster() -> tuple[Pump, dict[int, DurableLog[Any]]]:
    logs: dict[int, DurableLog[Any]] = {n: DurableLog() for n in (1, *COHORTS)}
    nodes: dict[int, Any] = {1: Coordinator(1, logs[1], TIMING)}
    for cohort in COHORTS:
        nodes[cohort] = Cohort(cohort, logs[cohort], timing=TIMING)
    return Pump(nodes), logs


def begin(pump: Pump) -> None:
    pump.act(1, lambda core: core.begin(1, COHORTS))


def phases(pump: Pump) -> list[str]:
    return [pump.nodes[c].phase(1) for c in COHORTS]


def test_all_yes_commits_through_pre_commit() -> None:
    pump, _ = cluster()
    begin(pump)
    pump.run()
    assert phases(pump) == ["committed"] * 4
    assert pump.kinds(2) == ["lock", "vote-yes", "pre-commit", "commit", "unlock"]


def test_a_no_vote_aborts() -> None:
    logs: dict[int, DurableLog[Any]] = {n: DurableLog() for n in (1, *COHORTS)}
    nodes: dict[int, Any] = {1: Coordinator(1, logs[1], TIMING)}
    for cohort in COHORTS:
        nodes[cohort] = Cohort(
            cohort, logs[cohort], votes_yes=lambda txn, c=cohort: c != 3, timing=TIMING
        )
    pump = Pump(nodes)
    begin(pump)
    pump.run()
    assert phases(pump) == ["aborted"] * 4


def test_coordinator_crash_before_pre_commit_terminates_with_abort() -> None:
    pump, _ = cluster()
    pump.drop = lambda m: m.dst == 1 and m.src == 5 and m.kind is Kind.VOTE_YES
    begin(pump)
    pump.run()
    pump.down.add(1)
    pump.tick(TIMING.timeout + TIMING.window + 1)
    assert phases(pump) == ["aborted"] * 4
    # The rank-0 cohort (2) ran the termination; its request silenced the others.
    assert "termination" in pump.kinds(2)
    assert all("termination" not in pump.kinds(c) for c in (3, 4, 5))


def test_coordinator_crash_after_pre_commit_terminates_with_commit() -> None:
    pump, _ = cluster()
    pump.drop = lambda m: m.kind is Kind.PRE_COMMIT_ACK
    begin(pump)
    pump.run()
    assert phases(pump) == ["precommitted"] * 4
    pump.down.add(1)
    pump.tick(TIMING.timeout + 2 * TIMING.window + 1)
    assert phases(pump) == ["committed"] * 4


def test_the_backup_pre_commits_the_uncertain_before_committing() -> None:
    pump, _ = cluster()
    # Only cohort 3 receives the pre-commit before the coordinator dies.
    pump.drop = lambda m: m.kind is Kind.PRE_COMMIT and m.dst != 3
    begin(pump)
    pump.run()
    pump.down.add(1)
    pump.drop = lambda m: False
    pump.tick(TIMING.timeout + 2 * TIMING.window + 1)
    assert phases(pump) == ["committed"] * 4
    assert "pre-commit" in pump.kinds(2)  # 2 (the backup) moved itself forward first


def test_a_partition_during_pre_commit_splits_the_decision() -> None:
    pump, _ = cluster()
    far = {4, 5}
    near = {1, 2, 3}
    cut = [False]

    def lost(m: Any) -> bool:
        if m.kind is Kind.PRE_COMMIT and m.src == 1:
            cut[0] = True  # the network splits as the pre-commits leave
        return cut[0] and ((m.src in far) != (m.dst in far)) and {m.src, m.dst} & near != set()

    pump.drop = lost
    begin(pump)
    pump.run()
    pump.tick(TIMING.ack_timeout + TIMING.timeout * 4 + 2 * TIMING.window)
    assert phases(pump) == ["committed", "committed", "aborted", "aborted"]


def test_a_recovered_coordinator_learns_the_outcome_from_the_cohorts() -> None:
    pump, logs = cluster()
    pump.drop = lambda m: m.dst == 1 and m.src == 5 and m.kind is Kind.VOTE_YES
    begin(pump)
    pump.run()
    pump.down.add(1)
    pump.drop = lambda m: False
    pump.tick(TIMING.timeout + TIMING.window + 1)
    restarted = Coordinator(1, logs[1], TIMING)
    pump.replace(1, restarted)
    pump.run()
    assert restarted.rounds[1].decision is not None
    assert restarted.rounds[1].decision.value == "abort"


def test_a_cohort_recovers_its_pre_commit() -> None:
    log: DurableLog[Any] = DurableLog()
    cohort = Cohort(2, log, timing=TIMING)
    cohort.step(TxnMessage(1, 2, Kind.CAN_COMMIT, 1, COHORTS))
    cohort.step(TxnMessage(1, 2, Kind.PRE_COMMIT, 1))
    recovered = Cohort(2, log, timing=TIMING)
    assert recovered.phase(1) == "precommitted"
    assert [n.kind for n in recovered.take_notes()] == ["lock"]


def test_durable_log_keeps_records_in_order() -> None:
    log: DurableLog[int] = DurableLog()
    for record in (3, 1, 2):
        log.append(record)
    assert log.records() == (3, 1, 2)
    assert log.forced_writes == 3
