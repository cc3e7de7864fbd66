"""The time a leader writes into the log: what a majority of the voters' clocks agree on.

Why not the leader's own clock
------------------------------

Every broker command carries a timestamp, and the broker's clock is the
largest one it applied (it never goes back). Leases, delayed nacks, consumer
sessions, idempotency keys and idle producers all expire by that clock. If a
leader stamped commands with its own wall clock, one clock stepped forward (an
NTP step, a VM resumed after a long pause, an operator's typo) would age every
deadline at once, for good: idempotency keys would be forgotten hours early
and a retry after the jump would be stored a second time.

So a leader stamps with the time a *majority* of the voters' clocks vouch for:

- every follower puts its wall clock on its heartbeat responses
  (``Message.wall``; the Raft core neither sets nor reads it);
- the leader keeps, per voter, the offset of that wall clock from the
  leader's own *monotonic* clock at the moment the response arrived; the
  monotonic clock does not step, so a step of the leader's own wall clock is
  one more reading, not a change of every reading;
- a stamp is the reading that at most ``max(1, (n - 1) // 2)`` fresh readings
  exceed, among the fresh ones (its own included), and never earlier than the
  previous stamp or the broker's clock; with fewer fresh readings than a
  majority, time holds still.

What holds under clock faults
-----------------------------

- A minority of clocks that run fast or step forward (any amount) cannot move
  the log's time ahead of every correct clock: time runs at most as fast as
  the correct majority's. With three or more voters, one bad clock, the
  leader's included, changes nothing beyond the normal offsets of the others.
- Clocks that run slow or step back hold time back (it never goes backwards):
  expiries come late, which costs latency, never a duplicate or a lost message.
- A new leader continues from the broker's clock (the last applied time), so
  a failover never moves time backwards either.
- What is not covered: a majority of bad clocks (they *are* the time), and a
  single-node cluster, whose only clock is the time. Two faults at once in a
  three-node cluster (one node down, one clock slow) hold time still until one
  of them is repaired.

Network delay makes followers' readings look a little late (by the one-way
latency), which only errs towards slower time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Instant", "LogClock"]


@dataclass(frozen=True, slots=True)
class Instant:
    """One reading of a node's two clocks, in microseconds.

    ``mono`` only ever moves forward at the rate of real time (the shell reads
    ``time.monotonic_ns``, the simulator a node's drifting virtual clock);
    ``wall`` is the calendar clock, which may step either way.
    """

    mono: int
    wall: int


class LogClock:
    """Turns the voters' wall-clock readings into the leader's log timestamps."""

    __slots__ = ("_freshness", "_last", "_node", "_offsets", "_tolerated", "_voters")

    def __init__(self, node: int, voters: Sequence[int], freshness: int) -> None:
        self._node = node
        self._voters = tuple(voters)
        #: A reading older than this (microseconds of the monotonic clock) is ignored.
        self._freshness = freshness
        # How many fast clocks a stamp must stay below: at least one, so even a
        # two-node cluster does not follow its faster clock.
        self._tolerated = max(1, (len(self._voters) - 1) // 2)
        #: node -> (its wall clock minus our monotonic clock, our monotonic time then)
        self._offsets: dict[int, tuple[int, int]] = {}
        self._last = 0

    def observe(self, node: int, wall: int, now: Instant) -> None:
        """``node`` reported its wall clock ``wall`` in a message that arrived ``now``."""
        if wall > 0 and node != self._node and node in self._voters:
            self._offsets[node] = (wall - now.mono, now.mono)

    def readings(self, now: Instant) -> list[int]:
        """The fresh wall-clock readings of the voters as of ``now``, ours first."""
        readings = [now.wall]
        horizon = now.mono - self._freshness
        for offset, at in self._offsets.values():
            if at >= horizon:
                readings.append(now.mono + offset)
        return readings

    def stamp(self, now: Instant, floor: int) -> int:
        """The timestamp of a command proposed ``now``; never below ``floor`` (the
        broker's clock) nor below an earlier stamp."""
        time = self._last if self._last > floor else floor
        readings = self.readings(now)
        if len(readings) >= len(self._voters) // 2 + 1:
            readings.sort()
            agreed = readings[max(0, len(readings) - 1 - self._tolerated)]
            time = max(time, agreed)
        self._last = time
        return time
