"""A participant's durable log: records that survive a crash, in the order written.

An append is a *forced* write: when :meth:`DurableLog.append` returns, the
record is on stable storage. The classic protocols force every record before
sending the message that depends on it (a cohort logs its yes vote before
voting; a coordinator logs its decision before announcing it), so the model
needs no separate fsync step. Crash a node by dropping its core; boot a new
core from the same log.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["DurableLog"]

R = TypeVar("R")


class DurableLog(Generic[R]):
    """Append-only, crash-proof storage for one node's protocol records."""

    __slots__ = ("_records",)

    def __init__(self) -> None:
        self._records: list[R] = []

    def append(self, record: R) -> None:
        """Force ``record`` to stable storage."""
        self._records.append(record)

    def records(self) -> tuple[R, ...]:
        """Everything ever forced, oldest first (what a recovering node reads)."""
        return tuple(self._records)

    @property
    def forced_writes(self) -> int:
        return len(self._records)
