"""One seed in, one verdict out: the safety phase, then the liveness phase.

A run is a pure function of its seed and the code:

1. safety phase: clients work while the nemesis injects the seed's faults; every
   event is checked against Raft's safety properties;
2. liveness phase: every fault is undone (network healed, loss and spikes off,
   every node restarted and resumed); within ``liveness_bound`` of virtual time
   a leader must commit a probe entry and every node must apply every
   acknowledged entry;
3. final audit: every acknowledged proposal is in the committed log as proposed.

Verdicts, most serious first: ``safety`` (a property broke), ``crash`` (the code
raised), ``liveness`` (no convergence within the bound), ``ok``.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from herald.broker import Broker
from herald.check.queue import check_queue
from herald.check.verdict import judge
from herald.raft import Raft
from herald.storage import SimFileSystem

from .invariants import SafetyViolation
from .nemesis import Nemesis
from .options import SimOptions, draw_options
from .queue import QueueWorkload
from .scheduler import MS, SECOND
from .serving import Plants, server_factory
from .workload import Workload
from .world import DigestStateMachine, DiskFactory, World

__all__ = ["EXIT_CODES", "SimResult", "run_seed"]

#: Exit status of ``herald sim`` per verdict; several failures exit with the
#: most serious one's code.
EXIT_CODES = {"ok": 0, "crash": 3, "liveness": 4, "safety": 5}
SEVERITY = ("ok", "liveness", "crash", "safety")
#: A queue run's users work under faults at least this long after their setup,
#: however late it came, within this much beyond the drawn safety phase.
QUEUE_MIN_WORK = 2 * SECOND
LATE_START_GRACE = 20 * SECOND


@dataclass(slots=True)
class SimResult:
    seed: int
    options: SimOptions
    verdict: str
    detail: str = ""
    virtual_time: int = 0
    events: int = 0
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.verdict != "ok"


def run_seed(
    seed: int,
    *,
    faults: tuple[str, ...] | None = None,
    workload: str = "raft",
    options: SimOptions | None = None,
    raft_class: type[Raft] = Raft,
    tracer: Callable[[str], None] | None = None,
    disk_factory: DiskFactory | None = None,
    broker_class: type[Broker] | None = None,
    plants: Plants | None = None,
    groups: int | None = None,
) -> SimResult:
    """Run one seed; never raises for a finding, only reports it.

    ``raft_class``, ``disk_factory``, ``broker_class`` and ``plants`` exist so
    tests can plant bugs and show the checkers catch them. ``groups`` replaces
    the seed's drawn count of data groups (queue worlds).
    """
    if broker_class is not None:
        plants = replace(plants or Plants(), broker_class=broker_class)
    options = options or draw_options(seed, faults, workload, groups)
    plants = plants or Plants()
    master = random.Random(f"herald-sim/{seed}")
    world = World(
        options,
        random.Random(master.getrandbits(64)),
        raft_class,
        tracer,
        disk_factory or SimFileSystem,
        DigestStateMachine,
        server_factory(options, raft_class, plants) if options.queue is not None else None,
        plants.host_class,
    )
    nemesis = Nemesis(world, random.Random(master.getrandbits(64)))
    clients = Workload(world, random.Random(master.getrandbits(64)))
    queue = (
        QueueWorkload(
            world,
            random.Random(master.getrandbits(64)),
            client_class=plants.client_class,
            inbox_key=plants.inbox_key,
        )
        if options.queue is not None
        else None
    )
    result = SimResult(seed, options, "ok")
    try:
        _run(world, nemesis, clients, queue, result)
    except SafetyViolation as violation:
        result.verdict = "safety"
        result.detail = str(violation)
    except Exception as error:
        result.verdict = "crash"
        frames = traceback.extract_tb(error.__traceback__)
        where = (
            f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
        )
        result.detail = f"{type(error).__name__}: {error}{where}"
    result.virtual_time = world.scheduler.now
    result.events = world.scheduler.events_run
    result.stats = {**_stats(world, nemesis, clients), **result.stats}
    if queue is not None:
        result.stats.update(_queue_stats(queue, result))
    if tracer is not None:
        tracer(f"{_fmt_seconds(result.virtual_time)} verdict={result.verdict} {result.detail}")
    return result


def _run(
    world: World,
    nemesis: Nemesis,
    workload: Workload,
    queue: QueueWorkload | None,
    result: SimResult,
) -> None:
    options = world.options
    scheduler = world.scheduler
    for node_id in world.voters:
        world.boot(world.nodes[node_id])
    nemesis.start()
    workload.start()
    if queue is not None:
        queue.start()
    scheduler.run_until(options.safety_duration)
    if queue is not None and not _worked(queue, scheduler.now):
        # Faults held the setup back (no quorum for most of the phase): the
        # users keep working under faults until they have worked a while, or a
        # safety phase with nothing published would pass having tested nothing.
        scheduler.run_until(
            options.safety_duration + LATE_START_GRACE,
            stop=lambda: _worked(queue, scheduler.now),
        )

    # Liveness phase: the faults stop; the system must converge within the bound.
    workload.stop()
    if queue is not None:
        queue.stop()
        queue.start_drain()
    nemesis.heal_everything()
    world.network.set_profile(replace(options.network, loss=0.0, spike=0.0))
    healed_at = scheduler.now
    if queue is None:
        workload.start_probe()  # a queue run's drain is its own probe
    converged = [False]

    def check() -> None:
        if converged[0]:
            return
        if (workload.probe_committed() if queue is None else queue.drained) and all(
            _caught_up(world, group, queue is not None) for group in range(world.groups)
        ):
            converged[0] = True
            return
        scheduler.after(10 * MS, check)

    scheduler.after(0, check)
    scheduler.run_until(healed_at + options.liveness_bound, stop=lambda: converged[0])
    if not converged[0]:
        result.verdict = "liveness"
        result.detail = _liveness_report(world, workload, queue)
        return
    result.stats["converged_ms"] = (scheduler.now - healed_at) // MS
    _audit(world)
    if queue is not None:
        _judge_queue(queue)


def _worked(queue: QueueWorkload, now: int) -> bool:
    began = queue.began_at
    return began is not None and now >= began + QUEUE_MIN_WORK


def _caught_up(world: World, group: int, queue: bool) -> bool:
    """Every live node has applied what was acknowledged (and, in a queue world,
    what any node knows committed) in ``group``."""
    checker = world.checkers[group]
    caught_up = world.max_acked_index if group == 0 else 0
    if queue:
        caught_up = max(caught_up, checker.commit_index)
    return all(checker.applied_index(node.id) >= caught_up for node in world.live_nodes())


def _judge_queue(queue: QueueWorkload) -> None:
    """The queue checker's verdict on the history: a broken guarantee is a safety failure."""
    checked = check_queue(queue.ordered_history())
    verdict = judge(checked.by_mode, producer_dedup=True)
    queue.checked = checked
    if not verdict.ok:
        raise SafetyViolation("queue", "; ".join(verdict.failures))


