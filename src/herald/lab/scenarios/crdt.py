"""Scenario ``crdt``: send state, not instructions.

Four replicas, a network that loses 10 % and duplicates 10 % of messages and
reorders them (1 ms plus up to tens of ms of jitter, occasional 50-500 ms
spikes), and partitions that come and go for the first two seconds. Clients
update random replicas every ~10 ms during those two seconds; then the network
heals and the replicas have two more seconds of gossip.

Each of G-Counter, PN-Counter, OR-Set and LWW-Register runs on that schedule
(the same partitions and client timing for every type in a trial), gossiping
its whole state to one random peer every 20 ms. Beside them the naive
operation-based counter sends "add n" to every peer, retransmits until
acknowledged, and applies everything it receives.

Checker: :func:`herald.check.convergence.check_convergence`, against the value
the recorded operations imply. Also measured: how long after healing all
replicas first held the same value, messages sent, and for LWW whether the
winning write was the last one in real time (clock skew can make it not).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from herald.check.convergence import (
    ConvergenceReport,
    check_convergence,
    counter_value,
    lww_value,
    or_set_value,
)
from herald.lab.crdt import (
    CounterMessage,
    GCounter,
    GossipReplica,
    LWWRegister,
    OpCounter,
    ORSet,
    PNCounter,
    StateMessage,
)
from herald.lab.harness import LabWorld
from herald.lab.result import Chart, Json, LabResult, Series, Table, Verdict
from herald.sim.network import NetworkProfile
from herald.sim.scheduler import MS, SECOND

__all__ = [
    "CrdtKind",
    "GCounterKind",
    "LWWKind",
    "ORSetKind",
    "PNCounterKind",
    "default_kinds",
    "run",
]

NAME = "crdt"
REPLICAS = (1, 2, 3, 4)
TICK = 10 * MS
GOSSIP_PERIOD = 2  # ticks
PROFILE = NetworkProfile(base_latency=MS, jitter=8 * MS, loss=0.10, duplicate=0.10, spike=0.01)
WORK = 2 * SECOND
HORIZON = 4 * SECOND
OP_INTERVAL = 10 * MS
SAMPLE = 10 * MS
MAX_SKEW = 20 * MS
ELEMENTS = ("apple", "brie", "cider", "dates", "eggs")

S = TypeVar("S")


class CrdtKind(Generic[S]):
    """One replicated data type under test: its empty value, its operations (which
    record a history) and its specification (the value that history implies)."""

    name: ClassVar[str] = ""

    def empty(self) -> S:
        raise NotImplementedError

    def operate(self, state: S, replica: int, rng: random.Random, clock: int) -> S:
        raise NotImplementedError

    def value(self, state: S) -> Hashable:
        raise NotImplementedError

    def expected(self) -> Hashable:
        raise NotImplementedError

    def extra(self) -> dict[str, Json]:
        return {}


class GCounterKind(CrdtKind[GCounter]):
    name = "G-Counter"

    def __init__(self, counter_type: type[GCounter] = GCounter) -> None:
        self.counter_type = counter_type
        self.amounts: list[int] = []

    def empty(self) -> GCounter:
        return self.counter_type()

    def operate(self, state: GCounter, replica: int, rng: random.Random, clock: int) -> GCounter:
        amount = rng.randint(1, 3)
        self.amounts.append(amount)
        return state.increment(replica, amount)

    def value(self, state: GCounter) -> Hashable:
        return state.value()

    def expected(self) -> Hashable:
        return counter_value(self.amounts)


class PNCounterKind(CrdtKind[PNCounter]):
    name = "PN-Counter"

    def __init__(self) -> None:
        self.amounts: list[int] = []

    def empty(self) -> PNCounter:
        return PNCounter()

    def operate(self, state: PNCounter, replica: int, rng: random.Random, clock: int) -> PNCounter:
        amount = rng.randint(1, 3)
        if rng.random() < 0.4:
            self.amounts.append(-amount)
            return state.decrement(replica, amount)
        self.amounts.append(amount)
        return state.increment(replica, amount)

    def value(self, state: PNCounter) -> Hashable:
        return state.value()

    def expected(self) -> Hashable:
        return counter_value(self.amounts)


class ORSetKind(CrdtKind[ORSet]):
    name = "OR-Set"

    def __init__(self) -> None:
        self.adds: list[tuple[str, tuple[int, int]]] = []
        self.removes: list[frozenset[tuple[int, int]]] = []
        self._sequence: dict[int, int] = {}

    def empty(self) -> ORSet:
        return ORSet()

    def operate(self, state: ORSet, replica: int, rng: random.Random, clock: int) -> ORSet:
        present = state.value()
        if present and rng.random() < 0.45:
            element = rng.choice(present)
            self.removes.append(state.live_tags(element))
            return state.remove(element)
        element = rng.choice(ELEMENTS)
        self._sequence[replica] = self._sequence.get(replica, 0) + 1
        tag = (replica, self._sequence[replica])
        self.adds.append((element, tag))
        return state.add(element, tag)

    def value(self, state: ORSet) -> Hashable:
        return state.value()

    def expected(self) -> Hashable:
        return or_set_value(self.adds, self.removes)

    def extra(self) -> dict[str, Json]:
        return {"adds": len(self.adds), "removes": len(self.removes)}


class LWWKind(CrdtKind[LWWRegister]):
    name = "LWW-Register"

    def __init__(self) -> None:
        self.writes: list[tuple[tuple[int, int], str, int]] = []  # (stamp, value, real time)
        self.skew: dict[int, int] = {}

    def empty(self) -> LWWRegister:
        return LWWRegister()

    def operate(
        self, state: LWWRegister, replica: int, rng: random.Random, clock: int
    ) -> LWWRegister:
        if replica not in self.skew:
            self.skew[replica] = rng.randint(-MAX_SKEW, MAX_SKEW)
        timestamp = clock + self.skew[replica]
        value = f"r{replica}#{len(self.writes) + 1}"
        self.writes.append(((timestamp, replica), value, clock))
        return state.assign(value, timestamp, replica)

    def value(self, state: LWWRegister) -> Hashable:
        return state.value()

    def expected(self) -> Hashable:
        return lww_value((stamp, value) for stamp, value, _ in self.writes)

    def extra(self) -> dict[str, Json]:
        winner = self.expected()
        last = max(self.writes, key=lambda w: (w[2], w[0]))[1] if self.writes else None
        return {"winner_was_last_in_real_time": winner == last}


def default_kinds() -> tuple[Callable[[], CrdtKind[Any]], ...]:
    return (GCounterKind, PNCounterKind, ORSetKind, LWWKind)


@dataclass(slots=True)
class _Schedule:
    """What a trial's world does, drawn once and shared by every type in the trial."""

    ops: list[tuple[int, int]]  # (time, replica)
    partitions: list[tuple[int, int, list[list[int]]]]  # (start, end, groups)
    network_seed: int
    op_seed: int


