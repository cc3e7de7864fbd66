"""The simulated network, and the fault model it promises to inflict.

Fault model (a contract: the cluster must stay safe under all of it, and must be
live again once the liveness phase removes it):

- latency: every message takes ``base + Exp(jitter)``; independent draws per
  message mean messages overtake each other (reordering) all the time;
- loss: each message is dropped with probability ``loss``;
- duplication: each message is delivered twice with probability ``duplicate``
  (the copy takes its own latency, so it may arrive first);
- delay spikes: with probability ``spike`` a message is held an extra
  50-500 ms, far beyond an election timeout;
- partitions: any set of directed links can be cut, so partitions may be
  symmetric (halves, isolating one node or the leader, a bridge) or one-way;
- clogging: a link can be slowed by an extra fixed delay for a while;
- nothing is ever corrupted in flight: Raft assumes no Byzantine faults, and
  a real transport's checksums turn corruption into loss.

Messages to a node that is down are lost; messages to a paused node wait for it.
The seed-drawn rates are printed under the ``SEED=`` line.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from .scheduler import MS, Scheduler

__all__ = ["Addressed", "NetworkProfile", "SimNetwork"]


class Addressed(Protocol):
    """All the network reads of a message: who sent it and to whom (Raft's or any other)."""

    @property
    def src(self) -> int: ...

    @property
    def dst(self) -> int: ...


M = TypeVar("M", bound=Addressed)


@dataclass(frozen=True, slots=True)
class NetworkProfile:
    """The seed-drawn behaviour of the network (times in microseconds)."""

    base_latency: int
    jitter: int
    loss: float
    duplicate: float
    spike: float

    def describe(self) -> str:
        return (
            f"latency={self.base_latency / MS:.2f}ms+exp({self.jitter / MS:.2f}ms) "
            f"loss={self.loss:.3f} dup={self.duplicate:.3f} spike={self.spike:.4f}"
        )


class SimNetwork(Generic[M]):
    """Delivers messages of type ``M`` between nodes through the scheduler, with faults."""

    def __init__(
        self,
        scheduler: Scheduler,
        rng: random.Random,
        profile: NetworkProfile,
        deliver: Callable[[M], None],
    ) -> None:
        self.scheduler = scheduler
        self.rng = rng
        self.profile = profile
        self._deliver = deliver
        self.cut: set[tuple[int, int]] = set()
        self.clogged: dict[tuple[int, int], int] = {}
        self.sent = 0
        self.dropped = 0
        self.duplicated = 0

    # -- faults ------------------------------------------------------------------------

    def partition(self, groups: Sequence[Sequence[int]]) -> None:
        """Cut every link between different groups, both ways."""
        for a_index, group_a in enumerate(groups):
            for b_index, group_b in enumerate(groups):
                if a_index != b_index:
                    for a in group_a:
                        for b in group_b:
                            self.cut.add((a, b))

    def cut_one_way(self, sources: Sequence[int], targets: Sequence[int]) -> None:
        for a in sources:
            for b in targets:
                if a != b:
                    self.cut.add((a, b))

    def clog(self, a: int, b: int, extra_delay: int) -> None:
        self.clogged[(a, b)] = extra_delay
        self.clogged[(b, a)] = extra_delay

    def heal(self) -> None:
        self.cut.clear()
        self.clogged.clear()

    def set_profile(self, profile: NetworkProfile) -> None:
        self.profile = profile

    # -- delivery -----------------------------------------------------------------------

    def _latency(self) -> int:
        profile = self.profile
        rng = self.rng
        delay = profile.base_latency + int(rng.expovariate(1.0) * profile.jitter)
        if profile.spike and rng.random() < profile.spike:
            delay += rng.randint(50 * MS, 500 * MS)
        return delay

    def send(self, message: M) -> None:
        self.sent += 1
        link = (message.src, message.dst)
        profile = self.profile
        rng = self.rng
        if link in self.cut or (profile.loss and rng.random() < profile.loss):
            self.dropped += 1
            return
        extra = self.clogged.get(link, 0)
        self.scheduler.after(self._latency() + extra, self._arrive, message)
        if profile.duplicate and rng.random() < profile.duplicate:
            self.duplicated += 1
            self.scheduler.after(self._latency() + extra, self._arrive, message)

    def _arrive(self, message: M) -> None:
        # A partition cut while the message was in flight drops it too: a real
        # network loses what is in the wire when a link goes down.
        if (message.src, message.dst) in self.cut:
            self.dropped += 1
            return
        self._deliver(message)
