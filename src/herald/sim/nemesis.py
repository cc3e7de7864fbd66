"""The nemesis: the seed-drawn schedule of faults of a run's safety phase.

Every action is drawn from the nemesis's own random stream at exponentially
distributed intervals, from the fault kinds the seed enabled:

- network: partition into random halves, isolate one node, isolate the leader,
  a bridge (two sides that share one node), a one-way cut, or a clogged link;
  partitions last until the next network action heals them;
- crash: kill a random node or the leader, sometimes at the moment it has a
  write in flight (between write and fsync); it restarts after a random outage;
- pause: freeze a random node or the leader (a GC pause, a SIGSTOP), then resume;
- clock: change a node's clock rate (0.5x to 2x) for a while, make it leap
  forward by many ticks at once, or (where nodes stamp commands with time)
  step one node's wall clock, most often the leader's, by minutes to hours;
- disk: on the minority of nodes whose disks are faulty, flip a bit somewhere
  in a durable file (rot at rest, found at the next start), or cut the power of
  a node so its disk's crash behaviour (torn, misordered, lost writes) shows.
  The disks' own seed-drawn rates (bit flips, lost writes, read and fsync
  errors) act all along; see ``herald.storage.simfs`` for the contract.

Seeds may also hunt leaders: each newly elected leader is, with the seed's
probability, isolated or crashed within 200 ms of its election. Leader churn
is what leaves entries of many terms scattered over the logs, the situation
the subtle commit rules (the Raft paper's Figure 8) exist for.
"""

from __future__ import annotations

import random

from .scheduler import MS, SECOND
from .world import DATA_DIR, SimNode, World

__all__ = ["Nemesis"]


