"""What a lab scenario hands back: a verdict, measured figures, tables and charts.

A scenario never prints or plots; it returns a :class:`LabResult`, and the CLI
renders it (rich tables, a matplotlib picture, or one JSON object). Everything
in a result is a pure function of the scenario's seed and trial count, so the
same arguments always give the same JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

__all__ = ["Chart", "Json", "LabResult", "Series", "Table", "Verdict", "rate"]

#: What ``json.dumps`` accepts (read-only container types, so ``list[str]`` is one).
Json: TypeAlias = "Mapping[str, Json] | Sequence[Json] | str | int | float | bool | None"


def rate(count: int, total: int) -> float:
    """``count / total`` rounded for display and JSON (0 when there is nothing)."""
    return round(count / total, 6) if total else 0.0


@dataclass(slots=True)
class Verdict:
    """What held, what broke, and which of those contradict what the argument predicts.

    ``held`` and ``broke`` are plain statements ("atomicity held in 20/20
    trials"); a broken property is not a failure of the lab when the argument
    predicts it (3PC under a partition *must* break atomicity). ``unexpected``
    lists every outcome that contradicts the prediction; the scenario is as
    predicted exactly when it is empty.
    """

    held: list[str] = field(default_factory=list)
    broke: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    @property
    def as_predicted(self) -> bool:
        return not self.unexpected

    def expect(self, ok: bool, held: str, broke: str, *, predicted: bool = True) -> None:
        """Record one property: ``ok`` says whether it held; ``predicted`` whether it should."""
        if ok:
            self.held.append(held)
        else:
            self.broke.append(broke)
        if ok != predicted:
            self.unexpected.append(broke if not ok else f"unexpectedly: {held}")

    def to_json(self) -> dict[str, Json]:
        return {
            "as_predicted": self.as_predicted,
            "held": list(self.held),
            "broke": list(self.broke),
            "unexpected": list(self.unexpected),
        }


@dataclass(frozen=True, slots=True)
class Table:
    """A table for people: every cell is already text."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class Series:
    """One line (or set of points) of a chart."""

    label: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    style: str = "line"  # "line", "step" (post), or "points"


@dataclass(frozen=True, slots=True)
class Chart:
    """One panel of the scenario's picture."""

    title: str
    x_label: str
    y_label: str
    series: tuple[Series, ...]
    log_y: bool = False
    #: Shaded x-ranges, e.g. while a partition lasted: (start, end, label).
    bands: tuple[tuple[float, float, str], ...] = ()


@dataclass(slots=True)
class LabResult:
    """The outcome of one run of a scenario."""

    scenario: str
    seed: int
    trials: int
    verdict: Verdict
    figures: dict[str, Json] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Json]:
        """The ``--json`` object: ``scenario``, ``seed``, ``verdict`` first, then the figures."""
        out: dict[str, Json] = {
            "scenario": self.scenario,
            "seed": self.seed,
            "verdict": self.verdict.to_json(),
            "trials": self.trials,
        }
        out.update(self.figures)
        return out

    def summary_line(self) -> str:
        outcome = "as-predicted" if self.verdict.as_predicted else "UNEXPECTED"
        return (
            f"scenario={self.scenario} seed={self.seed} trials={self.trials} outcome={outcome} "
            f"held={len(self.verdict.held)} broke={len(self.verdict.broke)} "
            f"unexpected={len(self.verdict.unexpected)}"
        )
