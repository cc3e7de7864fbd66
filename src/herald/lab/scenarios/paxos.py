"""Scenario ``paxos``: one decision by single-decree Paxos, beside Raft's election and commit.

Five acceptors (nodes 11-15), two learners (21, 22) and one to three proposers
(1-3), each proposing its own value, all starting at once. The network is the
simulator's, with 5 % loss and 5 % duplication and reordering; in the
``+ faults`` rows a schedule drawn from the trial's seed also partitions the
nodes into random halves and crashes random acceptors and proposers (they
restart from their durable state) from the start until 600 ms, and the
proposers wake at random moments in the first 300 ms of it.

A decision is complete when every learner has learned the value and every
proposer has finished a ballot with it (a pre-empted proposer retries, and
phase 1 makes it adopt the value already chosen). Measured per decision:
messages sent until then, ballots started (duelling proposers pre-empt each
other), and virtual time from the start of the run. Checked: agreement and validity
(:func:`herald.lab.paxos.check_agreement`, from the acceptors' history) and
that every trial decides once the faults stop.

Beside it, Raft (the simulator's :class:`~herald.sim.world.World`, five nodes,
same network and the same kind of fault schedule): messages and time from
boot until a first client entry is committed, which takes an election and
one replication round, and how many terms that took.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from dataclasses import dataclass
from typing import Any

from herald.lab.harness import LabWorld
from herald.lab.paxos import (
    Acceptor,
    AcceptorState,
    AgreementReport,
    Learner,
    PaxosMessage,
    Proposer,
    check_agreement,
)
from herald.lab.result import Chart, Json, LabResult, Series, Table, Verdict
from herald.sim.invariants import SafetyViolation
from herald.sim.network import NetworkProfile
from herald.sim.options import draw_options
from herald.sim.scheduler import MS, SECOND
from herald.sim.world import Op, World
from herald.txn.log import DurableLog

__all__ = ["CONFIGS", "run"]

NAME = "paxos"
ACCEPTORS = (11, 12, 13, 14, 15)
LEARNERS = (21, 22)
TICK = 10 * MS
PROFILE = NetworkProfile(base_latency=MS, jitter=MS, loss=0.05, duplicate=0.05, spike=0.0)
FAULT_WINDOW = 600 * MS
HORIZON = 10 * SECOND


@dataclass(frozen=True, slots=True)
class Config:
    name: str
    protocol: str  # "paxos" or "raft"
    proposers: int = 0
    faults: bool = False


CONFIGS = (
    Config("Paxos, 1 proposer", "paxos", 1),
    Config("Paxos, 2 duelling proposers", "paxos", 2),
    Config("Paxos, 3 duelling proposers", "paxos", 3),
    Config("Paxos, 3 proposers + faults", "paxos", 3, faults=True),
    Config("Raft, election + 1 commit", "raft"),
    Config("Raft, election + 1 commit + faults", "raft", faults=True),
)

Fault = tuple[int, str, tuple[int, ...], int]  # (start, "partition"|"crash", nodes, duration)


@dataclass(slots=True)
class Trial:
    decided: bool
    time: int  # microseconds until the decision (or the horizon)
    messages: int
    rounds: int  # Paxos: ballots started; Raft: the term reached
    agreement: AgreementReport | None = None
    safety: str = ""


def _draw_faults(
    rng: random.Random, nodes: tuple[int, ...], crashable: tuple[int, ...]
) -> list[Fault]:
    faults: list[Fault] = []
    time = 0
    while time < FAULT_WINDOW:
        if rng.random() < 0.5:
            members = list(nodes)
            rng.shuffle(members)
            cut = rng.randint(1, len(members) - 1)
            faults.append(
                (time, "partition", tuple(sorted(members[:cut])), rng.randint(50, 250) * MS)
            )
        else:
            victim = rng.choice(crashable)
            faults.append((time, "crash", (victim,), rng.randint(50, 300) * MS))
        time += rng.randint(60 * MS, 200 * MS)
    return faults


def _run_paxos(config: Config, seed: int, trial: int, acceptor_class: type[Acceptor]) -> Trial:
    rng = random.Random(f"herald-lab/{NAME}/{seed}/{config.name}/{trial}")
    world: LabWorld[PaxosMessage, Any] = LabWorld(random.Random(rng.getrandbits(64)), PROFILE, TICK)
    proposers = tuple(range(1, config.proposers + 1))
    values = {p: f"v{p}" for p in proposers}
    for acceptor in ACCEPTORS:
        log: DurableLog[AcceptorState] = DurableLog()
        world.add(acceptor, functools.partial(acceptor_class, acceptor, log, LEARNERS))

    def boot_proposer(proposer: int, log: DurableLog[int], seed: int) -> Proposer:
        return Proposer(proposer, log, ACCEPTORS, values[proposer], random.Random(seed))

    for proposer in proposers:
        rounds_log: DurableLog[int] = DurableLog()
        world.add(
            proposer, functools.partial(boot_proposer, proposer, rounds_log, rng.getrandbits(64))
        )
    for learner in LEARNERS:
        world.add(learner, functools.partial(Learner, learner, ACCEPTORS))

    acceptances: list[tuple[int, tuple[int, int], str | None]] = []
    last_accepted: dict[int, tuple[int, int]] = {}
    learned: dict[int, list[str | None]] = {learner: [] for learner in LEARNERS}
    ballots = [0]

    def after_input(node: int, core: Any) -> None:
        if isinstance(core, Acceptor):
            state = core.state
            if state.accepted != last_accepted.get(node, (0, 0)) and state.accepted != (0, 0):
                last_accepted[node] = state.accepted
                acceptances.append((node, state.accepted, state.value))
        elif isinstance(core, Learner):
            learned[node] = list(core.learned)

    world.after_input = after_input
    world.start()

    def start(core: Any) -> None:
        assert isinstance(core, Proposer)
        core.start()

    def wake(proposer: int) -> None:
        world.act(proposer, start)

    for proposer in proposers:
        if config.faults:
            # Proposers wake up while the faults strike, at moments of their own.
            world.scheduler.at(rng.randint(0, 300 * MS), wake, proposer)
        else:
            wake(proposer)  # all at once: they duel
    if config.faults:
        nodes = (*proposers, *ACCEPTORS, *LEARNERS)
        for at, kind, members, duration in _draw_faults(rng, nodes, (*proposers, *ACCEPTORS)):
            if kind == "partition":
                rest = [n for n in nodes if n not in members]
                world.scheduler.at(at, world.network.partition, [list(members), rest])
                world.scheduler.at(at + duration, world.network.heal)
            else:
                (victim,) = members

                def crash(victim: int = victim) -> None:
                    core = world.core(victim)
                    if isinstance(core, Proposer):
                        ballots[0] += core.ballots_started
                    world.crash(victim)

                def restart(victim: int = victim) -> None:
                    world.restart(victim)
                    if victim in proposers:
                        world.act(victim, start)

                world.scheduler.at(at, crash)
                world.scheduler.at(at + duration, restart)

    def decided() -> bool:
        # Every learner learned, and every proposer knows its round ended with a choice
        # (a pre-empted proposer retries and, through phase 1, adopts the chosen value).
        if not all(learned[learner] for learner in LEARNERS):
            return False
        for proposer in proposers:
            core = world.core(proposer)
            if not isinstance(core, Proposer) or core.chosen is None:
                return False
        return True

    done = world.run_until(HORIZON, stop=decided)
    for proposer in proposers:
        core = world.core(proposer)
        if isinstance(core, Proposer):
            ballots[0] += core.ballots_started
    report = check_agreement(acceptances, len(ACCEPTORS), values.values(), learned)
    return Trial(done, world.scheduler.now, world.network.sent, ballots[0], report)


def _run_raft(config: Config, seed: int, trial: int) -> Trial:
    rng = random.Random(f"herald-lab/{NAME}/{seed}/{config.name}/{trial}")
    options = dataclasses.replace(
        draw_options(seed * 1000 + trial, faults=()),
        nodes=len(ACCEPTORS),
        network=PROFILE,
        faults=(),
        tick_interval=TICK,
        election_tick=15,
        election_tick_max=30,
        heartbeat_tick=3,
        drift=0.0,
        fsync_latency=500,
        pre_vote=True,
        check_quorum=True,
        hunt_leaders=0.0,
        snapshot_entries=100_000,
    )
    world = World(options, random.Random(rng.getrandbits(64)))
    voters = world.voters
    pending: list[Op] = []
    committed = [False]

    def client() -> None:
        if committed[0]:
            return
        if pending and pending[-1].status == "ok":
            committed[0] = True
            return
        if not pending or pending[-1].status != "invoke":
            leader = world.leader()
            if leader is not None:
                result = world.propose(1, leader.id, b"decide")
                if isinstance(result, Op):
                    pending.append(result)
        elif world.scheduler.now - pending[-1].invoke_time > SECOND:
            world.expire(pending[-1])
        world.scheduler.after(MS, client)

    safety = ""
    try:
        for node in voters:
            world.boot(world.nodes[node])
        if config.faults:
            for at, kind, members, duration in _draw_faults(rng, voters, voters):
                if kind == "partition":
                    rest = [n for n in voters if n not in members]
                    world.scheduler.at(at, world.network.partition, [list(members), rest])
                    world.scheduler.at(at + duration, world.network.heal)
                else:
                    victim = world.nodes[members[0]]
                    world.scheduler.at(at, world.crash, victim)
                    world.scheduler.at(at + duration, world.restart, victim)
        world.scheduler.after(0, client)
        world.scheduler.run_until(HORIZON, stop=lambda: committed[0])
    except SafetyViolation as violation:
        safety = str(violation)
    term = max(
        (n.host.node.raft.term for n in world.nodes.values() if n.host is not None), default=0
    )
    return Trial(committed[0], world.scheduler.now, world.network.sent, term, safety=safety)


def run(seed: int, trials: int, *, acceptor_class: type[Acceptor] = Acceptor) -> LabResult:
    """``trials`` decisions per configuration; ``acceptor_class`` lets tests plant a bug."""
    results: dict[str, list[Trial]] = {}
    for config in CONFIGS:
        if config.protocol == "paxos":
            results[config.name] = [
                _run_paxos(config, seed, t, acceptor_class) for t in range(trials)
            ]
        else:
            results[config.name] = [_run_raft(config, seed, t) for t in range(trials)]

    verdict = Verdict()
    rows: list[tuple[str, ...]] = []
    per_config: dict[str, Json] = {}
    for config in CONFIGS:
        trial_list = results[config.name]
        n = len(trial_list)
        decided = [t for t in trial_list if t.decided]
        messages = sorted(t.messages for t in decided)
        times = sorted(t.time for t in decided)
        rounds = sorted(t.rounds for t in decided)
        if config.protocol == "paxos":
            broken = [
                t for t in trial_list if t.agreement is not None and not t.agreement.agreement
            ]
            safety = "held" if not broken else f"VIOLATED {len(broken)}/{n}"
            verdict.expect(
                not broken,
                f"{config.name}: agreement and validity held in {n}/{n} trials",
                f"{config.name}: agreement violated in {len(broken)}/{n} trials"
                + (
                    f" ({broken[0].agreement.violations[0]})"
                    if broken and broken[0].agreement is not None
                    else ""
                ),
            )
        else:
            broken = [t for t in trial_list if t.safety]
            safety = "held" if not broken else f"VIOLATED {len(broken)}/{n}"
            verdict.expect(
                not broken,
                f"{config.name}: Raft safety held in {n}/{n} trials",
                f"{config.name}: Raft safety violated ({broken[0].safety if broken else ''})",
            )
        verdict.expect(
            len(decided) == n,
            f"{config.name}: decided in {n}/{n} trials",
            f"{config.name}: no decision within {HORIZON // SECOND} s in "
            f"{n - len(decided)}/{n} trials",
        )
        per_config[config.name] = {
            "decided": len(decided),
            "safety_violations": len(broken),
            "messages_mean": _mean(messages),
            "messages_max": max(messages, default=0),
            "rounds_mean": _mean(rounds),
            "rounds_max": max(rounds, default=0),
            "time_ms_mean": round(_mean(times) / MS, 1),
            "time_ms_max": round(max(times, default=0) / MS, 1),
        }
        rows.append(
            (
                config.name,
                f"{len(decided)}/{n}",
                safety,
                f"{_mean(messages):.0f} / {max(messages, default=0)}",
                f"{_mean(rounds):.1f} / {max(rounds, default=0)}",
                f"{_mean(times) / MS:.0f} / {max(times, default=0) / MS:.0f}",
            )
        )
    table = Table(
        f"one decision: 5 acceptors (Raft: 5 nodes), loss {PROFILE.loss:.0%}, "
        f"duplication {PROFILE.duplicate:.0%}; {trials} trials each",
        (
            "configuration",
            "decided",
            "safety",
            "messages mean / max",
            "ballots (Raft: terms) mean / max",
            "time ms mean / max",
        ),
        tuple(rows),
    )
    figures: dict[str, Json] = {
        "acceptors": len(ACCEPTORS),
        "learners": len(LEARNERS),
        "configurations": per_config,
    }
    notes = [
        "Times run from the start: Paxos proposers start at once (under faults, within "
        "300 ms), Raft first waits out an election timeout (150-300 ms) and heartbeats "
        "meanwhile. Raft's election pays once for many decisions; single-decree Paxos "
        "pays phase 1 for each, and duelling proposers pay it again and again."
    ]
    return LabResult(NAME, seed, trials, verdict, figures, [table], _charts(results), notes)


def _mean(values: list[int]) -> float:
    return round(sum(values) / len(values), 2) if values else 0.0


def _charts(results: dict[str, list[Trial]]) -> list[Chart]:
    messages = []
    times = []
    for name, trials in results.items():
        ordered = sorted(t.messages for t in trials if t.decided)
        messages.append(
            Series(
                name, tuple(float(i + 1) for i in range(len(ordered))), tuple(map(float, ordered))
            )
        )
        ordered_times = sorted(t.time for t in trials if t.decided)
        times.append(
            Series(
                name,
                tuple(float(i + 1) for i in range(len(ordered_times))),
                tuple(t / MS for t in ordered_times),
            )
        )
    return [
        Chart(
            "messages per decision (trials, sorted)", "trial (sorted)", "messages", tuple(messages)
        ),
        Chart("time to decision (trials, sorted)", "trial (sorted)", "ms", tuple(times)),
    ]
