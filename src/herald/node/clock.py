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

So a leader stamps with the time a *majority* of the voters' clocks vouch for,
reached no faster than real time allows:

- every follower puts its wall clock on its heartbeat and vote responses
  (``Message.wall``; the Raft core neither sets nor reads it);
- the leader keeps, per voter, the offset of that wall clock from the
  leader's own *monotonic* clock at the moment the response arrived; the
  monotonic clock does not step, so a step of the leader's own wall clock is
  one more reading, not a change of every reading;
- the *agreed* time is the reading that at most ``max(1, (n - 1) // 2)``
  fresh readings exceed, among the fresh ones (its own included); with fewer
  fresh readings than a majority there is none, and time holds still;
- a stamp moves towards the agreed time, but never by more than 1.1 times the
  leader's monotonic time since its previous stamp, and never back: never
  below the previous stamp or the broker's clock.
- a log that never had a time starts at the agreed time, and until there is
  one the stamp is 0, which the server never writes: it turns writes away as
  overloaded (retry shortly) and skips its Tick. A command stamped 0 would
  start its deadlines at the epoch, and the first real time would expire them
  all at once: a lease, an idempotency key, an idempotent producer forgotten
  and its retry stored twice. Vote responses carry the voters' clocks as
  heartbeat responses do, so a new leader normally has a majority's readings
  the moment it is elected.

The rate bound matters as much as the majority. A clock that was *behind* and
is put right is a forward jump too: time held back by a slow clock (say, the
only other reading while a third node is down) and then following the
corrected clocks at once would age everything stamped meanwhile by the size of
the error, exactly like a clock stepped forward. With the bound, time catches
up at a tenth of real time's rate instead.

What holds under clock faults
-----------------------------

- Measured in the log's time, nothing expires more than 10% early in real
  time, whatever any clock does, as long as the leader's monotonic clock runs
  true; a monotonic clock that runs fast is also capped by the agreed time.
- A minority of wall clocks running fast or stepping forward (any amount),
  the leader's included, cannot move time ahead of every correct clock. With
  three or more voters, one bad clock changes nothing.
- Clocks that run slow or step back hold time back: expiries come late, which
  costs latency, never a duplicate or a lost message; time catches up at 10%
  once they are right.
- A new leader continues from the broker's clock (the last applied time), so
  a failover never moves time backwards either.
- After the whole cluster was down, time continues from where it stopped and
  catches up with the calendar at 10% of real time's rate (publish times then
  lag the calendar for a while; deadlines keep their length).
- What is not covered: a majority of wrong wall clocks (they *are* the time,
  though reached at no more than the rate bound), and a single node whose
  monotonic clock runs fast.

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

    __slots__ = (
        "_freshness",
        "_last",
        "_mono",
        "_node",
        "_offsets",
        "_tolerated",
        "_voters",
    )

    #: How much faster than the leader's monotonic clock the log's time may run
    #: while it catches up with the agreed time: 11/10.
    CATCH_UP = (11, 10)

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
        self._mono: int | None = None

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

    def agreed(self, now: Instant) -> int | None:
        """The time a majority of fresh readings vouch for (None: no fresh majority)."""
        readings = self.readings(now)
        if len(readings) < len(self._voters) // 2 + 1:
            return None
        readings.sort()
        return readings[max(0, len(readings) - 1 - self._tolerated)]

    def stamp(self, now: Instant, floor: int) -> int:
        """The timestamp of a command proposed ``now``; never below ``floor`` (the
        broker's clock) nor below an earlier stamp."""
        elapsed = 0 if self._mono is None else max(0, now.mono - self._mono)
        self._mono = now.mono
        base = self._last if self._last > floor else floor
        agreed = self.agreed(now)
        if agreed is None:
            time = base
        elif base == 0:
            time = agreed  # a log that never had a time starts at the voters' time
        else:
            faster, slower = self.CATCH_UP
            reachable = base + elapsed * faster // slower
            time = max(base, min(agreed, reachable))
        self._last = time
        return time
