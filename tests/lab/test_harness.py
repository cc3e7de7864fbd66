"""The lab world: ticks, delivery through the simulated network, crashes and restarts."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from herald.lab.harness import LabWorld
from herald.sim.network import NetworkProfile
from herald.sim.scheduler import MS

PERFECT = NetworkProfile(base_latency=MS, jitter=0, loss=0.0, duplicate=0.0, spike=0.0)


@dataclass(frozen=True, slots=True)
class Note:
    src: int
    dst: int
    text: str


@dataclass
class Counter:
    """Sends a note to its peer every tick; remembers (durably) how often it booted."""

    id: int
    peer: int
    boots: list[int]
    ticks: int = 0
    received: list[str] = field(default_factory=list)
    outbox: list[Note] = field(default_factory=list)

    def step(self, message: Note) -> None:
        self.received.append(message.text)

    def tick(self) -> None:
        self.ticks += 1
        self.outbox.append(Note(self.id, self.peer, f"{self.id}:{len(self.boots)}:{self.ticks}"))

    def take_messages(self) -> list[Note]:
        out, self.outbox = self.outbox, []
        return out


def world_of_two() -> tuple[LabWorld[Note, Counter], dict[int, list[int]]]:
    world: LabWorld[Note, Counter] = LabWorld(random.Random(1), PERFECT, 10 * MS)
    durable: dict[int, list[int]] = {1: [], 2: []}

    def boot(node: int) -> Counter:
        durable[node].append(node)
        return Counter(node, 3 - node, durable[node])

    world.add(1, lambda: boot(1), tick_offset=0)
    world.add(2, lambda: boot(2), tick_offset=5 * MS)
    return world, durable


def test_ticks_and_messages_flow() -> None:
    world, _ = world_of_two()
    world.start()
    world.run_until(32 * MS)
    one, two = world.core(1), world.core(2)
    assert one is not None and two is not None
    assert one.ticks == 3 and two.ticks == 2  # node 2 ticks half an interval later
    assert two.received == ["1:1:1", "1:1:2", "1:1:3"]
    assert world.network.sent == 5


def test_a_crash_loses_volatile_state_and_messages_to_the_dead() -> None:
    world, durable = world_of_two()
    world.start()
    world.run_until(25 * MS)
    world.crash(2)
    assert world.core(2) is None and not world.up(2)
    assert not world.act(2, lambda core: core.tick())
    world.run_until(55 * MS)
    world.restart(2)
    two = world.core(2)
    assert two is not None and two.ticks == 0 and two.received == []
    assert durable[2] == [2, 2]  # what survives is what boot closes over
    world.run_until(75 * MS)
    assert two.received == ["1:1:6", "1:1:7"]
    assert world.crashes() == 1


def test_hooks_see_every_input_and_can_crash_on_receive() -> None:
    world, _ = world_of_two()
    seen: list[tuple[int, int]] = []
    world.after_input = lambda node, core: seen.append((node, core.ticks))
    world.crash_on_receive = lambda node, core, message: message.text.endswith(":2")
    world.start()
    world.run_until(25 * MS)
    assert not world.up(2)  # died on the arrival of node 1's second note, unprocessed
    assert (1, 2) in seen and (2, 1) in seen