class Nemesis:
    def __init__(self, world: World, rng: random.Random) -> None:
        self.world = world
        self.rng = rng
        self.active = True
        self.partitioned = False
        self.counts: dict[str, int] = {}
        #: Nodes whose wall clock is stepped now, by how much.
        self.stepped: dict[int, int] = {}
        self._leader_picks = 0

    def start(self) -> None:
        options = self.world.options
        if options.faults:
            self._schedule_next()
        if options.hunt_leaders and ("network" in options.faults or "crash" in options.faults):
            self.world.on_new_leader = self._leader_elected

    def _leader_elected(self, node: SimNode) -> None:
        if not self.active or self.rng.random() >= self.world.options.hunt_leaders:
            return
        delay = self.rng.randint(0, 200 * MS)
        self.world.scheduler.after(delay, self._strike_leader, node, node.incarnation)

    def _strike_leader(self, node: SimNode, incarnation: int) -> None:
        if not self.active or node.incarnation != incarnation or not node.up:
            return
        faults = self.world.options.faults
        use_network = "network" in faults and ("crash" not in faults or self.rng.random() < 0.5)
        if use_network:
            self._isolate(node.id, "hunted leader")
            self._count("hunt_isolate")
        else:
            self.world.crash(node)
            outage = self.rng.randint(1 * MS, 500 * MS)
            self.world.scheduler.after(outage, self._restart, node, node.incarnation)
            self._count("hunt_crash")

    def _isolate(self, victim: int, why: str) -> None:
        network = self.world.network
        network.heal()
        rest = [v for v in self.world.voters if v != victim]
        network.partition([[victim], rest])
        self.partitioned = True
        self.world.log(f"nemesis: isolate n{victim} ({why})")

    def stop(self) -> None:
        self.active = False

    def _schedule_next(self) -> None:
        mean = self.world.options.fault_interval
        delay = max(1, int(self.rng.expovariate(1.0) * mean))
        self.world.scheduler.after(delay, self._act)

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def _act(self) -> None:
        if not self.active:
            return
        kind = self.rng.choice(self.world.options.faults)
        getattr(self, f"_fault_{kind}")()
        self._schedule_next()

    # -- choosing victims ---------------------------------------------------------------

    def _a_leader(self) -> SimNode | None:
        """A group's leader: each group in turn, so every group's leader is struck
        (in turn, not drawn: a world of one group draws what it always drew)."""
        world = self.world
        group = self._leader_picks % world.groups
        self._leader_picks += 1
        return world.leader(group)

    def _some_node(self, prefer_leader: bool) -> SimNode:
        world = self.world
        if prefer_leader:
            leader = self._a_leader()
            if leader is not None:
                return leader
        return world.nodes[self.rng.choice(world.voters)]

    # -- faults -----------------------------------------------------------------------------

    def _fault_network(self) -> None:
        world = self.world
        network = world.network
        rng = self.rng
        if self.partitioned and rng.random() < 0.6:
            network.heal()
            self.partitioned = False
            world.log("nemesis: heal network")
            return
        voters = list(world.voters)
        # One partition at a time: a new one replaces whatever was cut before.
        network.heal()
        choice = rng.randrange(6)
        if choice == 0:
            rng.shuffle(voters)
            cut = rng.randint(1, len(voters) - 1)
            groups = [voters[:cut], voters[cut:]]
            network.partition(groups)
            world.log(f"nemesis: partition {groups}")
            self._count("partition")
        elif choice in (1, 2):
            victim = self._some_node(prefer_leader=choice == 2).id
            self._isolate(victim, "leader" if choice == 2 else "random node")
            self._count("partition")
        elif choice == 3 and len(voters) >= 3:
            rng.shuffle(voters)
            bridge = voters[0]
            half = (len(voters) - 1) // 2
            left, right = voters[1 : 1 + half], voters[1 + half :]
            network.partition([left, right])
            world.log(f"nemesis: bridge n{bridge} between {left} and {right}")
            self._count("partition")
        elif choice == 4:
            rng.shuffle(voters)
            cut = rng.randint(1, len(voters) - 1)
            network.cut_one_way(voters[:cut], voters[cut:])
            world.log(f"nemesis: one-way cut {voters[:cut]} -> {voters[cut:]}")
            self._count("partition")
        else:
            a, b = rng.sample(voters, 2)
            extra = rng.randint(20 * MS, 400 * MS)
            network.clog(a, b, extra)
            world.log(f"nemesis: clog n{a}<->n{b} +{extra / MS:.0f}ms")
            self._count("clog")
        self.partitioned = True

    def _fault_crash(self) -> None:
        world = self.world
        rng = self.rng
        up = [node for node in world.nodes.values() if node.up]
        if not up:
            return
        victim = self._some_node(prefer_leader=rng.random() < 0.5)
        if not victim.up:
            victim = rng.choice(up)
        # A supervisor restarting a process at once and a machine that stays down
        # for seconds are both common; the quick restart is the harder case for
        # anything that was only in memory.
        if rng.random() < 0.4:
            outage = rng.randint(1 * MS, 30 * MS)
        else:
            outage = rng.randint(30 * MS, 3 * SECOND)
        moment = rng.random()
        if moment < 0.45:
            # Strike at the worst moments: after a write but before its fsync;
            # right after an fsync, when the node has just acknowledged something;
            # right after it granted a vote.
            kind = (
                "before_sync" if moment < 0.15 else "after_sync" if moment < 0.3 else "after_vote"
            )
            world.arm_crash(victim, kind, outage)
            world.log(f"nemesis: crash n{victim.id} at its next {kind.replace('_', ' ')}")
            world.scheduler.after(3 * SECOND, self._disarm, victim, victim.incarnation)
        else:
            world.crash(victim)
            world.scheduler.after(outage, self._restart, victim, victim.incarnation)
        self._count("crash")

    def _disarm(self, node: SimNode, incarnation: int) -> None:
        if node.incarnation == incarnation:
            node.armed = ""

    def _restart(self, node: SimNode, incarnation: int) -> None:
        if self.active and node.incarnation == incarnation and not node.up:
            self.world.restart(node)

    def _fault_pause(self) -> None:
        victim = self._some_node(prefer_leader=self.rng.random() < 0.5)
        if not victim.up or victim.paused:
            return
        self.world.pause(victim)
        duration = self.rng.randint(20 * MS, 2 * SECOND)
        self.world.scheduler.after(duration, self.world.resume, victim)
        self._count("pause")

    def _fault_clock(self) -> None:
        world = self.world
        rng = self.rng
        if world.server_factory is not None and rng.random() < 0.35:
            self._step_a_wall_clock()
            return
        victim = self._some_node(prefer_leader=rng.random() < 0.3)
        if rng.random() < 0.5:
            ticks = rng.randint(5, 4 * world.options.election_tick)
            world.jump_clock(victim, ticks)
            self._count("clock_jump")
            return
        rate = rng.choice((0.5, 0.75, 1.5, 2.0))
        world.set_clock_rate(victim, victim.base_clock_rate * rate)
        world.log(f"nemesis: n{victim.id} clock rate {rate}x")
        world.scheduler.after(rng.randint(100 * MS, 3 * SECOND), self._reset_clock, victim)
        self._count("clock_rate")

    def _step_a_wall_clock(self) -> None:
        """One node's wall clock alone steps, most often the leader's, by minutes to
        hours, and is put right a while later (NTP notices): the time in the log
        must not follow a minority of clocks. At most a minority is wrong at once
        (a majority of wrong clocks *is* the time; see herald.node.clock)."""
        world = self.world
        rng = self.rng
        if len(self.stepped) >= (len(world.voters) - 1) // 2:
            return
        leader = self._a_leader()
        victim = leader if leader is not None and rng.random() < 0.7 else None
        victim = victim or world.nodes[rng.choice(world.voters)]
        if victim.id in self.stepped:
            return
        delta = rng.choice((1, 1, 1, -1)) * rng.randint(60, 6 * 3600) * SECOND
        world.step_wall_clock(victim, delta)
        self.stepped[victim.id] = delta
        world.scheduler.after(rng.randint(100 * MS, 3 * SECOND), self._unstep, victim.id)
        self._count("wall_step")

    def _unstep(self, node_id: int) -> None:
        delta = self.stepped.pop(node_id, None)
        if delta is not None:
            self.world.step_wall_clock(self.world.nodes[node_id], -delta)

    def _reset_clock(self, node: SimNode) -> None:
        self.world.set_clock_rate(node, node.base_clock_rate)

    def _fault_disk(self) -> None:
        world = self.world
        rng = self.rng
        faulty = world.options.faulty_disks
        if faulty and rng.random() < 0.5:
            node = world.nodes[rng.choice(faulty)]
            files = [name for name in node.disk.list_dir(DATA_DIR) if not name.endswith(".tmp")]
            if not files:
                return
            name = rng.choice(files)
            path = f"{DATA_DIR}/{name}"
            size = len(node.disk.media(path))
            if size == 0:
                return
            offset = rng.randrange(size)
            node.disk.corrupt(path, offset, 1 << rng.randrange(8))
            world.log(f"nemesis: bit rot in n{node.id}:{name} at byte {offset}")
            self._count("disk_rot")
            return
        victim = world.nodes[rng.choice(world.voters)]
        if not victim.up:
            return
        world.log(f"nemesis: power loss at n{victim.id}")
        world.crash(victim)
        world.scheduler.after(
            rng.randint(1 * MS, SECOND), self._restart, victim, victim.incarnation
        )
        self._count("power_loss")

    # -- the end of the safety phase ------------------------------------------------------

    def heal_everything(self) -> None:
        """Undo every fault: the liveness phase begins."""
        self.stop()
        world = self.world
        world.network.heal()
        for node_id in list(self.stepped):
            self._unstep(node_id)
        for node in world.nodes.values():
            node.armed = ""
            world.set_clock_rate(node, node.base_clock_rate)
            # The disk keeps its crash behaviour but stops rotting and failing.
            node.disk.faults = world.options.crash_disk
            if node.paused:
                world.resume(node)
            if not node.up:
                world.restart(node)
        world.log("nemesis: healed everything, restarted every node")
