"""Causal order of broadcast deliveries, judged from a history of sends and deliveries.

Happens-before is computed from the history itself, never from the protocol's
own clocks (which may be what is broken): message *a* precedes message *b* if
*b*'s sender had sent or delivered *a* (or something *a* preceded) before
sending *b*. Because a node's own messages are ordered, the set of messages
preceding *b* is, per origin, a prefix of that origin's messages, so a vector
of counts describes it exactly. The checker replays the history, keeping for
every node the vector of what it has seen (its own sends plus its deliveries,
even out-of-order ones: once delivered, a message's past is part of the
receiver's past).

Findings:

- **causal violation**: a node delivers *b* before some *a* that precedes it
  (a *FIFO violation* is the special case where *a* and *b* share an origin);
- **duplicate**: a node delivers a message twice;
- **missing**: at the end, a node never delivered a message someone sent.

A node's own messages count as delivered to it when it sends them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["BroadcastEvent", "CausalReport", "CausalViolation", "check_causal"]

MessageId = tuple[int, int]  # (origin, sequence number from 1)


@dataclass(frozen=True, slots=True)
class BroadcastEvent:
    time: int
    node: int
    kind: str  # "send" or "deliver"
    message: MessageId


@dataclass(frozen=True, slots=True)
class CausalViolation:
    time: int
    node: int
    delivered: MessageId
    missing: MessageId  # a predecessor not yet delivered at ``node``

    @property
    def fifo(self) -> bool:
        return self.delivered[0] == self.missing[0]

    def __str__(self) -> str:
        return f"n{self.node} delivered {self.delivered} before {self.missing}, which precedes it"


@dataclass(slots=True)
class CausalReport:
    sent: int = 0
    deliveries: int = 0
    violations: list[CausalViolation] = field(default_factory=list)
    duplicates: list[tuple[int, MessageId]] = field(default_factory=list)
    missing: dict[int, int] = field(default_factory=dict)  # node -> messages never delivered

    @property
    def causal(self) -> bool:
        return not self.violations

    @property
    def fifo_violations(self) -> int:
        return sum(v.fifo for v in self.violations)

    @property
    def complete(self) -> bool:
        return not self.duplicates and not any(self.missing.values())


class _Seen:
    """What one node has delivered from one origin: a contiguous prefix plus stragglers."""

    __slots__ = ("above", "prefix")

    def __init__(self) -> None:
        self.prefix = 0
        self.above: set[int] = set()

    def add(self, seq: int) -> bool:
        if seq <= self.prefix or seq in self.above:
            return False
        self.above.add(seq)
        while self.prefix + 1 in self.above:
            self.prefix += 1
            self.above.discard(self.prefix)
        return True


def check_causal(events: Iterable[BroadcastEvent], nodes: Sequence[int]) -> CausalReport:
    """Replay ``events`` (ordered by time; ties keep their order) for ``nodes``."""
    report = CausalReport()
    index = {node: i for i, node in enumerate(sorted(nodes))}
    width = len(index)
    knowledge = {node: [0] * width for node in index}  # what each node's next send depends on
    seen = {node: [_Seen() for _ in range(width)] for node in index}
    stamps: dict[MessageId, list[int]] = {}
    for event in sorted(events, key=lambda e: e.time):
        node = event.node
        origin, seq = event.message
        if event.kind == "send":
            known = knowledge[node]
            known[index[origin]] = max(known[index[origin]], seq)
            stamps[event.message] = list(known)
            seen[node][index[origin]].add(seq)
            report.sent += 1
            continue
        report.deliveries += 1
        stamp = stamps.get(event.message)
        if stamp is None:
            raise ValueError(f"{event.message} delivered at n{node} before it was sent")
        mine = seen[node]
        for position, need in enumerate(stamp):
            if position == index[origin]:
                need = seq - 1
            if mine[position].prefix < need:
                missing_origin = sorted(index)[position]
                report.violations.append(
                    CausalViolation(
                        event.time,
                        node,
                        event.message,
                        (missing_origin, mine[position].prefix + 1),
                    )
                )
                break
        if not mine[index[origin]].add(seq):
            report.duplicates.append((node, event.message))
        known = knowledge[node]
        for position, value in enumerate(stamp):
            known[position] = max(known[position], value)
    for node in index:
        missing = 0
        for origin, seq in stamps:
            slot = seen[node][index[origin]]
            if seq > slot.prefix and seq not in slot.above:
                missing += 1
        report.missing[node] = missing
    return report
