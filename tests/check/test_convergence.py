"""The convergence checker: specifications of the types, and a planted merge bug it must catch."""

from __future__ import annotations

from herald.check.convergence import check_convergence, counter_value, lww_value, or_set_value
from herald.lab.crdt import GCounter
from herald.lab.scenarios import crdt


def test_equal_and_correct_replicas_pass() -> None:
    report = check_convergence({1: 5, 2: 5, 3: 5}, expected=5)
    assert report.converged and report.correct and report.ok
    assert report.distinct == 1
    assert report.problems == []


def test_disagreeing_replicas_are_neither_converged_nor_correct() -> None:
    report = check_convergence({1: 5, 2: 7, 3: 5}, expected=5)
    assert not report.converged
    assert not report.correct
    assert report.problems[0] == "replicas disagree: r1, r3 hold 5; r2 hold 7"
    assert "r2 differ" in report.problems[1]


def test_agreeing_on_a_wrong_value_is_converged_but_not_correct() -> None:
    report = check_convergence({1: 9, 2: 9}, expected=8)
    assert report.converged and not report.correct and not report.ok


def test_specifications() -> None:
    assert counter_value([3, -1, 2]) == 4
    adds = [("a", (1, 1)), ("a", (2, 1)), ("b", (1, 2))]
    # A remove that saw only one of a's adds leaves the concurrent one: add wins.
    assert or_set_value(adds, [{(1, 1)}]) == ("a", "b")
    assert or_set_value(adds, [{(1, 1), (2, 1)}, {(1, 2)}]) == ()
    assert lww_value([((5, 1), "x"), ((5, 2), "y"), ((4, 9), "z")]) == "y"
    assert lww_value([]) is None


class OverwritingGCounter(GCounter):
    """Planted bug: merge takes the other side's entries as they are. Not commutative
    (merge(a, b) keeps b's stale entries, merge(b, a) keeps a's), so increments are lost."""

    def merge(self, other: GCounter) -> GCounter:
        merged = dict(self.counts)
        merged.update(other.counts)
        return type(self)(tuple(sorted(merged.items())))


def test_the_planted_merge_is_not_commutative() -> None:
    a = OverwritingGCounter().increment(1, 3)
    b = OverwritingGCounter().increment(1, 1).increment(2, 1)
    assert a.merge(b) != b.merge(a)


def test_planted_a_non_commutative_merge_is_caught() -> None:
    honest = crdt.run(0, 2, kinds=(crdt.GCounterKind,))
    assert honest.verdict.as_predicted
    planted = crdt.run(0, 2, kinds=(lambda: crdt.GCounterKind(OverwritingGCounter),))
    assert not planted.verdict.as_predicted
    assert any(
        line.startswith("G-Counter: did not converge") for line in planted.verdict.unexpected
    )