def _audit(world: World) -> None:
    """Every acknowledged proposal is committed, as proposed, at its index."""
    checker = world.checker
    for op in world.history:
        if op.kind != "propose" or op.status != "ok":
            continue
        if op.index > checker.commit_index:
            raise SafetyViolation(
                "durability", f"acknowledged {op.data!r} at {op.index} was never applied"
            )
        if checker.committed_entry(op.index) != (op.term, op.data):
            raise SafetyViolation(
                "durability",
                f"acknowledged {op.data!r} (index {op.index}, term {op.term}) is not "
                f"what was committed there",
            )


def _liveness_report(world: World, workload: Workload, queue: QueueWorkload | None) -> str:
    parts = []
    for node in world.nodes.values():
        if node.host is None:
            parts.append(f"n{node.id}:{'dead' if node.dead else 'down'}")
            continue
        for replica in node.replicas:
            assert replica.host is not None
            status = replica.host.node.status()
            tag = f"g{replica.group}" if world.groups > 1 else ""
            parts.append(
                f"n{node.id}{tag}:{status.role.name.lower()} t{status.term} "
                f"lead{status.leader} commit{status.commit} "
                f"applied{world.checkers[replica.group].applied_index(node.id)}"
            )
    return (
        f"no convergence within {world.options.liveness_bound / SECOND:.0f}s of healing "
        f"(probe committed: {workload.probe_committed()}, "
        + (f"queue drained: {queue.drained}, " if queue is not None else "")
        + "acked up to "
        f"{world.max_acked_index}): " + " ".join(parts)
    )


def _stats(world: World, nemesis: Nemesis, workload: Workload) -> dict[str, int]:
    proposals = [op for op in world.history if op.kind == "propose"]
    reads = [op for op in world.history if op.kind == "read"]
    stats = {
        "proposed": len(proposals),
        "acked": sum(op.status == "ok" for op in proposals),
        "failed": sum(op.status == "fail" for op in proposals),
        "unknown": sum(op.status in ("info", "invoke") for op in proposals),
        "reads_ok": sum(op.status == "ok" for op in reads),
        "committed": sum(checker.commit_index for checker in world.checkers),
        "leaders": sum(len(checker.leaders) for checker in world.checkers),
        "groups": world.groups,
        "crashes": world.crashes,
        "messages": world.network.sent,
        "dropped": world.network.dropped,
        "refused_starts": world.refusals,
        "repairs": world.repairs,
        "dead_nodes": sum(node.dead for node in world.nodes.values()),
    }
    for node in world.nodes.values():
        for fault, count in node.disk.injected.items():
            stats[f"disk_{fault}"] = stats.get(f"disk_{fault}", 0) + count
    stats.update({f"fault_{name}": count for name, count in sorted(nemesis.counts.items())})
    return stats


def _queue_stats(queue: QueueWorkload, result: SimResult) -> dict[str, int]:
    """Per delivery mode: confirmed, lost, duplicated deliveries and effects; and how
    often each thing users do and suffer happened."""
    stats = {**queue.counts.as_dict(), "history_ops": len(queue.history.ops)}
    stats["wall_steps"] = queue.world.wall_steps
    stats["turned_away"] = queue.links.server_count("turned_away")
    stats["messages_carried"] = queue.links.server_count("messages_carried")
    checked = queue.checked
    if checked is None:
        checked = check_queue(queue.ordered_history())
    for mode, counts in checked.by_mode.items():
        stats[f"{mode}.confirmed"] = counts.confirmed
        stats[f"{mode}.lost"] = counts.lost
        stats[f"{mode}.duplicated"] = counts.duplicated_effect
        stats[f"{mode}.duplicated_deliveries"] = counts.duplicated
    return stats


def _fmt_seconds(us: int) -> str:
    return f"{us / MS:10.3f}ms"
