"""The verdict on a queue history: which findings break a guarantee, which are phenomena.

A run fails when a guarantee is broken:

==================  =====================  ==========================================
mode                failure                phenomenon (reported, not a failure)
==================  =====================  ==========================================
at_most_once        any duplicate          lost messages (a consumer crashed holding
                    delivery or effect     a settled message: the price of the mode)
at_least_once       a lost confirmed       duplicate deliveries and effects (a crash
                    message                or an expired lease redelivers)
effectively_once    a lost confirmed       duplicate deliveries (absorbed by the
                    message, a duplicate   consumer's deduplication)
                    effect
==================  =====================  ==========================================

In every mode, these are failures: an unexpected message (delivered but never
published, or published by an operation that said it failed), a first delivery
out of FIFO order, a delivery after an acknowledged ack, and an attempt number
that went backwards. A message stored twice (``copy``) is a failure when the
workload published with producer deduplication (``producer_dedup=True``: the
broker promised not to store a retry twice), a phenomenon otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from .queue import AT_LEAST_ONCE, AT_MOST_ONCE, EFFECTIVELY_ONCE, MODES, ModeCounts

__all__ = ["ALWAYS_FAILURES", "Verdict", "judge"]

#: Findings that break a guarantee whatever the mode.
ALWAYS_FAILURES = ("unexpected", "reordered", "redelivered_after_ack", "attempt_regression")

_FAILURES = {
    AT_MOST_ONCE: ("duplicated", "duplicated_effect"),
    AT_LEAST_ONCE: ("lost",),
    EFFECTIVELY_ONCE: ("lost", "duplicated_effect"),
}


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    failures: tuple[str, ...]  # e.g. "at_most_once: 3 duplicated"
    phenomena: tuple[str, ...]  # e.g. "at_least_once: 12 duplicated (allowed)"

    def describe(self) -> str:
        lines = ["ok" if self.ok else "FAILED"]
        lines += [f"  failure: {text}" for text in self.failures]
        lines += [f"  phenomenon: {text}" for text in self.phenomena]
        return "\n".join(lines)


def judge(by_mode: Mapping[str, ModeCounts], *, producer_dedup: bool = False) -> Verdict:
    """The verdict from the checker's counts per mode (``QueueCheckResult.by_mode``)."""
    failures: list[str] = []
    phenomena: list[str] = []
    counted = [f.name for f in fields(ModeCounts) if f.name not in ("streams", "confirmed")]
    for mode in MODES:
        counts = by_mode.get(mode)
        if counts is None:
            continue
        breaking = set(_FAILURES[mode]) | set(ALWAYS_FAILURES)
        if producer_dedup:
            breaking.add("copy")
        for kind in counted:
            if kind == "delivered":
                continue
            number = getattr(counts, kind)
            if not number:
                continue
            if kind in breaking:
                failures.append(f"{mode}: {number} {kind}")
            else:
                phenomena.append(f"{mode}: {number} {kind} (allowed)")
    return Verdict(not failures, tuple(failures), tuple(phenomena))
