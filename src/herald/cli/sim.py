"""``herald sim``: run the deterministic simulator over a range of seeds."""

from __future__ import annotations

import json
import sys
import time

import typer

from herald.check.queue import MODES
from herald.node.config import MAX_GROUPS
from herald.sim.batch import run_seeds
from herald.sim.options import FAULT_KINDS, WORKLOADS, draw_options
from herald.sim.runner import EXIT_CODES, SEVERITY, SimResult, run_seed

HELP = """Run the deterministic simulator: a Raft cluster under seed-drawn faults.

Each seed draws its own cluster size, network, fault kinds and rates, runs a
safety phase under faults and a liveness phase after healing, and is judged
against Raft's safety properties. A failing seed prints one line; the run ends
with a summary line starting `seeds=N failures=F`.

Exit status: 0 all seeds passed; 3 a seed crashed (an exception); 4 a liveness
failure; 5 a safety violation (the most serious one found wins); 2 bad usage.

Replay one seed with `herald sim --seed S --trace`: the same seed always prints
the same bytes.

`--workload queue` runs the broker: idempotent producers and consumers in the
three delivery semantics, judged by the queue checker. A seed fails when a
guarantee breaks (at-most-once duplicates; at-least-once or effectively-once
loses a confirmed message; effectively-once duplicates an effect); loss under
at-most-once and duplicates under at-least-once are reported, not failures.
Each queue seed draws 1 to 3 data groups per node (`herald serve --groups`);
`--groups N` runs every seed with N instead.
"""


