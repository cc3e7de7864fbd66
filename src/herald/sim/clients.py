"""Client processes in the simulator: the real client core over a simulated connection.

A :class:`SimClient` is one client process: a :class:`herald.client.core.ClientCore`
(the very object ``herald.Client`` drives in production) whose actions the
simulator carries out -- dial a node, write bytes, close -- over
:class:`~herald.sim.links.SimLink` connections, with its timers on the
scheduler's virtual clock. A process can crash (everything in its memory is
gone, its connection closes) and be started again as a new one.

Completions reach the workload as their own events: an operation's callback
never runs inside the core's own processing of a reply.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from herald.client.core import ClientCore, Close, Dial, Op, Send

from .links import Links, SimLink
from .scheduler import SECOND

__all__ = ["SimClient", "node_address", "node_of"]

PORT = 7430


def node_address(node: int) -> str:
    return f"n{node}:{PORT}"


def node_of(address: str) -> int:
    host = address.rsplit(":", 1)[0]
    return int(host[1:])


class SimClient:
    """One client process on its own host."""

    def __init__(
        self,
        links: Links,
        name: str,
        rng: random.Random,
        *,
        timeout: int = 2 * SECOND,
        core_class: type[ClientCore] = ClientCore,
        **options: Any,
    ) -> None:
        self.links = links
        self.world = links.world
        self.name = name
        self.alive = True
        seeds = [node_address(node) for node in self.world.voters]
        self.core = core_class(
            seeds,
            name=name,
            producer_id=f"{name}/{rng.getrandbits(32):08x}",
            rng=rng,
            timeout=timeout,
            **options,
        )
        self.link: SimLink | None = None
        self._wake_at: int | None = None
        self.connects = 0
        # A client looks for the leader as soon as it starts (and keeps looking).
        self.core.connect(self.now())
        self.world.scheduler.after(0, self.pump)

    def now(self) -> int:
        return self.world.scheduler.now

    # -- the core's IO ---------------------------------------------------------------

    def pump(self) -> None:
        """Carry out what the core asks for, then arm its next wakeup."""
        if not self.alive:
            return
        core = self.core
        for action in core.take_actions():
            if type(action) is Send:
                if self.link is not None:
                    self.link.send(action.data)
            elif type(action) is Dial:
                if self.link is not None:
                    self.link.close()
                self.link = self.links.dial(self, node_of(action.address))
            elif type(action) is Close and self.link is not None:
                self.link.close()
                self.link = None
        wake = core.next_wakeup()
        if wake is not None and (self._wake_at is None or wake < self._wake_at):
            self._wake_at = wake
            self.world.scheduler.at(wake, self._wakeup, wake)

    def _wakeup(self, at: int) -> None:
        if not self.alive or self._wake_at != at:
            return
        self._wake_at = None
        self.core.tick(self.now())
        self.pump()

    # -- LinkClient ------------------------------------------------------------------

    def on_connected(self, link: SimLink) -> None:
        if self.alive and link is self.link:
            self.connects += 1
            self.core.connected(self.now())
            self.pump()

    def on_dial_failed(self, link: SimLink, error: str) -> None:
        if self.alive and link is self.link:
            self.link = None
            self.core.dial_failed(error, self.now())
            self.pump()

    def on_bytes(self, link: SimLink, data: bytes) -> None:
        if self.alive and link is self.link:
            self.core.received(data, self.now())
            self.pump()

    def on_lost(self, link: SimLink, error: str) -> None:
        if self.alive and link is self.link:
            self.link = None
            self.core.connection_lost(error, self.now())
            self.pump()

    # -- operations --------------------------------------------------------------------

    def watch(self, op: Op[Any], then: Callable[[Op[Any]], None]) -> Op[Any]:
        """Run ``then(op)`` as its own event once ``op`` completes (if still alive)."""
        scheduler = self.world.scheduler

        def done(finished: Op[Any]) -> None:
            scheduler.after(0, self._deliver, finished, then)

        if op.done:
            done(op)
        else:
            op.on_done = done
        self.pump()
        return op

    def _deliver(self, op: Op[Any], then: Callable[[Op[Any]], None]) -> None:
        if self.alive:
            then(op)

    def crash(self) -> None:
        """The process dies: its memory is gone, its connection closes."""
        self.alive = False
        if self.link is not None:
            self.link.close()
            self.link = None