def _draw_schedule(rng: random.Random) -> _Schedule:
    ops: list[tuple[int, int]] = []
    time = 0
    while True:
        time += max(1, int(rng.expovariate(1.0) * OP_INTERVAL))
        if time >= WORK:
            break
        ops.append((time, rng.choice(REPLICAS)))
    partitions: list[tuple[int, int, list[list[int]]]] = []
    time = 100 * MS
    while time < WORK - 200 * MS:
        length = rng.randint(150 * MS, 400 * MS)
        end = min(time + length, WORK - 100 * MS)
        members = list(REPLICAS)
        rng.shuffle(members)
        cut = rng.randint(1, len(members) - 1)
        partitions.append((time, end, [sorted(members[:cut]), sorted(members[cut:])]))
        time = end + rng.randint(50 * MS, 200 * MS)
    return _Schedule(ops, partitions, rng.getrandbits(64), rng.getrandbits(64))


@dataclass(slots=True)
class _Run:
    name: str
    report: ConvergenceReport[Any]
    converged_after_heal: int | None  # microseconds after healing, None: never
    messages: int
    samples: list[tuple[int, int]] = field(default_factory=list)  # (time, distinct values)
    errors: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # naive only
    extra: dict[str, Json] = field(default_factory=dict)
    overcount: int = 0  # naive only: the largest replica value minus the true count


def _note_convergence(converged_at: list[int | None], now: int, distinct: int) -> None:
    """Track the first sample after healing from which all replicas stayed equal."""
    if now < WORK:
        return
    if distinct == 1 and converged_at[0] is None:
        converged_at[0] = now
    elif distinct > 1:
        converged_at[0] = None


def _apply_partitions(world: LabWorld[Any, Any], schedule: _Schedule) -> None:
    network = world.network
    for start, end, groups in schedule.partitions:
        world.scheduler.at(start, network.partition, groups)
        world.scheduler.at(end, network.heal)


