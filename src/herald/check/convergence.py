"""Convergence of replicated values: all replicas equal, and equal to what the operations imply.

Strong eventual consistency has two halves, and the checker reports both:

- **converged**: once every update has reached every replica (in the lab:
  after the network healed and gossip had time to spread), all replicas hold
  the same value;
- **correct**: that value is the one the history of operations implies, by the
  data type's specification, computed here from the history alone:

  - counters: the sum of the increments (minus the decrements);
  - observed-remove set: an element is present iff some add of it (identified
    by its unique tag) was not observed by any remove (add wins);
  - last-writer-wins register: the value of the write with the greatest
    (timestamp, replica), equal stamps ordered by value.

Replicas that agree on a wrong value (say, all counted a duplicate twice) are
converged but not correct; replicas that each hold a different value are
neither.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = [
    "ConvergenceReport",
    "check_convergence",
    "counter_value",
    "lww_value",
    "or_set_value",
]

V = TypeVar("V")


@dataclass(slots=True)
class ConvergenceReport(Generic[V]):
    values: dict[int, V]
    expected: V
    converged: bool = False
    correct: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.converged and self.correct

    @property
    def distinct(self) -> int:
        return len({repr(v) for v in self.values.values()})


def check_convergence(finals: Mapping[int, V], expected: V) -> ConvergenceReport[V]:
    """Judge the replicas' final values against each other and against ``expected``."""
    values = dict(sorted(finals.items()))
    report = ConvergenceReport(values, expected)
    groups: dict[str, list[int]] = {}
    for replica, value in values.items():
        groups.setdefault(repr(value), []).append(replica)
    report.converged = len(groups) <= 1
    if not report.converged:
        report.problems.append(
            "replicas disagree: "
            + "; ".join(
                f"{', '.join(f'r{r}' for r in replicas)} hold {text}"
                for text, replicas in sorted(groups.items(), key=lambda item: item[1])
            )
        )
    wrong = [replica for replica, value in values.items() if value != expected]
    report.correct = not wrong
    if wrong:
        report.problems.append(
            f"{', '.join(f'r{r}' for r in wrong)} differ from the value the operations "
            f"imply ({expected!r})"
        )
    return report


def counter_value(amounts: Iterable[int]) -> int:
    """A counter's specification: the sum of the (signed) amounts."""
    return sum(amounts)


def or_set_value(
    adds: Iterable[tuple[str, Hashable]], removes: Iterable[Iterable[Hashable]]
) -> tuple[str, ...]:
    """An observed-remove set's specification.

    ``adds`` are (element, unique tag) pairs; each entry of ``removes`` is the set
    of tags its remove observed. Returns the present elements, sorted.
    """
    removed: set[Hashable] = set()
    for observed in removes:
        removed.update(observed)
    return tuple(sorted({element for element, tag in adds if tag not in removed}))


def lww_value(writes: Iterable[tuple[tuple[int, int], str]]) -> str | None:
    """A last-writer-wins register's specification: the value with the greatest
    (timestamp, replica) stamp, equal stamps ordered by value."""
    best = max(writes, default=None)
    return best[1] if best is not None else None