def _parse_faults(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    kinds = tuple(kind.strip() for kind in text.split(",") if kind.strip())
    unknown = [kind for kind in kinds if kind not in FAULT_KINDS]
    if unknown:
        raise typer.BadParameter(
            f"unknown fault kind(s) {', '.join(unknown)}; choose from {', '.join(FAULT_KINDS)}"
        )
    return kinds


def _failure_line(result: SimResult) -> str:
    return f"SEED={result.seed} verdict={result.verdict} {result.detail}"


def sim(
    seeds: int = typer.Option(1, "--seeds", "-n", min=1, help="How many seeds to run."),
    start: int = typer.Option(0, "--start", "-s", min=0, help="The first seed."),
    seed: int | None = typer.Option(
        None, "--seed", min=0, help="Run exactly this one seed (same as --start S --seeds 1)."
    ),
    trace: bool = typer.Option(False, "--trace", help="Print every event of the (single) seed."),
    faults: str | None = typer.Option(
        None,
        "--faults",
        help=f"Restrict fault kinds to a comma-separated subset of {','.join(FAULT_KINDS)}.",
    ),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Worker processes."),
    workload: str = typer.Option(
        "raft", "--workload", "-w", help=f"What the clients do: {' or '.join(WORKLOADS)}."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary object."),
    groups: int | None = typer.Option(
        None,
        "--groups",
        min=1,
        max=MAX_GROUPS,
        help="Data groups per node for every seed (queue workload; default: drawn 1-3).",
    ),
) -> None:
    fault_kinds = _parse_faults(faults)
    if workload not in WORKLOADS:
        raise typer.BadParameter(f"unknown workload {workload!r}; choose {', '.join(WORKLOADS)}")
    if groups is not None and groups != 1 and workload != "queue":
        raise typer.BadParameter("--groups needs --workload queue (the Raft workload has one)")
    if seed is not None:
        start, seeds = seed, 1
    if trace:
        if seeds != 1:
            raise typer.BadParameter("--trace replays a single seed: use --seed S")
        _trace_one(start, fault_kinds, workload, groups)
        return
    _run_many(range(start, start + seeds), fault_kinds, jobs, workload, as_json, groups)


def _trace_one(
    seed: int, faults: tuple[str, ...] | None, workload: str, groups: int | None
) -> None:
    out = sys.stdout

    def emit(line: str) -> None:
        out.write(line + "\n")

    emit(draw_options(seed, faults, workload, groups).describe())
    result = run_seed(seed, faults=faults, workload=workload, tracer=emit, groups=groups)
    out.write(_summary([result]) + "\n")
    raise typer.Exit(EXIT_CODES[result.verdict])


def _summary(results: list[SimResult], wall: float | None = None) -> str:
    failures = [r for r in results if r.failed]
    by_kind = {
        kind: sum(r.verdict == kind for r in failures) for kind in ("safety", "liveness", "crash")
    }
    virtual = sum(r.virtual_time for r in results) / 1e6
    text = (
        f"seeds={len(results)} failures={len(failures)} "
        f"safety={by_kind['safety']} liveness={by_kind['liveness']} crash={by_kind['crash']} "
        f"acked={sum(r.stats.get('acked', 0) for r in results)} "
        f"virtual={virtual:.1f}s"
    )
    modes = _mode_totals(results)
    if modes:
        text += " " + " ".join(
            f"{mode}:lost={counts['lost']},duplicated={counts['duplicated']}"
            for mode, counts in modes.items()
        )
    if wall is not None:
        text += f" wall={wall:.1f}s seeds_per_min={len(results) / max(wall, 1e-9) * 60:.0f}"
    return text


#: What the queue workload's users did and suffered, summed in the JSON summary, so
#: a reader can see it was exercised (stats key -> summary name).
EXERCISED = {
    "refused_too_large": "refused_too_large",
    "refused_queue_full": "refused_queue_full",
    "refused_unknown_queue": "refused_unknown_queue",
    "turned_away": "turned_away_overload_or_not_leader",
    "messages_carried": "messages_carried_forward",
    "publish_unknown": "publish_outcome_unknown",
    "producer_restarts": "producer_restarts_new_id",
    "relay_restarts": "outbox_relay_restarts",
    "relay_set_aside": "outbox_rows_set_aside",
    "inbox_duplicates": "inbox_duplicates_skipped",
    "queue_recreations": "queues_deleted_and_recreated",
    "consumer_crashes": "consumer_crashes",
    "wall_steps": "wall_clock_steps",
    "fault_clock_jump": "clock_leaps",
    "fault_clock_rate": "clock_rate_changes",
    "crashes": "node_crashes",
    "fault_partition": "partitions",
}


def _exercised(results: list[SimResult]) -> dict[str, dict[str, int]]:
    """Per thing done or suffered: how often in all, and in how many seeds."""
    out: dict[str, dict[str, int]] = {}
    for key, name in EXERCISED.items():
        counts = [r.stats.get(key, 0) for r in results]
        if any(counts):
            out[name] = {"total": sum(counts), "seeds": sum(1 for c in counts if c)}
    return out


def _mode_totals(results: list[SimResult]) -> dict[str, dict[str, int]]:
    """Per delivery mode, summed over the seeds: what was lost and duplicated."""
    totals: dict[str, dict[str, int]] = {}
    for mode in MODES:
        keys = ("confirmed", "lost", "duplicated", "duplicated_deliveries")
        if not any(f"{mode}.confirmed" in r.stats for r in results):
            continue
        totals[mode] = {key: sum(r.stats.get(f"{mode}.{key}", 0) for r in results) for key in keys}
        totals[mode]["seeds_with_loss"] = sum(r.stats.get(f"{mode}.lost", 0) > 0 for r in results)
        totals[mode]["seeds_with_duplicates"] = sum(
            r.stats.get(f"{mode}.duplicated", 0) > 0 for r in results
        )
    return totals


def _run_many(
    seeds: range,
    faults: tuple[str, ...] | None,
    jobs: int,
    workload: str,
    as_json: bool,
    groups: int | None = None,
) -> None:
    started = time.perf_counter()
    results: list[SimResult] = []
    interactive = sys.stderr.isatty()
    step = max(1, len(seeds) // 10)
    out = sys.stderr if as_json else sys.stdout
    for count, result in enumerate(
        run_seeds(seeds, faults, jobs, workload, groups=groups), start=1
    ):
        results.append(result)
        if result.failed:
            print(_failure_line(result), file=out, flush=True)
        if len(seeds) > 1 and (interactive or count % step == 0 or count == len(seeds)):
            end = "\r" if interactive and count != len(seeds) else "\n"
            failed = sum(r.failed for r in results)
            print(f"[{count}/{len(seeds)}] failures={failed}", end=end, file=sys.stderr, flush=True)
    wall = time.perf_counter() - started
    if as_json:
        summary = {
            "seeds": len(results),
            "failures": sum(r.failed for r in results),
            "verdicts": {
                kind: sum(r.verdict == kind for r in results)
                for kind in ("safety", "liveness", "crash")
            },
            "failing_seeds": [r.seed for r in results if r.failed],
            "modes": _mode_totals(results),
            "exercised": _exercised(results),
            "wall_seconds": round(wall, 3),
        }
        print(json.dumps(summary), flush=True)
    else:
        print(_summary(results, wall), flush=True)
    worst = max((r.verdict for r in results), key=SEVERITY.index)
    raise typer.Exit(EXIT_CODES[worst])
