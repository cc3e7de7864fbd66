"""The 2PC and 3PC scenarios reach the verdicts the argument predicts."""

from __future__ import annotations

from herald.lab.scenarios import three_phase, two_phase


def test_2pc_is_atomic_and_blocks_on_a_coordinator_crash() -> None:
    result = two_phase.run(0, 2)
    assert result.verdict.as_predicted, result.verdict.unexpected
    situations = result.figures["situations"]
    assert isinstance(situations, dict)
    crash = situations["coordinator-crash"]
    assert isinstance(crash, dict)
    assert crash["blocked_cohorts_per_trial"] == 3  # every cohort, for the whole outage
    assert crash["max_uncertain_ms"] >= two_phase.COORDINATOR_OUTAGE / 1000
    both = situations["coordinator-and-cohort-crash"]
    assert isinstance(both, dict)
    assert both["undecided_at_end_per_trial"] == 2
    assert both["locks_held_at_end_per_trial"] == 4
    assert all(s["atomicity_violations"] == 0 for s in situations.values())
    assert any("coordinator-crash: non-blocking" in line for line in result.verdict.broke)


def test_3pc_never_blocks_and_splits_under_a_partition() -> None:
    result = three_phase.run(0, 2)
    assert result.verdict.as_predicted, result.verdict.unexpected
    situations = result.figures["situations"]
    assert isinstance(situations, dict)
    for name, figures in situations.items():
        assert isinstance(figures, dict)
        assert figures["blocked_cohorts_per_trial"] == 0, name
        expected = 2 if name == "partition-during-pre-commit" else None
        if expected is not None:
            assert figures["atomicity_violations"] == expected
        elif name != "partition-sweep":
            assert figures["atomicity_violations"] == 0, name
    assert any(
        line.startswith("partition-during-pre-commit: atomicity violated")
        for line in result.verdict.broke
    )


def test_results_are_a_function_of_the_seed() -> None:
    assert two_phase.run(5, 1).summary() == two_phase.run(5, 1).summary()
    assert three_phase.run(5, 1).summary() == three_phase.run(5, 1).summary()
