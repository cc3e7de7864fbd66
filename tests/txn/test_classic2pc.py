"""Classic 2PC, driven by hand: the happy paths, the blocking window, and recovery from the log."""

from __future__ import annotations

from typing import Any

import pytest

from herald.errors import UsageError
from herald.txn.classic2pc import Cohort, Coordinator, Timing
from herald.txn.log import DurableLog
from herald.txn.messages import Kind, TxnMessage

from .pump import Pump

TIMING = Timing(vote_timeout=10, resend=2, termination=4)
COHORTS = (2, 3, 4)


def cluster(no_voter: int = 0) -> tuple[Pump, dict[int, DurableLog[Any]]]:
    logs: dict[int, DurableLog[Any]] = {n: DurableLog() for n in (1, *COHORTS)}
    nodes: dict[int, Any] = {1: Coordinator(1, logs[1], TIMING)}
    for cohort in COHORTS:
        nodes[cohort] = Cohort(
            cohort,
            logs[cohort],
            votes_yes=lambda txn, cohort=cohort: cohort != no_voter,
            timing=TIMING,
        )
    return Pump(nodes), logs


def begin(pump: Pump, txn: int = 7) -> None:
    pump.act(1, lambda core: core.begin(txn, COHORTS))


def test_all_yes_commits_everywhere_and_releases_locks() -> None:
    pump, _ = cluster()
    begin(pump)
    pump.run()
    for cohort in COHORTS:
        assert pump.nodes[cohort].phase(7) == "committed"
        assert pump.kinds(cohort) == ["lock", "vote-yes", "commit", "unlock"]
    assert "commit" in pump.kinds(1)
    assert pump.nodes[1].rounds == {}  # every cohort acknowledged: the coordinator forgot it


def test_one_no_aborts_everywhere() -> None:
    pump, _ = cluster(no_voter=4)
    begin(pump)
    pump.run()
    assert pump.nodes[4].phase(7) == "aborted"
    assert pump.kinds(4) == ["vote-no", "abort"]
    for cohort in (2, 3):
        assert pump.nodes[cohort].phase(7) == "aborted"
    assert pump.nodes[1].decided[7].value == "abort"


def test_missing_votes_abort_after_the_vote_timeout() -> None:
    pump, _ = cluster()
    pump.down.add(4)
    begin(pump)
    pump.run()
    assert pump.nodes[1].missing_votes(7) == 1
    pump.tick(TIMING.vote_timeout)
    assert pump.nodes[1].decided[7].value == "abort"
    assert pump.nodes[2].phase(7) == "aborted"


def test_begin_twice_is_a_usage_error() -> None:
    pump, _ = cluster()
    begin(pump)
    with pytest.raises(UsageError):
        pump.act(1, lambda core: core.begin(7, COHORTS))


def test_coordinator_lost_after_votes_blocks_the_cohorts() -> None:
    pump, logs = cluster()
    # Votes reach the coordinator's host, which dies before processing the last one.
    pump.drop = lambda m: m.dst == 1 and m.kind is Kind.VOTE_YES and m.src == 4
    begin(pump)
    pump.run()
    pump.down.add(1)
    pump.drop = lambda m: False
    pump.tick(3 * TIMING.termination)
    for cohort in COHORTS:
        assert pump.nodes[cohort].phase(7) == "prepared"  # uncertain, locks held
        assert "termination" in pump.kinds(cohort)
    answers = {m.kind for m in pump.delivered if m.dst in COHORTS and m.src in COHORTS}
    assert answers == {Kind.DECISION_REQUEST, Kind.UNCERTAIN}  # nobody can help

    # The coordinator comes back: no decision in its log, so it presumes abort.
    pump.replace(1, Coordinator(1, logs[1], TIMING))
    pump.run()
    for cohort in COHORTS:
        assert pump.nodes[cohort].phase(7) == "aborted"


def test_an_unvoted_cohort_answers_a_decision_request_with_abort() -> None:
    pump, _ = cluster()
    pump.drop = lambda m: m.dst == 4 and m.kind is Kind.PREPARE
    begin(pump)
    pump.run()
    pump.down.add(1)
    pump.tick(TIMING.termination)
    # Cohort 4 never voted: it aborts on the spot and tells the others, who may abort.
    assert pump.nodes[4].phase(7) == "aborted"
    assert pump.nodes[2].phase(7) == "aborted"
    assert pump.nodes[3].phase(7) == "aborted"


def test_a_prepared_cohort_recovers_uncertain_and_asks() -> None:
    pump, logs = cluster()
    pump.drop = lambda m: m.dst == 2 and m.kind is Kind.COMMIT
    begin(pump)
    pump.run()
    pump.down.add(2)
    pump.drop = lambda m: False
    restarted = Cohort(2, logs[2], timing=TIMING)
    assert restarted.phase(7) == "prepared"
    pump.replace(2, restarted)
    assert pump.kinds(2)[-2:] == ["lock", "termination"]  # locks again, asks at once
    pump.run()
    assert restarted.phase(7) == "committed"


def test_a_cohort_that_crashed_before_voting_aborts_alone_on_recovery() -> None:
    log: DurableLog[Any] = DurableLog()

    class CrashesBeforeLoggingItsVote(Cohort):
        def _persist_vote(self, txn: int) -> None:
            return

    CrashesBeforeLoggingItsVote(2, log, timing=TIMING).step(
        TxnMessage(1, 2, Kind.PREPARE, 7, COHORTS)
    )
    recovered = Cohort(2, log, timing=TIMING)
    # It never voted yes as far as its log knows, so nobody can have committed.
    assert recovered.phase(7) == "aborted"
    assert [n.kind for n in recovered.take_notes()] == ["abort"]


def test_coordinator_recovers_a_logged_decision_and_resends_it() -> None:
    pump, logs = cluster()
    pump.drop = lambda m: m.kind is Kind.COMMIT
    begin(pump)
    pump.run()
    assert pump.nodes[1].decided[7].value == "commit"
    restarted = Coordinator(1, logs[1], TIMING)
    assert [m.kind for m in restarted.take_messages()] == [Kind.COMMIT] * 3
