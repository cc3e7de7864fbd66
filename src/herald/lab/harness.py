"""The lab's world: sans-IO protocol cores on the simulator's scheduler and network.

:class:`LabWorld` is to the lab's small protocols what :class:`herald.sim.world.World`
is to Raft: it owns virtual time, ticks every core at a fixed interval, carries
their messages over a :class:`~herald.sim.network.SimNetwork` (so the same fault
model applies: loss, duplication, reordering by jitter, delay spikes,
partitions, clogging), and crashes and restarts nodes.

Crash model: a crashed node's core is dropped with everything in it (volatile
state, its unsent messages, its timers); messages addressed to it are lost
while it is down. What survives is whatever the node's *boot* function closes
over: a scenario gives each node a durable store (for example a
:class:`herald.txn.log.DurableLog`) and a boot function that builds a fresh
core from it, so a restart recovers exactly what a real process would.

Every input to a core (a message, a tick, a client call through :meth:`act`)
is followed by the same cycle: its outgoing messages go to the network, then
the ``after_input`` hook sees the node (drivers record history there, and may
crash the node at that moment). A ``crash_on_receive`` hook can instead crash a
node the instant a message reaches it, before it is processed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from herald.sim.network import Addressed, NetworkProfile, SimNetwork
from herald.sim.scheduler import Scheduler, fmt_time

__all__ = ["Core", "LabWorld"]

M = TypeVar("M", bound=Addressed)
T = TypeVar("T")


class Core(Protocol[T]):
    """The shape every lab protocol shares: input by ``step`` and ``tick``, output drained."""

    def step(self, message: T) -> None: ...

    def tick(self) -> None: ...

    def take_messages(self) -> list[T]: ...


C = TypeVar("C", bound="Core[Any]")


@dataclass(slots=True)
class _Slot(Generic[C]):
    boot: Callable[[], C]
    tick_offset: int
    core: C | None = None
    incarnation: int = 0
    crashes: int = 0


class LabWorld(Generic[M, C]):
    """A set of cores of type ``C`` exchanging messages of type ``M`` under faults."""

    def __init__(
        self,
        rng: random.Random,
        profile: NetworkProfile,
        tick_interval: int,
        tracer: Callable[[str], None] | None = None,
    ) -> None:
        self.rng = rng
        self.scheduler = Scheduler()
        self.network: SimNetwork[M] = SimNetwork(
            self.scheduler, random.Random(rng.getrandbits(64)), profile, self._deliver
        )
        self.tick_interval = tick_interval
        self.trace = tracer
        self._slots: dict[int, _Slot[C]] = {}
        self.after_input: Callable[[int, C], None] | None = None
        self.crash_on_receive: Callable[[int, C, M], bool] | None = None

    # -- nodes --------------------------------------------------------------------------

    def add(self, node_id: int, boot: Callable[[], C], tick_offset: int | None = None) -> None:
        """Register a node; ``boot`` builds its core from whatever survives a crash.

        ``tick_offset`` places the node's ticks within the interval (default:
        drawn from the world's random stream, so nodes do not tick in lockstep).
        """
        if tick_offset is None:
            tick_offset = self.rng.randrange(self.tick_interval)
        self._slots[node_id] = _Slot(boot, tick_offset)

    def start(self) -> None:
        """Boot every registered node, in id order."""
        for node_id in sorted(self._slots):
            self.restart(node_id)

    def core(self, node_id: int) -> C | None:
        """The node's live core, or None while it is down."""
        return self._slots[node_id].core

    def up(self, node_id: int) -> bool:
        return self._slots[node_id].core is not None

    def node_ids(self) -> list[int]:
        return sorted(self._slots)

    def crash(self, node_id: int) -> None:
        slot = self._slots[node_id]
        if slot.core is None:
            return
        slot.core = None
        slot.incarnation += 1
        slot.crashes += 1
        self.log(f"n{node_id} CRASH")

    def restart(self, node_id: int) -> None:
        slot = self._slots[node_id]
        if slot.core is not None:
            return
        slot.incarnation += 1
        slot.core = slot.boot()
        self.log(f"n{node_id} boot")
        first = self.scheduler.now + slot.tick_offset + self.tick_interval
        self.scheduler.at(first, self._tick, node_id, slot.incarnation)
        self._flush(node_id, slot.core)

    def crashes(self) -> int:
        return sum(slot.crashes for slot in self._slots.values())

    # -- input ----------------------------------------------------------------------------

    def act(self, node_id: int, action: Callable[[C], object]) -> bool:
        """Run a client call on a live node's core; False (nothing done) if it is down."""
        core = self._slots[node_id].core
        if core is None:
            return False
        action(core)
        self._flush(node_id, core)
        return True

    def _tick(self, node_id: int, incarnation: int) -> None:
        slot = self._slots[node_id]
        if slot.incarnation != incarnation or slot.core is None:
            return
        self.scheduler.after(self.tick_interval, self._tick, node_id, incarnation)
        core = slot.core
        core.tick()
        self._flush(node_id, core)

    def _deliver(self, message: M) -> None:
        slot = self._slots.get(message.dst)
        if slot is None or slot.core is None:
            return
        core = slot.core
        hook = self.crash_on_receive
        if hook is not None and hook(message.dst, core, message):
            self.crash(message.dst)
            return
        if self.trace is not None:
            self.log(f"n{message.dst} <- {message}")
        core.step(message)
        self._flush(message.dst, core)

    def _flush(self, node_id: int, core: C) -> None:
        for message in core.take_messages():
            self.network.send(message)
        if self.after_input is not None and self._slots[node_id].core is core:
            self.after_input(node_id, core)

    # -- running ----------------------------------------------------------------------------

    def run_until(self, deadline: int, stop: Callable[[], bool] | None = None) -> bool:
        return self.scheduler.run_until(deadline, stop)

    def log(self, text: str) -> None:
        if self.trace is not None:
            self.trace(f"{fmt_time(self.scheduler.now)} {text}")
