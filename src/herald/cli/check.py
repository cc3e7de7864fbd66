"""``herald check HISTORY``: judge any history file with Herald's queue checker."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from herald.check.history import read_history
from herald.check.queue import MODES, check_queue
from herald.check.verdict import judge
from herald.errors import HistoryFormatError

HELP = """Check a history of queue operations (JSON Lines) and print the verdict.

The history is what clients saw: publishes, deliveries, acks, side effects,
each invoked then ok / fail / info (see docs/history.md). It may come from
`herald torture`, the simulator, or your own recorder against any broker.
Per delivery mode it counts lost, unexpected and duplicated messages and
effects, reordering, redeliveries after an ack and attempt regressions.

Exit status: 0 every guarantee held; 1 a guarantee is broken; 2 the file is
unreadable or malformed.
"""


def check(
    history: Annotated[Path, typer.Argument(help="A JSON Lines history file ('-' for stdin).")],
    producer_dedup: bool = typer.Option(
        True,
        "--producer-dedup/--no-producer-dedup",
        help="Publishers retried with the same identity, so a stored copy counts as a failure.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    examples: int = typer.Option(3, "--examples", min=0, help="Example findings per kind."),
) -> None:
    try:
        if str(history) == "-":
            ops = read_history(sys.stdin)
        else:
            with history.open(encoding="utf-8") as lines:
                ops = read_history(lines)
    except OSError as error:
        typer.echo(f"herald check: cannot read {history}: {error.strerror}", err=True)
        raise typer.Exit(2) from None
    except HistoryFormatError as error:
        typer.echo(f"herald check: {history}: {error}", err=True)
        raise typer.Exit(2) from None
    result = check_queue(ops, max_examples=examples)
    verdict = judge(result.by_mode, producer_dedup=producer_dedup)
    if as_json:
        summary = {
            "ok": verdict.ok,
            "operations": len(ops),
            "attempted": result.attempted,
            "confirmed": result.confirmed,
            "modes": {
                mode: {
                    "confirmed": counts.confirmed,
                    "lost": counts.lost,
                    "unexpected": counts.unexpected,
                    "duplicated": counts.duplicated,
                    "duplicated_effects": counts.duplicated_effect,
                    "reordered": counts.reordered,
                }
                for mode, counts in result.by_mode.items()
            },
            "failures": list(verdict.failures),
            "phenomena": list(verdict.phenomena),
        }
        print(json.dumps(summary))
    else:
        _show(len(ops), result, verdict, examples)
    raise typer.Exit(0 if verdict.ok else 1)


def _show(operations: int, result: object, verdict: object, examples: int) -> None:
    from herald.check.queue import QueueCheckResult
    from herald.check.verdict import Verdict

    assert isinstance(result, QueueCheckResult) and isinstance(verdict, Verdict)
    console = Console()
    console.print(
        f"{operations} operations: {result.attempted} messages published, "
        f"{result.confirmed} confirmed, {result.failed} surely failed, "
        f"{result.indeterminate} unknown"
    )
    table = Table(title="Per delivery mode")
    for column in (
        "mode",
        "confirmed",
        "lost",
        "unexpected",
        "duplicated",
        "dup. effects",
        "reordered",
    ):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for mode in MODES:
        counts = result.by_mode.get(mode)
        if counts is None or not counts.streams:
            continue
        table.add_row(
            mode,
            str(counts.confirmed),
            str(counts.lost),
            str(counts.unexpected),
            str(counts.duplicated),
            str(counts.duplicated_effect),
            str(counts.reordered),
        )
    console.print(table)
    if examples:
        for finding in result.findings:
            console.print(
                f"  {finding.kind} [{finding.mode}] {finding.queue}/{finding.group} "
                f"{finding.id}: {finding.detail}"
            )
    for line in verdict.failures:
        console.print(f"[red]FAILED[/red] {line}")
    for line in verdict.phenomena:
        console.print(f"[yellow]allowed[/yellow] {line}")
    console.print(
        "[green]every guarantee held[/green]" if verdict.ok else "[red]a guarantee is broken[/red]"
    )
