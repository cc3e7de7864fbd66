"""Scenario ``delivery``: the three delivery semantics as faults rise.

The simulator's queue workload (:mod:`herald.sim.queue`) runs the real broker
on Raft: idempotent producers, and one consumer group per way of processing
(at-most-once; at-least-once with an effect that is not idempotent;
effectively-once with an inbox). Five fault levels raise, together, the chance
that a consumer crashes around a message (right after a delivery, or between
its effect and its ack) and how often the nemesis crashes a node. Each level
runs ``trials`` seeds; the queue checker counts, per mode, the confirmed
messages lost and the messages whose effect happened more than once.

The argument predicts: at-most-once never duplicates and loses under faults;
at-least-once never loses and duplicates under faults; effectively-once does
neither. With no faults at all, nothing is lost or duplicated anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from herald.broker import Broker
from herald.lab.result import Chart, Json, LabResult, Series, Table, Verdict, rate
from herald.sim.options import draw_options
from herald.sim.runner import run_seed
from herald.sim.scheduler import MS

__all__ = ["run"]

NAME = "delivery"
MODES = ("at_most_once", "at_least_once", "effectively_once")
LABELS = {
    "at_most_once": "at-most-once",
    "at_least_once": "at-least-once",
    "effectively_once": "effectively-once",
}


@dataclass(frozen=True, slots=True)
class Level:
    consumer_crash: float  # per message
    node_faults_every: int  # mean interval of node crashes, microseconds (0: none)

    def describe(self) -> str:
        nodes = (
            f"node crash every ~{self.node_faults_every // MS} ms"
            if self.node_faults_every
            else "no node faults"
        )
        return f"consumer crash {self.consumer_crash:.0%}, {nodes}"


LEVELS = (
    Level(0.0, 0),
    Level(0.02, 1500 * MS),
    Level(0.05, 800 * MS),
    Level(0.1, 400 * MS),
    Level(0.2, 200 * MS),
)


@dataclass(slots=True)
class _Totals:
    confirmed: int = 0
    lost: int = 0
    duplicated: int = 0  # messages whose effect happened more than once
    duplicate_deliveries: int = 0


def _run_level(
    level: Level, seed: int, trials: int, broker_class: type[Broker]
) -> tuple[dict[str, _Totals], list[str]]:
    totals = {mode: _Totals() for mode in MODES}
    failures: list[str] = []
    for trial in range(trials):
        run_seed_number = seed * 1000 + trial
        options = draw_options(
            run_seed_number, faults=("crash",) if level.node_faults_every else (), workload="queue"
        )
        assert options.queue is not None
        options = replace(
            options,
            queue=replace(options.queue, consumer_crash=level.consumer_crash, slow=0.0),
            fault_interval=level.node_faults_every or options.fault_interval,
            hunt_leaders=0.0,
        )
        result = run_seed(run_seed_number, options=options, broker_class=broker_class)
        if result.failed:
            failures.append(f"seed {run_seed_number}: {result.verdict}: {result.detail}")
        for mode in MODES:
            counts = totals[mode]
            counts.confirmed += result.stats.get(f"{mode}.confirmed", 0)
            counts.lost += result.stats.get(f"{mode}.lost", 0)
            counts.duplicated += result.stats.get(f"{mode}.duplicated", 0)
            counts.duplicate_deliveries += result.stats.get(f"{mode}.duplicated_deliveries", 0)
    return totals, failures


def run(seed: int, trials: int, *, broker_class: type[Broker] = Broker) -> LabResult:
    """``trials`` seeds of the queue workload at each of the five fault levels;
    ``broker_class`` lets tests plant a broken broker."""
    per_level = [_run_level(level, seed, trials, broker_class) for level in LEVELS]
    verdict = Verdict()
    grand = {mode: _Totals() for mode in MODES}
    failures: list[str] = []
    rows: list[tuple[str, ...]] = []
    levels_json: list[Json] = []
    for level, (totals, level_failures) in zip(LEVELS, per_level, strict=True):
        failures.extend(level_failures)
        row = [level.describe()]
        level_json: dict[str, Json] = {
            "consumer_crash": level.consumer_crash,
            "node_fault_interval_ms": level.node_faults_every // MS,
        }
        for mode in MODES:
            counts = totals[mode]
            total = grand[mode]
            total.confirmed += counts.confirmed
            total.lost += counts.lost
            total.duplicated += counts.duplicated
            total.duplicate_deliveries += counts.duplicate_deliveries
            row.append(f"{counts.lost} / {counts.duplicated}")
            level_json[mode] = {
                "confirmed": counts.confirmed,
                "lost": counts.lost,
                "duplicated": counts.duplicated,
                "duplicated_deliveries": counts.duplicate_deliveries,
            }
        rows.append(tuple(row))
        levels_json.append(level_json)

    calm, _ = per_level[0]
    verdict.expect(
        all(calm[mode].lost == 0 and calm[mode].duplicated == 0 for mode in MODES),
        "with no faults, no mode lost or duplicated anything",
        "a mode lost or duplicated messages without any fault",
    )
    amo, alo, eo = (grand[mode] for mode in MODES)
    verdict.expect(
        amo.duplicated == 0 and amo.duplicate_deliveries == 0,
        "at-most-once never delivered or processed a message twice",
        f"at-most-once duplicated {amo.duplicated} effects",
    )
    verdict.expect(
        amo.lost == 0,
        "at-most-once lost nothing",
        f"at-most-once lost {amo.lost} of {amo.confirmed} confirmed messages "
        "(a consumer crashed holding a message already settled)",
        predicted=False,
    )
    verdict.expect(
        alo.lost == 0,
        "at-least-once lost no confirmed message",
        f"at-least-once lost {alo.lost} confirmed messages",
    )
    verdict.expect(
        alo.duplicated == 0,
        "at-least-once processed every message once",
        f"at-least-once processed {alo.duplicated} of {alo.confirmed} messages more than once "
        "(a crash between effect and ack redelivers)",
        predicted=False,
    )
    verdict.expect(
        eo.lost == 0 and eo.duplicated == 0,
        f"effectively-once lost nothing and processed every message once "
        f"({eo.duplicate_deliveries} redeliveries absorbed by the inbox)",
        f"effectively-once lost {eo.lost} and duplicated {eo.duplicated}",
    )
    verdict.expect(
        not failures,
        "the simulator's own checks passed on every seed",
        f"{len(failures)} seeds failed the simulator's checks",
    )

    def fraction_series(attribute: str) -> tuple[Series, ...]:
        xs = tuple(level.consumer_crash for level in LEVELS)
        return tuple(
            Series(
                LABELS[mode],
                xs,
                tuple(
                    rate(getattr(totals[mode], attribute), totals[mode].confirmed)
                    for totals, _ in per_level
                ),
            )
            for mode in MODES
        )

    figures: dict[str, Json] = {
        "levels": levels_json,
        "totals": {
            mode: {
                "confirmed": grand[mode].confirmed,
                "lost": grand[mode].lost,
                "duplicated": grand[mode].duplicated,
                "duplicated_deliveries": grand[mode].duplicate_deliveries,
            }
            for mode in MODES
        },
        "failures": list(failures[:5]),
    }
    return LabResult(
        scenario=NAME,
        seed=seed,
        trials=trials,
        verdict=verdict,
        figures=figures,
        tables=[
            Table(
                "Lost / duplicated effects, summed over the seeds of each fault level",
                ("fault level", *(LABELS[mode] for mode in MODES)),
                tuple(rows),
            )
        ],
        charts=[
            Chart(
                "Confirmed messages lost",
                "consumer crash chance per message (node crashes rise with it)",
                "fraction lost",
                fraction_series("lost"),
            ),
            Chart(
                "Messages processed more than once",
                "consumer crash chance per message (node crashes rise with it)",
                "fraction duplicated",
                fraction_series("duplicated"),
            ),
        ],
        notes=[
            "Exactly-once delivery does not exist: effectively-once is at-least-once "
            "delivery plus deduplication where the effect happens (the inbox)."
        ],
    )
