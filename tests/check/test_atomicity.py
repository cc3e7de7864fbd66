"""The atomicity checker: it passes atomic histories and fails planted violations."""

from __future__ import annotations

from herald.check.atomicity import TxnEvent, check_atomicity
from herald.lab.scenarios import three_phase, two_phase
from herald.txn.classic2pc import Cohort

PARTICIPANTS = (2, 3)


def history(*rows: tuple[int, int, str]) -> list[TxnEvent]:
    events = [TxnEvent(0, 1, 1, "begin", participants=PARTICIPANTS)]
    for time, node, kind in rows:
        count = 2 if kind == "lock" else 0
        events.append(TxnEvent(time, node, 1, kind, count))
    return events


def test_an_atomic_commit_passes_and_measures_uncertainty() -> None:
    report = check_atomicity(
        history(
            (1, 2, "lock"),
            (1, 2, "vote-yes"),
            (2, 3, "lock"),
            (2, 3, "vote-yes"),
            (5, 1, "commit"),
            (7, 2, "commit"),
            (7, 2, "unlock"),
            (9, 3, "commit"),
            (9, 3, "unlock"),
        ),
        end_time=100,
        blocking_threshold=50,
    )
    assert report.atomic
    assert report.outcomes == {1: "commit"}
    assert [(u.node, u.start, u.end) for u in report.uncertain] == [(2, 1, 7), (3, 2, 9)]
    assert report.max_uncertain == 7
    assert report.blocked == []
    assert report.locks_held_at_end == 0
    assert report.lock_time == 2 * 6 + 2 * 7
    assert report.lock_timeline == [(1, 2), (2, 4), (7, 2), (9, 0)]


def test_commit_here_and_abort_there_is_a_violation() -> None:
    report = check_atomicity(
        history((1, 2, "vote-yes"), (1, 3, "vote-yes"), (5, 2, "commit"), (6, 3, "abort")),
        end_time=10,
        blocking_threshold=5,
    )
    assert not report.atomic
    assert report.outcomes == {1: "mixed"}
    assert "committed at n2 but aborted at n3" in report.violations[0]


def test_commit_without_every_yes_is_a_violation() -> None:
    report = check_atomicity(
        history((1, 2, "vote-yes"), (1, 3, "vote-no"), (5, 1, "commit")),
        end_time=10,
        blocking_threshold=5,
    )
    assert any("without a yes from n3 (vote-no)" in v for v in report.violations)


def test_changing_a_decision_is_a_violation() -> None:
    report = check_atomicity(
        history((1, 2, "vote-yes"), (5, 2, "abort"), (9, 2, "commit")),
        end_time=10,
        blocking_threshold=5,
    )
    assert any("decided abort, then commit" in v for v in report.violations)


def test_an_undecided_cohort_is_blocked_and_a_crash_empties_its_lock_table() -> None:
    report = check_atomicity(
        history(
            (1, 2, "lock"),
            (1, 2, "vote-yes"),
            (1, 3, "lock"),
            (1, 3, "vote-yes"),
            (4, 3, "crash"),
        ),
        end_time=100,
        blocking_threshold=50,
    )
    assert report.atomic
    assert report.outcomes == {1: "undecided"}
    assert report.undecided_at_end == 2
    assert {u.node for u in report.blocked} == {2, 3}
    assert report.locks_held_at_end == 2  # node 3's lock table died with it


class ForgetsItsVote(Cohort):
    """Planted bug: the yes vote is sent but never forced to the log."""

    def _persist_vote(self, txn: int) -> None:
        return


def test_planted_a_2pc_cohort_that_forgets_its_vote_is_caught() -> None:
    situation = next(s for s in two_phase.SITUATIONS if s.name == "cohort-crash")
    honest = two_phase.run_situation(situation, seed=0, trial=0)
    assert honest.violations == []
    planted = two_phase.run_situation(situation, seed=0, trial=0, cohort_class=ForgetsItsVote)
    # It restarts with work but no vote in its log, aborts alone; the others committed.
    assert planted.violations
    assert "committed at n1, n3, n4 but aborted at n2" in planted.violations[0]


def test_the_3pc_partition_is_reported_as_a_violation() -> None:
    situation = next(s for s in three_phase.SITUATIONS if s.name == "partition-during-pre-commit")
    outcome, _ = three_phase.run_situation(situation, seed=0, trial=0)
    assert outcome.outcome == "mixed"
    assert "committed at n1, n2, n3 but aborted at n4, n5" in outcome.violations[0]
