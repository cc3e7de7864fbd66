"""``herald torture``: fault injection against real `herald serve` processes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer
from rich.console import Console

from herald.torture.run import NEMESES, TortureResult

HELP = """Jepsen-style fault injection against a local cluster of real processes.

Starts 3 or 5 `herald serve` processes behind fault-injecting proxies, runs
idempotent producers and one consumer per delivery semantics, and lets a
nemesis kill (SIGKILL and restart), pause (SIGSTOP/SIGCONT), partition, slow
down and power-cut (`disk`: nodes run on a file system that loses unsynced
writes when killed) the nodes. Then it heals everything, drains the queue and
judges the recorded history with the same checker as the simulator.

The faults go on for --time seconds (30 if neither --time nor --rounds is
given) and for --rounds rounds: a round injects every requested kind once, so
`--rounds 2` injects each kind twice however slow the machine.

Writes history.jsonl, results.json and latency.png under --out. Exit status:
0 every guarantee held and the queue drained; 1 safety: a guarantee is broken;
2 bad usage; 3 liveness: after healing, the drain did not finish (it made no
progress for a minute, or ran past a cap that grows with the backlog), and no
guarantee was found broken in what was delivered. Messages still queued then
are reported as undelivered so far, never as lost.
"""

#: Exit statuses (TigerBeetle's VOPR keeps correctness and liveness apart too).
EXIT_OK = 0
EXIT_SAFETY = 1
EXIT_LIVENESS = 3


def torture(
    seconds: float | None = typer.Option(
        None, "--time", "--seconds", min=5.0, help="Seconds of faults (default 30)."
    ),
    rounds: int | None = typer.Option(
        None, "--rounds", min=1, help="Rounds of faults: each requested kind once per round."
    ),
    nemesis: str = typer.Option(
        "kill,pause,partition", "--nemesis", help=f"Fault kinds: any of {','.join(NEMESES)}."
    ),
    nodes: int = typer.Option(3, "--nodes", help="Cluster size: 3 or 5."),
    producers: int = typer.Option(3, "--producers", min=1, max=32),
    seed: int | None = typer.Option(None, "--seed", help="Seed the nemesis's choices."),
    out: str = typer.Option("out/torture", "--out", help="Where the report goes."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary object."),
) -> None:
    from herald.torture.report import print_summary, write_report
    from herald.torture.run import run_torture

    kinds = tuple(kind.strip() for kind in nemesis.split(",") if kind.strip())
    unknown = [kind for kind in kinds if kind not in NEMESES]
    if unknown or not kinds:
        raise typer.BadParameter(
            f"unknown nemesis {', '.join(unknown) or '(none)'}; choose from {', '.join(NEMESES)}",
            param_hint="--nemesis",
        )
    if nodes not in (3, 5):
        raise typer.BadParameter("3 or 5 nodes", param_hint="--nodes")
    console = Console(stderr=as_json)
    result = asyncio.run(
        run_torture(
            seconds=seconds,
            rounds=rounds,
            nemeses=kinds,
            nodes=nodes,
            producers=producers,
            seed=seed,
            report_dir=Path(out),
            say=(lambda text: console.print(text, markup=False)) if not as_json else _silent,
        )
    )
    write_report(result)
    if as_json:
        print(json.dumps(result.summary()))
    else:
        print_summary(result, console)
    raise typer.Exit(exit_status(result))


def _silent(text: str) -> None:
    pass


def exit_status(result: TortureResult) -> int:
    """Safety first: a broken guarantee is a failure whether or not the queue drained."""
    if not result.safe:
        return EXIT_SAFETY
    if not result.live:
        return EXIT_LIVENESS
    return EXIT_OK
