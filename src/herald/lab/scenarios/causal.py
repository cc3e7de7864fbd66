"""Scenario ``causal``: vector clocks deliver in causal order; FIFO alone does not.

Four nodes broadcast for two seconds over a network that reorders heavily
(1 ms plus an exponential 15 ms of jitter, 2 % of messages held 50-500 ms),
loses 5 % and duplicates 5 %. Each node posts on its own every ~40 ms and,
on delivering someone else's post, replies at once one time in four, so
replies depend causally on messages from other nodes. Then two quiet seconds
let retransmissions finish.

The same seeds drive :class:`~herald.lab.broadcast.CausalBroadcast` and
:class:`~herald.lab.broadcast.FifoBroadcast`. Checker:
:func:`herald.check.causal.check_causal` (causal-order violations, duplicates,
messages never delivered). Also measured: how long messages wait in the
hold-back queue, the price of causal order.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from herald.check.causal import BroadcastEvent, CausalReport, check_causal
from herald.lab.broadcast import CausalBroadcast, FifoBroadcast, Packet, ReliableBroadcast
from herald.lab.harness import LabWorld
from herald.lab.result import Chart, Json, LabResult, Series, Table, Verdict
from herald.sim.network import NetworkProfile
from herald.sim.scheduler import MS, SECOND

__all__ = ["run"]

NAME = "causal"
NODES = (1, 2, 3, 4)
TICK = 10 * MS
PROFILE = NetworkProfile(base_latency=MS, jitter=15 * MS, loss=0.05, duplicate=0.05, spike=0.02)
WORK = 2 * SECOND
HORIZON = 4 * SECOND
POST_INTERVAL = 40 * MS
REPLY_PROBABILITY = 0.25
SAMPLE = 20 * MS

Protocol = Callable[[int, tuple[int, ...]], ReliableBroadcast]


@dataclass(slots=True)
class _Run:
    name: str
    report: CausalReport
    delays: list[int]  # receive-to-deliver waits in the hold-back queue, microseconds
    latencies: list[int]  # send-to-deliver, microseconds
    held_back: list[tuple[int, int]] = field(default_factory=list)  # (time, total waiting)
    violations_over_time: list[tuple[int, int]] = field(default_factory=list)
    messages: int = 0


def _run_protocol(name: str, make: Protocol, seed: int, trial: int) -> _Run:
    rng = random.Random(f"herald-lab/{NAME}/{seed}/{trial}")
    world: LabWorld[Packet, ReliableBroadcast] = LabWorld(
        random.Random(rng.getrandbits(64)), PROFILE, TICK
    )
    for node in NODES:
        world.add(node, functools.partial(make, node, NODES))
    workload = random.Random(rng.getrandbits(64))
    events: list[BroadcastEvent] = []
    sent_at: dict[tuple[int, int], int] = {}
    arrived_at: dict[tuple[int, tuple[int, int]], int] = {}
    latencies: list[int] = []
    delays: list[int] = []

    def post(node: int, text: str) -> None:
        if world.scheduler.now >= WORK:
            return

        def send(core: ReliableBroadcast) -> None:
            message = core.broadcast(text)
            sent_at[message] = world.scheduler.now
            events.append(BroadcastEvent(world.scheduler.now, node, "send", message))

        world.act(node, send)

    def after_input(node: int, core: ReliableBroadcast) -> None:
        now = world.scheduler.now
        for packet in core.held_back:
            arrived_at.setdefault((node, (packet.origin, packet.seq)), now)
        for message, text in core.take_deliveries():
            events.append(BroadcastEvent(now, node, "deliver", message))
            latencies.append(now - sent_at[message])
            delays.append(now - arrived_at.pop((node, message), now))
            if workload.random() < REPLY_PROBABILITY:
                reply = f"re:{text}"[:40]
                world.scheduler.after(0, post, node, reply)

    world.after_input = after_input

    def spontaneous(node: int) -> None:
        if world.scheduler.now >= WORK:
            return
        post(node, f"n{node}@{world.scheduler.now // MS}")
        world.scheduler.after(
            max(1, int(workload.expovariate(1.0) * POST_INTERVAL)), spontaneous, node
        )

    for node in NODES:
        world.scheduler.at(workload.randint(0, POST_INTERVAL), spontaneous, node)
    held: list[tuple[int, int]] = []

    def sample() -> None:
        total = 0
        for node in NODES:
            core = world.core(node)
            total += len(core.held_back) if core is not None else 0
        held.append((world.scheduler.now, total))
        world.scheduler.after(SAMPLE, sample)

    world.start()
    world.scheduler.at(0, sample)
    world.run_until(HORIZON)
    report = check_causal(events, NODES)
    timeline: list[tuple[int, int]] = []
    for count, violation in enumerate(report.violations, start=1):
        timeline.append((violation.time, count))
    return _Run(name, report, delays, latencies, held, timeline, world.network.sent)


def run(
    seed: int,
    trials: int,
    *,
    causal: Protocol = CausalBroadcast,
    fifo: Protocol = FifoBroadcast,
) -> LabResult:
    """``trials`` runs of each protocol; ``causal`` lets tests plant a broken one."""
    runs: dict[str, list[_Run]] = {"causal (vector clocks)": [], "FIFO only": []}
    for trial in range(trials):
        runs["causal (vector clocks)"].append(
            _run_protocol("causal (vector clocks)", causal, seed, trial)
        )
        runs["FIFO only"].append(_run_protocol("FIFO only", fifo, seed, trial))

    verdict = Verdict()
    rows: list[tuple[str, ...]] = []
    per_protocol: dict[str, Json] = {}
    for name, results in runs.items():
        n = len(results)
        violations = sum(len(r.report.violations) for r in results)
        fifo_violations = sum(r.report.fifo_violations for r in results)
        deliveries = sum(r.report.deliveries for r in results)
        sent = sum(r.report.sent for r in results)
        duplicates = sum(len(r.report.duplicates) for r in results)
        missing = sum(sum(r.report.missing.values()) for r in results)
        broken_trials = sum(1 for r in results if r.report.violations)
        waits = sorted(d for r in results for d in r.delays)
        latencies = sorted(d for r in results for d in r.latencies)
        peak = max((h for r in results for _, h in r.held_back), default=0)
        per_protocol[name] = {
            "sent": sent,
            "deliveries": deliveries,
            "causal_violations": violations,
            "fifo_violations": fifo_violations,
            "trials_with_violations": broken_trials,
            "duplicates": duplicates,
            "missing": missing,
            "hold_back_wait_ms_p50": _percentile_ms(waits, 0.5),
            "hold_back_wait_ms_p99": _percentile_ms(waits, 0.99),
            "latency_ms_p50": _percentile_ms(latencies, 0.5),
            "latency_ms_p99": _percentile_ms(latencies, 0.99),
            "hold_back_peak": peak,
            "messages_per_trial": round(sum(r.messages for r in results) / n, 1),
            "examples": [str(v) for r in results for v in r.report.violations][:3],
        }
        rows.append(
            (
                name,
                str(sent),
                str(deliveries),
                f"{violations} ({broken_trials}/{n} trials)",
                str(fifo_violations),
                f"{duplicates}/{missing}",
                f"{_percentile_ms(waits, 0.5)}/{_percentile_ms(waits, 0.99)}",
                f"{_percentile_ms(latencies, 0.5)}/{_percentile_ms(latencies, 0.99)}",
                str(peak),
            )
        )
        complete = duplicates == 0 and missing == 0
        verdict.expect(
            complete,
            f"{name}: every message delivered exactly once at every node ({deliveries} deliveries)",
            f"{name}: {duplicates} duplicate and {missing} missing deliveries",
        )
        if name.startswith("causal"):
            verdict.expect(
                violations == 0,
                f"{name}: causal order held in {n}/{n} trials",
                f"{name}: {violations} causal-order violations in {broken_trials}/{n} trials "
                f"(e.g. {_first_violation(results)})",
            )
        else:
            verdict.expect(
                broken_trials < n,
                f"{name}: causal order held in {n - broken_trials}/{n} trials",
                f"{name}: causal order violated in {broken_trials}/{n} trials ({violations} "
                f"deliveries before a predecessor, e.g. {_first_violation(results)}); "
                f"FIFO order itself held ({fifo_violations} FIFO violations)",
                predicted=False,
            )
            if fifo_violations:
                verdict.unexpected.append(f"{name}: {fifo_violations} FIFO-order violations")
    table = Table(
        f"4 nodes, reordering + 5 % loss + 5 % duplication; {trials} trials",
        (
            "delivery",
            "sent",
            "deliveries",
            "causal violations",
            "FIFO viol.",
            "dup/miss",
            "held ms p50/p99",
            "latency ms p50/p99",
            "peak held",
        ),
        tuple(rows),
    )
    figures: dict[str, Json] = {"nodes": len(NODES), "protocols": per_protocol}
    return LabResult(NAME, seed, trials, verdict, figures, [table], _charts(runs))


def _first_violation(results: list[_Run]) -> str:
    for result in results:
        if result.report.violations:
            return str(result.report.violations[0])
    return "none"


def _percentile_ms(sorted_values: list[int], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    position = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return round(sorted_values[position] / MS, 1)


def _charts(runs: dict[str, list[_Run]]) -> list[Chart]:
    violations = []
    held = []
    for name, results in runs.items():
        first = results[0]
        points = [(0, 0), *first.violations_over_time, (HORIZON, len(first.violations_over_time))]
        violations.append(
            Series(
                name,
                tuple(t / SECOND for t, _ in points),
                tuple(float(c) for _, c in points),
                "step",
            )
        )
        held.append(
            Series(
                name,
                tuple(t / SECOND for t, _ in first.held_back),
                tuple(float(h) for _, h in first.held_back),
                "step",
            )
        )
    return [
        Chart(
            "causal-order violations so far (trial 1)", "time (s)", "violations", tuple(violations)
        ),
        Chart(
            "messages waiting in hold-back queues (trial 1)", "time (s)", "held back", tuple(held)
        ),
    ]
