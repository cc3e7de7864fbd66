"""A discrete-event scheduler over virtual time.

Time is an integer number of microseconds, so no floating-point rounding can make
two runs of one seed diverge. Events at the same instant run in the order they
were scheduled (a sequence number breaks ties), never in hash or memory order.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

__all__ = ["MS", "SECOND", "Scheduler", "fmt_time"]

MS = 1_000
SECOND = 1_000_000


def fmt_time(us: int) -> str:
    """Virtual time for humans: ``12.345ms`` style, fixed width for traces."""
    return f"{us / MS:10.3f}ms"


class Scheduler:
    """A priority queue of callbacks keyed by virtual time."""

    __slots__ = ("_queue", "_seq", "events_run", "now")

    def __init__(self) -> None:
        self.now = 0
        self._seq = 0
        self._queue: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self.events_run = 0

    def at(self, time: int, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` at virtual time ``time`` (not before now)."""
        self._seq += 1
        heapq.heappush(self._queue, (max(time, self.now), self._seq, callback, args))

    def after(self, delay: int, callback: Callable[..., None], *args: Any) -> None:
        self.at(self.now + delay, callback, *args)

    def run_until(self, deadline: int, stop: Callable[[], bool] | None = None) -> bool:
        """Run events up to ``deadline``; with ``stop``, return True as soon as it holds.

        ``stop`` is checked after every event, so keep it cheap.
        """
        queue = self._queue
        pop = heapq.heappop
        while queue and queue[0][0] <= deadline:
            time, _, callback, args = pop(queue)
            self.now = time
            self.events_run += 1
            callback(*args)
            if stop is not None and stop():
                return True
        self.now = max(self.now, deadline)
        return False

    def pending(self) -> int:
        return len(self._queue)
