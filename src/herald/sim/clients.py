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
from herald.client.routing import GroupRouter

from .links import Links, SimLink
from .scheduler import SECOND

__all__ = ["SimClient", "node_address", "node_of"]

PORT = 7430


def node_address(node: int) -> str:
    return f"n{node}:{PORT}"


def node_of(address: str) -> int:
    host = address.rsplit(":", 1)[0]
    return int(host[1:])


class _Session:
    """One of a client process's cores and its connection (one per data group)."""

    __slots__ = ("_wake_at", "client", "core", "link")

    def __init__(self, client: SimClient, core: ClientCore) -> None:
        self.client = client
        self.core = core
        self.link: SimLink | None = None
        self._wake_at: int | None = None

    def pump(self) -> None:
        """Carry out what the core asks for, then arm its next wakeup."""
        client = self.client
        if not client.alive:
            return
        core = self.core
        for action in core.take_actions():
            if type(action) is Send:
                if self.link is not None:
                    self.link.send(action.data)
            elif type(action) is Dial:
                if self.link is not None:
                    self.link.close()
                self.link = client.links.dial(self, node_of(action.address))
            elif type(action) is Close and self.link is not None:
                self.link.close()
                self.link = None
        wake = core.next_wakeup()
        if wake is not None and (self._wake_at is None or wake < self._wake_at):
            self._wake_at = wake
            client.world.scheduler.at(wake, self._wakeup, wake)

    def _wakeup(self, at: int) -> None:
        if not self.client.alive or self._wake_at != at:
            return
        self._wake_at = None
        self.core.tick(self.client.now())
        self.pump()

    # -- LinkClient ------------------------------------------------------------------

    def on_connected(self, link: SimLink) -> None:
        client = self.client
        if client.alive and link is self.link:
            client.connects += 1
            self.core.connected(client.now())
            self.pump()

    def on_dial_failed(self, link: SimLink, error: str) -> None:
        client = self.client
        if client.alive and link is self.link:
            self.link = None
            self.core.dial_failed(error, client.now())
            self.pump()

    def on_bytes(self, link: SimLink, data: bytes) -> None:
        client = self.client
        if client.alive and link is self.link:
            self.core.received(data, client.now())
            self.pump()
            if self is client.sessions[0]:
                client.grow()

    def on_lost(self, link: SimLink, error: str) -> None:
        client = self.client
        if client.alive and link is self.link:
            self.link = None
            self.core.connection_lost(error, client.now())
            self.pump()

    def close_link(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None


class SimClient:
    """One client process on its own host: a core per data group, routed as
    :class:`herald.Client` routes (:class:`~herald.client.routing.GroupRouter`)."""

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
        self.seeds = [node_address(node) for node in self.world.voters]
        self._rng = rng
        self._options: dict[str, Any] = {
            "name": name,
            "producer_id": f"{name}/{rng.getrandbits(32):08x}",
            "timeout": timeout,
            **options,
        }
        self._core_class = core_class
        self.core = core_class(self.seeds, rng=rng, **self._options)
        self.router = GroupRouter(self.core, self._make_core)
        self.sessions = [_Session(self, self.core)]
        self._waiting: list[Callable[[], None]] = []
        self.connects = 0
        # A client looks for the leader as soon as it starts (and keeps looking).
        self.core.connect(self.now())
        self.world.scheduler.after(0, self.pump)

    def now(self) -> int:
        return self.world.scheduler.now

    def _make_core(self, group: int) -> ClientCore:
        rng = random.Random(self._rng.getrandbits(64))
        return self._core_class(self.seeds, rng=rng, group=group, **self._options)

    def grow(self) -> None:
        """Make the cores of the groups group 0's greeting named, and run what
        waited for the group count."""
        now = self.now()
        for core in self.router.grow():
            session = _Session(self, core)
            self.sessions.append(session)
            core.connect(now)
            self.world.scheduler.after(0, session.pump)
        if self._waiting and self.ready:
            waiting, self._waiting = self._waiting, []
            for then in waiting:
                self.world.scheduler.after(0, self._run_if_alive, then)

    def _run_if_alive(self, then: Callable[[], None]) -> None:
        if self.alive:
            then()

    # -- routing ----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether requests can be routed: the group count is known (a cluster of
        one group needs none: every request goes to group 0, as before any
        greeting)."""
        return self.world.options.groups == 1 or self.router.known

    def when_ready(self, then: Callable[[], None]) -> None:
        """Run ``then`` (as its own event) once requests can be routed, as
        :meth:`herald.Client.start` returns once the first greeting came."""
        if self.ready:
            then()
        else:
            self._waiting.append(then)

    def core_for(self, queue: str) -> ClientCore:
        """The core of ``queue``'s data group."""
        return self.router.core_for(queue)

    # -- the cores' IO ----------------------------------------------------------------

    def pump(self) -> None:
        for session in self.sessions:
            session.pump()

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
        """The process dies: its memory is gone, its connections close."""
        self.alive = False
        self._waiting.clear()
        for session in self.sessions:
            session.close_link()