def _run_kind(kind: CrdtKind[Any], schedule: _Schedule) -> _Run:
    world: LabWorld[StateMessage[Any], GossipReplica[Any]] = LabWorld(
        random.Random(schedule.network_seed), PROFILE, TICK
    )
    gossip_rng = random.Random(schedule.network_seed ^ 0x5EED)

    def boot(replica: int, seed: int) -> GossipReplica[Any]:
        return GossipReplica(replica, REPLICAS, kind.empty(), random.Random(seed), GOSSIP_PERIOD)

    for replica in REPLICAS:
        world.add(replica, functools.partial(boot, replica, gossip_rng.getrandbits(64)))
    world.start()
    _apply_partitions(world, schedule)
    op_rng = random.Random(schedule.op_seed)

    def operate(replica: int) -> None:
        now = world.scheduler.now
        world.act(
            replica, lambda core: core.update(lambda s: kind.operate(s, replica, op_rng, now))
        )

    for time, replica in schedule.ops:
        world.scheduler.at(time, operate, replica)

    def values() -> dict[int, Hashable]:
        out: dict[int, Hashable] = {}
        for replica in REPLICAS:
            core = world.core(replica)
            assert core is not None
            out[replica] = kind.value(core.state)
        return out

    samples: list[tuple[int, int]] = []
    converged_at: list[int | None] = [None]

    def sample() -> None:
        now = world.scheduler.now
        distinct = len({repr(v) for v in values().values()})
        samples.append((now, distinct))
        _note_convergence(converged_at, now, distinct)
        world.scheduler.after(SAMPLE, sample)

    world.scheduler.at(0, sample)
    world.run_until(HORIZON)
    report = check_convergence(values(), kind.expected())
    after = converged_at[0] - WORK if converged_at[0] is not None else None
    return _Run(kind.name, report, after, world.network.sent, samples, extra=kind.extra())


def _run_naive(schedule: _Schedule) -> _Run:
    world: LabWorld[CounterMessage, OpCounter] = LabWorld(
        random.Random(schedule.network_seed), PROFILE, TICK
    )
    for replica in REPLICAS:
        world.add(replica, functools.partial(OpCounter, replica, REPLICAS))
    world.start()
    _apply_partitions(world, schedule)
    op_rng = random.Random(schedule.op_seed)
    amounts: list[int] = []

    def operate(replica: int) -> None:
        amount = op_rng.randint(1, 3)
        amounts.append(amount)
        world.act(replica, lambda core: core.increment(amount))

    for time, replica in schedule.ops:
        world.scheduler.at(time, operate, replica)

    def values() -> dict[int, int]:
        out: dict[int, int] = {}
        for replica in REPLICAS:
            core = world.core(replica)
            assert core is not None
            out[replica] = core.value
        return out

    samples: list[tuple[int, int]] = []
    errors: dict[int, list[tuple[int, int]]] = {replica: [] for replica in REPLICAS}
    converged_at: list[int | None] = [None]

    def sample() -> None:
        now = world.scheduler.now
        current = values()
        distinct = len(set(current.values()))
        samples.append((now, distinct))
        _note_convergence(converged_at, now, distinct)
        truth = counter_value(amounts)
        for replica, value in current.items():
            errors[replica].append((now, value - truth))
        world.scheduler.after(SAMPLE, sample)

    world.scheduler.at(0, sample)
    world.run_until(HORIZON)
    report = check_convergence(values(), counter_value(amounts))
    return _Run(
        "naive op-based counter",
        report,
        converged_at[0] - WORK if converged_at[0] is not None else None,
        world.network.sent,
        samples,
        errors,
        overcount=max(v - report.expected for v in report.values.values()),
    )


