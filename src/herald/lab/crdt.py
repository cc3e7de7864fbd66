"""State-based CRDTs replicated by gossip, and a naive operation-based counter beside them.

A state-based CRDT is a value with a ``merge`` that is commutative, associative
and idempotent (a join of a semilattice). Replicas apply operations locally and
*send their whole state*; whatever the network does to those messages (lose,
duplicate, reorder, delay), every replica that eventually receives a state
containing all updates holds the same value. Every type here is immutable:
operations and merges return new values, so a state in flight cannot change.

- :class:`GCounter`: one count per replica; merge takes the per-replica maximum.
- :class:`PNCounter`: two G-Counters, increments and decrements.
- :class:`ORSet`: observed-remove set; every add carries a unique tag, a remove
  tombstones the tags it has observed, so a concurrent add wins.
- :class:`LWWRegister`: the write with the greatest (timestamp, replica) wins;
  "last" means largest timestamp, which with skewed clocks need not be the
  write that happened last.

:class:`GossipReplica` is the sans-IO core that holds one of them and gossips it.
:class:`OpCounter` is the foil: it *sends instructions* ("add 1") with
at-least-once retransmission and applies every one it receives, so a duplicated
message or a retransmission after a lost acknowledgement is counted twice.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, Self, TypeVar

__all__ = [
    "CounterMessage",
    "GCounter",
    "GossipReplica",
    "LWWRegister",
    "ORSet",
    "OpCounter",
    "PNCounter",
    "StateMessage",
]


class Mergeable(Protocol):
    def merge(self, other: Self) -> Self: ...


S = TypeVar("S", bound=Mergeable)

Tag = tuple[int, int]  # (replica, sequence number): unique per add


@dataclass(frozen=True, slots=True)
class GCounter:
    """A grow-only counter: ``counts`` holds (replica, count) pairs, sorted by replica."""

    counts: tuple[tuple[int, int], ...] = ()

    def increment(self, replica: int, amount: int = 1) -> GCounter:
        current = dict(self.counts)
        current[replica] = current.get(replica, 0) + amount
        return type(self)(tuple(sorted(current.items())))

    def merge(self, other: GCounter) -> GCounter:
        merged = dict(self.counts)
        for replica, count in other.counts:
            merged[replica] = max(merged.get(replica, 0), count)
        return type(self)(tuple(sorted(merged.items())))

    def value(self) -> int:
        return sum(count for _, count in self.counts)


@dataclass(frozen=True, slots=True)
class PNCounter:
    """Increments and decrements, each a G-Counter."""

    plus: GCounter = GCounter()
    minus: GCounter = GCounter()

    def increment(self, replica: int, amount: int = 1) -> PNCounter:
        return PNCounter(self.plus.increment(replica, amount), self.minus)

    def decrement(self, replica: int, amount: int = 1) -> PNCounter:
        return PNCounter(self.plus, self.minus.increment(replica, amount))

    def merge(self, other: PNCounter) -> PNCounter:
        return PNCounter(self.plus.merge(other.plus), self.minus.merge(other.minus))

    def value(self) -> int:
        return self.plus.value() - self.minus.value()


@dataclass(frozen=True, slots=True)
class ORSet:
    """An observed-remove (add-wins) set of strings."""

    adds: frozenset[tuple[str, Tag]] = frozenset()
    removed: frozenset[Tag] = frozenset()

    def add(self, element: str, tag: Tag) -> ORSet:
        return ORSet(self.adds | {(element, tag)}, self.removed)

    def live_tags(self, element: str) -> frozenset[Tag]:
        return frozenset(t for e, t in self.adds if e == element and t not in self.removed)

    def remove(self, element: str) -> ORSet:
        """Remove ``element`` as far as this replica has seen it added."""
        return ORSet(self.adds, self.removed | self.live_tags(element))

    def merge(self, other: ORSet) -> ORSet:
        return ORSet(self.adds | other.adds, self.removed | other.removed)

    def value(self) -> tuple[str, ...]:
        return tuple(sorted({e for e, t in self.adds if t not in self.removed}))


@dataclass(frozen=True, slots=True)
class LWWRegister:
    """A last-writer-wins register; ``stamp`` is (timestamp, replica).

    Two writes with one stamp (one replica, one clock reading) are ordered by
    value, so that merge stays commutative even then.
    """

    stamp: tuple[int, int] = (0, 0)
    current: str | None = None

    def _order(self) -> tuple[tuple[int, int], str]:
        return (self.stamp, self.current or "")

    def assign(self, value: str, timestamp: int, replica: int) -> LWWRegister:
        written = LWWRegister((timestamp, replica), value)
        return written if written._order() > self._order() else self

    def merge(self, other: LWWRegister) -> LWWRegister:
        return other if other._order() > self._order() else self

    def value(self) -> str | None:
        return self.current


@dataclass(frozen=True, slots=True)
class StateMessage(Generic[S]):
    src: int
    dst: int
    state: S


class GossipReplica(Generic[S]):
    """Holds one CRDT value; every ``period`` ticks sends its state to a random peer."""

    def __init__(
        self, node_id: int, peers: tuple[int, ...], state: S, rng: random.Random, period: int = 2
    ) -> None:
        self.id = node_id
        self.peers = tuple(p for p in peers if p != node_id)
        self.state = state
        self.rng = rng
        self.period = period
        self._ticks = 0
        self.outbox: list[StateMessage[S]] = []

    def update(self, operation: Callable[[S], S]) -> None:
        """Apply a local operation (the driver's client call)."""
        self.state = operation(self.state)

    def step(self, message: StateMessage[S]) -> None:
        self.state = self.state.merge(message.state)

    def tick(self) -> None:
        self._ticks += 1
        if self._ticks % self.period == 0 and self.peers:
            peer = self.rng.choice(self.peers)
            self.outbox.append(StateMessage(self.id, peer, self.state))

    def take_messages(self) -> list[StateMessage[S]]:
        out, self.outbox = self.outbox, []
        return out


@dataclass(frozen=True, slots=True)
class CounterMessage:
    src: int
    dst: int
    kind: str  # "add" or "ack"
    op: int  # the sender's operation number
    amount: int = 0


@dataclass(slots=True)
class OpCounter:
    """The naive counter: broadcast "add n" until acknowledged, apply whatever arrives."""

    id: int
    peers: tuple[int, ...]
    resend: int = 10  # ticks between retransmissions of unacknowledged operations
    value: int = 0
    _next_op: int = 0
    _ticks: int = 0
    unacked: dict[tuple[int, int], int] = field(default_factory=dict)  # (peer, op) -> amount
    outbox: list[CounterMessage] = field(default_factory=list)

    def increment(self, amount: int = 1) -> None:
        self.value += amount
        self._next_op += 1
        for peer in self.peers:
            if peer != self.id:
                self.unacked[(peer, self._next_op)] = amount
                self.outbox.append(CounterMessage(self.id, peer, "add", self._next_op, amount))

    def step(self, message: CounterMessage) -> None:
        if message.kind == "add":
            # The bug on purpose: no memory of which operations were applied.
            self.value += message.amount
            self.outbox.append(CounterMessage(self.id, message.src, "ack", message.op))
        else:
            self.unacked.pop((message.src, message.op), None)

    def tick(self) -> None:
        self._ticks += 1
        if self._ticks % self.resend == 0:
            for (peer, op), amount in sorted(self.unacked.items()):
                self.outbox.append(CounterMessage(self.id, peer, "add", op, amount))

    def take_messages(self) -> list[CounterMessage]:
        out, self.outbox = self.outbox, []
        return out
