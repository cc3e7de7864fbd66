"""`herald lab delivery`: the three semantics as faults rise."""

from __future__ import annotations

from herald.lab.scenarios.delivery import run
from tests.check.test_broker_histories import LeasesAtMostOnce


def test_each_semantics_shows_what_the_argument_predicts() -> None:
    result = run(0, 1)
    assert result.verdict.as_predicted, result.verdict.unexpected
    totals = result.figures["totals"]
    assert isinstance(totals, dict)
    assert totals["at_most_once"]["lost"] > 0  # type: ignore[index]
    assert totals["at_most_once"]["duplicated"] == 0  # type: ignore[index]
    assert totals["at_least_once"]["lost"] == 0  # type: ignore[index]
    assert totals["at_least_once"]["duplicated"] > 0  # type: ignore[index]
    assert totals["effectively_once"]["lost"] == 0  # type: ignore[index]
    assert totals["effectively_once"]["duplicated"] == 0  # type: ignore[index]
    summary = result.summary()
    assert list(summary)[:3] == ["scenario", "seed", "verdict"]


def test_a_broker_that_leases_at_most_once_deliveries_is_caught() -> None:
    """Planted bug: at-most-once messages come back after a consumer crash."""
    result = run(0, 1, broker_class=LeasesAtMostOnce)
    assert not result.verdict.as_predicted
    assert any("at-most-once" in text for text in result.verdict.unexpected)
