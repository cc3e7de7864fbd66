"""Simulated clients: they propose entries and issue linearizable reads.

Each client proposes unique payloads at seed-drawn intervals to the node it
believes leads, keeps up to ``max_pending`` proposals in flight, follows leader
hints, and gives up on an operation after a timeout (its outcome becomes
``info``: unknown to the client, though the checkers still learn the truth).
In the liveness phase a probe client proposes until one entry commits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .scheduler import MS, SECOND
from .world import Op, World

__all__ = ["Workload"]

OP_TIMEOUT = 2 * SECOND


@dataclass(slots=True)
class _Client:
    id: int
    leader_guess: int
    in_flight: list[Op] = field(default_factory=list)
    sequence: int = 0


class Workload:
    def __init__(self, world: World, rng: random.Random) -> None:
        self.world = world
        self.rng = rng
        self.active = False
        self.clients = [
            _Client(client_id, rng.choice(world.voters))
            for client_id in range(1, world.options.clients + 1)
        ]
        self.probe: Op | None = None
        self.probes: list[Op] = []

    def start(self) -> None:
        self.active = True
        for client in self.clients:
            self.world.scheduler.after(self.rng.randint(0, 50 * MS), self._step, client)

    def stop(self) -> None:
        self.active = False

    def _step(self, client: _Client) -> None:
        if not self.active:
            return
        options = self.world.options
        client.in_flight = [op for op in client.in_flight if op.status == "invoke"]
        if len(client.in_flight) < options.max_pending:
            client.sequence += 1
            if self.rng.random() < options.read_fraction:
                context = f"r{client.id}-{client.sequence}".encode()
                result = self.world.read(client.id, client.leader_guess, context)
            else:
                data = f"c{client.id}-{client.sequence}".encode()
                result = self.world.propose(client.id, client.leader_guess, data)
            if isinstance(result, Op):
                client.in_flight.append(result)
                self.world.scheduler.after(OP_TIMEOUT, self.world.expire, result)
            else:
                client.leader_guess = result or self.rng.choice(self.world.voters)
        delay = max(1, int(self.rng.expovariate(1.0) * options.propose_interval))
        self.world.scheduler.after(delay, self._step, client)

    # -- the liveness phase ------------------------------------------------------------

    def start_probe(self) -> None:
        """Propose one entry, again and again, until it commits."""
        self.world.scheduler.after(0, self._probe_step)

    def _probe_step(self) -> None:
        world = self.world
        if self.probe_committed():
            return
        if self.probe is None or self.probe.status != "invoke":
            leader = world.leader()
            if leader is not None:
                data = f"probe-{len(self.probes) + 1}".encode()
                result = world.propose(0, leader.id, data)
                if isinstance(result, Op):
                    self.probe = result
                    self.probes.append(result)
        world.scheduler.after(20 * MS, self._probe_step)
        probe = self.probe
        if (
            probe is not None
            and probe.status == "invoke"
            and world.scheduler.now - probe.invoke_time > SECOND
        ):
            # A probe stuck on a deposed leader is abandoned after a while.
            world.expire(probe)

    def probe_committed(self) -> bool:
        return any(op.status == "ok" for op in self.probes)