def run(
    seed: int,
    trials: int,
    *,
    kinds: tuple[Callable[[], CrdtKind[Any]], ...] | None = None,
) -> LabResult:
    """``trials`` schedules; in each, every type (and the naive counter) runs once."""
    factories = kinds if kinds is not None else default_kinds()
    by_name: dict[str, list[_Run]] = {}
    schedules: list[_Schedule] = []
    for trial in range(trials):
        schedule = _draw_schedule(random.Random(f"herald-lab/{NAME}/{seed}/{trial}"))
        schedules.append(schedule)
        for factory in factories:
            outcome = _run_kind(factory(), schedule)
            by_name.setdefault(outcome.name, []).append(outcome)
        naive = _run_naive(schedule)
        by_name.setdefault(naive.name, []).append(naive)

    verdict = Verdict()
    rows: list[tuple[str, ...]] = []
    per_type: dict[str, Json] = {}
    for name, runs in by_name.items():
        n = len(runs)
        converged = sum(r.report.converged for r in runs)
        correct = sum(r.report.correct for r in runs)
        times = [r.converged_after_heal for r in runs if r.converged_after_heal is not None]
        is_naive = name.startswith("naive")
        figures: dict[str, Json] = {
            "converged": converged,
            "correct": correct,
            "converged_after_heal_ms_max": round(max(times) / MS, 1) if times else None,
            "messages_per_trial": round(sum(r.messages for r in runs) / n, 1),
            "final_distinct_values_max": max(r.report.distinct for r in runs),
            "problems": [p for r in runs for p in r.report.problems][:3],
        }
        if is_naive:
            figures["overcount_max"] = max(r.overcount for r in runs)
        if name == LWWKind.name:
            figures["winner_not_last_in_real_time"] = sum(
                1 for r in runs if r.extra.get("winner_was_last_in_real_time") is False
            )
        per_type[name] = figures
        rows.append(
            (
                name,
                f"{converged}/{n}",
                f"{correct}/{n}",
                f"{max(times) / MS:.0f}" if len(times) == n else f"{n - len(times)}/{n} never",
                f"{sum(r.messages for r in runs) / n:.0f}",
                _example(runs[0]),
            )
        )
        fine = sum(r.report.ok for r in runs)
        if is_naive:
            # The prediction is that it breaks in every trial: one lucky trial is a surprise.
            verdict.expect(
                fine > 0,
                f"{name}: converged to the true count in {fine}/{n} trials",
                f"{name}: broken in {n}/{n} trials — duplicates counted twice (up to "
                f"+{figures['overcount_max']} over the true count), replicas disagree in "
                f"{n - converged}/{n}",
                predicted=False,
            )
        else:
            failing = [r for r in runs if not r.report.ok]
            verdict.expect(
                not failing,
                f"{name}: all replicas converged to the value the operations imply in "
                f"{n}/{n} trials",
                f"{name}: did not converge correctly in {len(failing)}/{n} trials"
                + (f" ({failing[0].report.problems[0]})" if failing else ""),
            )
    lww = per_type.get(LWWKind.name)
    if isinstance(lww, dict) and lww.get("winner_not_last_in_real_time"):
        verdict.broke.append(
            f"LWW-Register: the surviving write was not the last one in real time in "
            f"{lww['winner_not_last_in_real_time']}/{trials} trials (clock skew up to "
            f"±{MAX_SKEW // MS} ms): convergence, not recency"
        )
    table = Table(
        f"4 replicas, loss {PROFILE.loss:.0%}, duplication {PROFILE.duplicate:.0%}, "
        f"reordering, partitions for {WORK // SECOND} s; {trials} trials",
        ("type", "converged", "correct", "converged after heal (ms)", "messages", "trial 1"),
        tuple(rows),
    )
    figures_out: dict[str, Json] = {
        "replicas": len(REPLICAS),
        "operations_per_trial": round(sum(len(s.ops) for s in schedules) / trials, 1),
        "partitions_per_trial": round(sum(len(s.partitions) for s in schedules) / trials, 1),
        "types": per_type,
    }
    return LabResult(NAME, seed, trials, verdict, figures_out, [table], _charts(by_name, schedules))


def _example(run: _Run) -> str:
    values = run.report.values
    shown = sorted({repr(v) for v in values.values()})
    text = " | ".join(shown)
    if len(text) > 48:
        text = text[:45] + "..."
    return f"{text} (want {run.report.expected!r})"[:80]


def _charts(by_name: dict[str, list[_Run]], schedules: list[_Schedule]) -> list[Chart]:
    bands = tuple((s / SECOND, e / SECOND, "partitioned") for s, e, _ in schedules[0].partitions)
    distinct = tuple(
        Series(
            name,
            tuple(t / SECOND for t, _ in runs[0].samples),
            tuple(float(d) for _, d in runs[0].samples),
            "step",
        )
        for name, runs in by_name.items()
    )
    naive = next((runs[0] for name, runs in by_name.items() if name.startswith("naive")), None)
    charts = [
        Chart(
            "distinct values across the 4 replicas (trial 1)",
            "time (s)",
            "distinct values",
            distinct,
            bands=bands,
        )
    ]
    if naive is not None:
        charts.append(
            Chart(
                "naive op-based counter: replica value minus the true count (trial 1)",
                "time (s)",
                "overcount",
                tuple(
                    Series(
                        f"r{replica}",
                        tuple(t / SECOND for t, _ in points),
                        tuple(float(e) for _, e in points),
                        "step",
                    )
                    for replica, points in sorted(naive.errors.items())
                ),
                bands=bands,
            )
        )
    return charts
