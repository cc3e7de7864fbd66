"""Scenario ``raft-partition``: a minority is fenced, a majority goes on, healing catches up.

Five Raft nodes run in the simulator's :class:`~herald.sim.world.World` (the real
node host, Raft's safety checker on every event; pre-vote and check-quorum on),
on a network that loses and duplicates 1 % of messages. A client sits next to
every node and tries to write every 20 ms through the leader it can reach. The
lab, not the nemesis, drives the faults, on this timeline (after the first
leader is elected):

- 0-1 s: healthy;
- 1-3 s, **partition A**: the leader and one follower (2 nodes) are cut off
  from the other three;
- 3-4 s: healed;
- 4-6 s, **partition B**: the leader and two followers (3 nodes) are cut off
  from the other two;
- 6-7.5 s: healed.

Per side and phase: write attempts, writes acknowledged, availability (the
share of attempts acknowledged), and commit progress. Checked:

- **fenced**: while partitioned, no write invoked on the minority side is
  acknowledged, and no minority node's commit index passes what a majority of
  logs held at the cut (the deposed leader keeps appending, but cannot commit);
- **majority progress**: the majority side acknowledges writes (after a new
  election in A), and how long it was unavailable;
- **catch-up**: within 2 s of healing, every node applied everything committed;
- **Raft safety** (the simulator's Figure 3 checker) throughout.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

from herald.lab.result import Chart, Json, LabResult, Series, Table, Verdict, rate
from herald.raft import Raft
from herald.sim.invariants import SafetyViolation
from herald.sim.network import NetworkProfile
from herald.sim.options import SimOptions, draw_options
from herald.sim.scheduler import MS, SECOND
from herald.sim.world import Op, World

__all__ = ["run", "run_trial"]

NAME = "raft-partition"
NODES = 5
CLIENT_INTERVAL = 20 * MS
OP_TIMEOUT = SECOND
CATCH_UP_BOUND = 2 * SECOND
SAMPLE = 10 * MS
BUCKET = 100 * MS
#: (phase name, start, end) relative to the first election; partitions are A and B.
PHASES = (
    ("healthy", 0, SECOND),
    ("partition A", SECOND, 3 * SECOND),
    ("healed", 3 * SECOND, 4 * SECOND),
    ("partition B", 4 * SECOND, 6 * SECOND),
    ("healed again", 6 * SECOND, 7 * SECOND + SECOND // 2),
)


def options_for(seed: int) -> SimOptions:
    base = draw_options(seed, faults=())
    return dataclasses.replace(
        base,
        nodes=NODES,
        network=NetworkProfile(base_latency=MS, jitter=MS, loss=0.01, duplicate=0.01, spike=0.0),
        faults=(),
        tick_interval=10 * MS,
        election_tick=15,
        election_tick_max=30,
        heartbeat_tick=3,
        drift=0.0,
        fsync_latency=500,
        clients=NODES,
        max_pending=1,
        read_fraction=0.0,
        snapshot_entries=100_000,
        pre_vote=True,
        check_quorum=True,
        hunt_leaders=0.0,
    )


@dataclass(slots=True)
class _Client:
    node: int
    guess: int
    in_flight: Op | None = None
    attempts: list[tuple[int, int]] = field(default_factory=list)  # (time, phase index)


@dataclass(slots=True)
class _Phase:
    name: str
    start: int
    end: int
    minority: tuple[int, ...] = ()
    majority: tuple[int, ...] = ()
    old_leader: int = 0
    #: The highest index a majority of logs reached at the cut: all the minority may
    #: ever commit while cut off (an entry acknowledged by a majority just before the
    #: cut may still be counted committed after it, once the leader's own fsync ends).
    quorum_index_at_cut: int = 0
    minority_max_commit: int = 0  # the highest commit index a minority node reached
    first_majority_ack: int | None = None
    caught_up_at: int | None = None
    commit_at_heal: int = 0


@dataclass(frozen=True, slots=True)
class SideFigures:
    """What one side of the cluster (or the whole, when healed) did in one phase."""

    phase: str
    side: str  # "minority", "majority" or "all"
    nodes: tuple[int, ...]
    attempts: int  # client write attempts from this side's clients
    acked: int  # acknowledged before the phase ended
    acked_after_phase: int
    applied_from: int  # the side's highest applied index when the phase began
    applied_to: int  # ... and when it ended

    @property
    def availability(self) -> float:
        return rate(self.acked, self.attempts)

    def to_json(self) -> dict[str, Json]:
        return {
            "phase": self.phase,
            "side": self.side,
            "nodes": list(self.nodes),
            "attempts": self.attempts,
            "acked": self.acked,
            "acked_after_phase": self.acked_after_phase,
            "availability": self.availability,
            "applied_from": self.applied_from,
            "applied_to": self.applied_to,
        }


@dataclass(slots=True)
class TrialReport:
    """One run of the timeline."""

    seed: int
    phases: list[_Phase]
    sides: list[SideFigures]
    safety: str  # "" when Raft's safety checker found nothing
    applied: dict[int, list[tuple[int, int]]]  # node -> (time, applied index) samples
    acks: list[tuple[int, str]]  # (time, side) of each acknowledged write
    leaders: list[tuple[int, int, int]]  # (time, node, term) when a node is first seen leading
    elected_at: int
    ended_at: int


class _Driver:
    def __init__(self, seed: int, raft_class: type[Raft]) -> None:
        self.seed = seed
        master = random.Random(f"herald-lab/{NAME}/{seed}")
        self.options = options_for(seed)
        self.world = World(self.options, random.Random(master.getrandbits(64)), raft_class)
        self.rng = random.Random(master.getrandbits(64))
        self.side_of: dict[int, str] = dict.fromkeys(self.world.voters, "all")
        self.clients = [_Client(node, node) for node in self.world.voters]
        self.invoked: list[tuple[Op, str, int]] = []  # (op, writer's side, phase index)
        self.phase_index = -1
        self.phases: list[_Phase] = []
        self.applied: dict[int, list[tuple[int, int]]] = {n: [] for n in self.world.voters}
        self.acks: list[tuple[int, str]] = []
        self.leaders: list[tuple[int, int, int]] = []
        self.world.on_new_leader = self._on_leader

    @property
    def now(self) -> int:
        return self.world.scheduler.now

    def _on_leader(self, node: object) -> None:
        leader = self.world.leader()
        if leader is not None and leader.host is not None:
            self.leaders.append((self.now, leader.id, leader.host.node.raft.term))

    def applied_index(self, node: int) -> int:
        return self.world.checker.applied_index(node)

    def node_commit(self, node_id: int) -> int:
        host = self.world.nodes[node_id].host
        return host.node.raft.log.committed if host is not None else 0

    def quorum_index(self) -> int:
        """The index a majority of the nodes' logs reach (the quorum-th highest last index)."""
        lasts = sorted(
            (
                node.host.node.raft.log.last_index() if node.host is not None else 0
                for node in self.world.nodes.values()
            ),
            reverse=True,
        )
        return lasts[len(lasts) // 2]

    def commit_index(self) -> int:
        """The highest commit index any node knows."""
        return max(self.node_commit(node) for node in self.world.voters)

    def leader_id(self) -> int:
        leader = self.world.leader()
        return leader.id if leader is not None else 0

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> TrialReport:
        world = self.world
        safety = ""
        elected_at = 0
        try:
            for node_id in world.voters:
                world.boot(world.nodes[node_id])
            world.scheduler.run_until(3 * SECOND, stop=lambda: world.leader() is not None)
            elected_at = self.now
            for start_name, start, end in PHASES:
                self.phases.append(_Phase(start_name, elected_at + start, elected_at + end))
            for index, phase in enumerate(self.phases):
                world.scheduler.at(phase.start, self._enter_phase, index)
            for client in self.clients:
                world.scheduler.after(
                    self.rng.randint(0, CLIENT_INTERVAL), self._client_step, client
                )
            world.scheduler.after(0, self._sample)
            world.scheduler.run_until(self.phases[-1].end)
        except SafetyViolation as violation:
            # The run stops here; what happened up to now is still judged.
            safety = str(violation)
        self._close_phase()
        self._collect_acks()
        return TrialReport(
            self.seed,
            self.phases,
            self._side_figures(),
            safety,
            self.applied,
            self.acks,
            self.leaders,
            elected_at,
            self.now,
        )

    def _enter_phase(self, index: int) -> None:
        self._close_phase()
        self.phase_index = index
        phase = self.phases[index]
        network = self.world.network
        network.heal()
        voters = list(self.world.voters)
        if phase.name.startswith("partition"):
            leader = self.leader_id() or self.rng.choice(voters)
            others = [v for v in voters if v != leader]
            self.rng.shuffle(others)
            minority: tuple[int, ...]
            majority: tuple[int, ...]
            if phase.name == "partition A":
                minority = (leader, others[0])
                majority = tuple(others[1:])
            else:
                majority = (leader, others[0], others[1])
                minority = tuple(others[2:])
            phase.minority, phase.majority = tuple(sorted(minority)), tuple(sorted(majority))
            phase.old_leader = leader
            phase.quorum_index_at_cut = self.quorum_index()
            network.partition([list(phase.minority), list(phase.majority)])
            for node in phase.minority:
                self.side_of[node] = "minority"
            for node in phase.majority:
                self.side_of[node] = "majority"
            self.world.log(f"lab: partition {phase.minority} | {phase.majority}")
        else:
            self.side_of = dict.fromkeys(voters, "all")
            phase.commit_at_heal = self.commit_index()
            self.world.log("lab: heal")

    def _close_phase(self) -> None:
        if self.phase_index < 0:
            return
        phase = self.phases[self.phase_index]
        for node in phase.minority:
            phase.minority_max_commit = max(phase.minority_max_commit, self.node_commit(node))

    def _sample(self) -> None:
        now = self.now
        for node in self.world.voters:
            self.applied[node].append((now, self.applied_index(node)))
        if 0 <= self.phase_index < len(self.phases):
            phase = self.phases[self.phase_index]
            for node in phase.minority:
                phase.minority_max_commit = max(phase.minority_max_commit, self.node_commit(node))
            healed = not phase.minority and phase.caught_up_at is None
            if healed and all(
                self.applied_index(n) >= phase.commit_at_heal for n in self.world.voters
            ):
                phase.caught_up_at = now
        self.world.scheduler.after(SAMPLE, self._sample)

    def _reachable(self, a: int, b: int) -> bool:
        return (a, b) not in self.world.network.cut

    def _client_step(self, client: _Client) -> None:
        world = self.world
        world.scheduler.after(CLIENT_INTERVAL, self._client_step, client)
        op = client.in_flight
        if op is not None:
            if op.status == "invoke":
                if self.now - op.invoke_time > OP_TIMEOUT:
                    world.expire(op)
                else:
                    return
            client.in_flight = None
        side = self.side_of[client.node]
        client.attempts.append((self.now, self._phase_of(self.now)))
        target = client.guess if self._reachable(client.node, client.guess) else client.node
        data = f"w{client.node}-{len(client.attempts)}".encode()
        result = world.propose(client.node, target, data)
        if isinstance(result, Op):
            client.in_flight = result
            self.invoked.append((result, side, self._phase_of(self.now)))
        else:
            hint = result
            client.guess = hint if hint and self._reachable(client.node, hint) else client.node
            if client.guess == target:
                reachable = [v for v in world.voters if self._reachable(client.node, v)]
                client.guess = self.rng.choice(reachable or [client.node])

    def _collect_acks(self) -> None:
        for op, side, phase_index in self.invoked:
            if op.status != "ok":
                continue
            self.acks.append((op.complete_time, side))
            if phase_index < 0 or side != "majority":
                continue
            phase = self.phases[phase_index]
            if op.complete_time < phase.end and (
                phase.first_majority_ack is None or op.complete_time < phase.first_majority_ack
            ):
                phase.first_majority_ack = op.complete_time
        self.acks.sort()

    def _phase_of(self, time: int) -> int:
        for index, phase in enumerate(self.phases):
            if phase.start <= time < phase.end:
                return index
        return -1

    def _side_figures(self) -> list[SideFigures]:
        rows: list[SideFigures] = []
        for index, phase in enumerate(self.phases):
            sides = (
                [("minority", phase.minority), ("majority", phase.majority)]
                if phase.minority
                else [("all", tuple(self.world.voters))]
            )
            for side, members in sides:
                attempts = sum(
                    1
                    for client in self.clients
                    if client.node in members
                    for _, p in client.attempts
                    if p == index
                )
                mine = [op for op, _, p in self.invoked if op.client in members and p == index]
                acked = [op for op in mine if op.status == "ok" and op.complete_time < phase.end]
                acked_later = [
                    op for op in mine if op.status == "ok" and op.complete_time >= phase.end
                ]
                start_applied = _at(self.applied, members, phase.start)
                end_applied = _at(self.applied, members, phase.end)
                rows.append(
                    SideFigures(
                        phase.name,
                        side,
                        members,
                        attempts,
                        len(acked),
                        len(acked_later),
                        start_applied,
                        end_applied,
                    )
                )
        return rows


def _at(samples: dict[int, list[tuple[int, int]]], members: tuple[int, ...], time: int) -> int:
    """The highest applied index among ``members`` at the last sample up to ``time``."""
    best = 0
    for node in members:
        value = 0
        for when, applied in samples[node]:
            if when > time:
                break
            value = applied
        best = max(best, value)
    return best


def run_trial(seed: int, raft_class: type[Raft] = Raft) -> TrialReport:
    return _Driver(seed, raft_class).run()


def run(seed: int, trials: int, *, raft_class: type[Raft] = Raft) -> LabResult:
    """``trials`` runs of the timeline, on seeds ``seed``, ``seed + 1``, ..."""
    reports = [run_trial(seed + trial, raft_class) for trial in range(trials)]
    verdict = Verdict()
    unsafe = [r for r in reports if r.safety]
    verdict.expect(
        not unsafe,
        f"Raft safety (Figure 3) held in {trials}/{trials} trials",
        f"Raft safety violated: {unsafe[0].safety}" if unsafe else "",
    )
    fenced_failures: list[str] = []
    progress_failures: list[str] = []
    catch_up_failures: list[str] = []
    unavailable: dict[str, list[int]] = {"partition A": [], "partition B": []}
    catch_ups: list[int] = []
    for report in reports:
        for phase in report.phases:
            if phase.start > report.ended_at:
                break
            if phase.minority:
                row = _row(report, phase.name, "minority")
                if row.acked or phase.minority_max_commit > phase.quorum_index_at_cut:
                    fenced_failures.append(
                        f"seed {report.seed} {phase.name}: minority {phase.minority} acked "
                        f"{row.acked} writes, committed up to {phase.minority_max_commit} "
                        f"(a majority held up to {phase.quorum_index_at_cut} at the cut)"
                    )
                if report.safety:
                    continue  # the run stopped early: only the fence can be judged
                majority = _row(report, phase.name, "majority")
                if not majority.acked or phase.first_majority_ack is None:
                    progress_failures.append(f"seed {report.seed} {phase.name}")
                else:
                    unavailable[phase.name].append(phase.first_majority_ack - phase.start)
            elif phase.commit_at_heal and not report.safety:
                if phase.caught_up_at is None or phase.caught_up_at - phase.start > CATCH_UP_BOUND:
                    catch_up_failures.append(f"seed {report.seed} {phase.name}")
                else:
                    catch_ups.append(phase.caught_up_at - phase.start)
    partitions = 2 * trials
    verdict.expect(
        not fenced_failures,
        f"fenced: the minority side acknowledged no write and committed nothing a majority "
        f"did not already hold, in {partitions}/{partitions} partitions",
        "minority not fenced: " + "; ".join(fenced_failures[:2]),
    )
    verdict.expect(
        not progress_failures,
        f"the majority side went on committing in {partitions}/{partitions} partitions "
        f"(first write acknowledged after the cut within "
        f"{max(unavailable['partition A'], default=0) / MS:.0f} ms when the leader was cut "
        f"off, a new election; within {max(unavailable['partition B'], default=0) / MS:.0f} ms "
        "when it was not)",
        "the majority made no progress: " + ", ".join(progress_failures[:3]),
    )
    verdict.expect(
        not catch_up_failures,
        f"after healing every node caught up, within {max(catch_ups, default=0) / MS:.0f} ms",
        "no catch-up within 2 s of healing: " + ", ".join(catch_up_failures[:3]),
    )
    verdict.broke.append(
        "availability of the minority side: 0 % while partitioned (by design: "
        "consistency over availability)"
    )

    rows: list[tuple[str, ...]] = []
    for report in reports:
        for side in report.sides:
            rows.append(
                (
                    str(report.seed),
                    side.phase,
                    side.side,
                    ",".join(f"n{n}" for n in side.nodes),
                    str(side.attempts),
                    str(side.acked),
                    f"{side.availability:.0%}",
                    f"{side.applied_from} -> {side.applied_to}",
                )
            )
    table = Table(
        "Raft, 5 nodes: writes per side and phase (acknowledged within the phase)",
        ("seed", "phase", "side", "nodes", "attempts", "acked", "availability", "applied"),
        tuple(rows),
    )
    figures: dict[str, Json] = {
        "nodes": NODES,
        "majority_unavailable_after_cut_ms": {
            name: [round(u / MS, 1) for u in values] for name, values in unavailable.items()
        },
        "catch_up_ms": [round(c / MS, 1) for c in catch_ups],
        "safety_violations": len(unsafe),
        "per_trial": [
            {
                "seed": r.seed,
                "elected_at_ms": round(r.elected_at / MS, 1),
                "leaders": [[round(t / MS, 1), n, term] for t, n, term in r.leaders],
                "sides": [side.to_json() for side in r.sides],
                "safety": r.safety,
            }
            for r in reports
        ],
    }
    return LabResult(NAME, seed, trials, verdict, figures, [table], _charts(reports[0]))


def _row(report: TrialReport, phase: str, side: str) -> SideFigures:
    for row in report.sides:
        if row.phase == phase and row.side == side:
            return row
    return SideFigures(phase, side, (), 0, 0, 0, 0, 0)


def _charts(report: TrialReport) -> list[Chart]:
    origin = report.elected_at
    bands = tuple(
        ((p.start - origin) / SECOND, (p.end - origin) / SECOND, f"{p.name}: {p.minority} cut off")
        for p in report.phases
        if p.minority
    )
    applied_series = []
    for node, samples in sorted(report.applied.items()):
        role = ""
        for phase in report.phases:
            if node in phase.minority:
                role += f" {phase.name[-1]}:min"
        applied_series.append(
            Series(
                f"n{node}{role}",
                tuple((t - origin) / SECOND for t, _ in samples),
                tuple(float(a) for _, a in samples),
                "step",
            )
        )
    end = report.phases[-1].end if report.phases else origin
    buckets = max(1, (end - origin) // BUCKET)
    series = []
    for side in ("minority", "majority", "all"):
        counts = [0] * buckets
        for time, ack_side in report.acks:
            slot = (time - origin) // BUCKET
            if ack_side == side and 0 <= slot < buckets:
                counts[slot] += 1
        label = {"all": "whole cluster (healed)"}.get(side, f"{side} side")
        series.append(
            Series(
                label,
                tuple(i * BUCKET / SECOND for i in range(buckets)),
                tuple(float(c) for c in counts),
                "step",
            )
        )
    return [
        Chart(
            f"applied index per node (seed {report.seed})",
            "time since first election (s)",
            "applied index",
            tuple(applied_series),
            bands=bands,
        ),
        Chart(
            "writes acknowledged per 100 ms, by the writer's side",
            "time since first election (s)",
            "acknowledged writes",
            tuple(series),
            bands=bands,
        ),
    ]
