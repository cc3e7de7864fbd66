"""The demo's report: a table for the terminal, a PNG timeline and a JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .run import LABELS, DemoResult

__all__ = ["print_report", "write_report"]

_EXPECTED = {
    # What each mode promises, and the phenomenon it allows.
    "at_most_once": ("duplicated", "lost"),
    "at_least_once": ("lost", "duplicated"),
    "effectively_once": ("lost or duplicated", ""),
}


def print_report(result: DemoResult, console: Console) -> None:
    table = Table(
        title="The same 3-node cluster, the same workload, the same faults",
        caption="kills: leader / consumer process",
    )
    for column in (
        "semantics",
        "intended",
        "effects applied",
        "lost",
        "duplicated effects",
        "leader changes",
        "kills",
        "duration",
    ):
        table.add_column(
            column,
            justify="left" if column == "semantics" else "right",
            no_wrap=column == "semantics",
        )
    for mode, run in result.modes.items():
        table.add_row(
            LABELS[mode],
            str(run.intended),
            str(run.effects),
            _emph(run.lost, mode == "at_most_once"),
            _emph(run.duplicated, mode == "at_least_once"),
            str(run.leader_changes),
            f"{run.leader_kills} / {run.consumer_kills}",
            f"{run.duration:.1f} s",
        )
    console.print(table)
    for mode, run in result.modes.items():
        console.print(_verdict(mode, run))
    console.print(
        f"\nTimeline: {result.report_dir / 'timeline.png'}   "
        f"Report: {result.report_dir / 'report.json'}   ({result.duration:.1f} s in all)"
    )


def _emph(value: int, expected: bool) -> str:
    if not value:
        return "0"
    return f"[yellow]{value}[/yellow]" if expected else f"[red]{value}[/red]"


def _verdict(mode: str, run: object) -> str:
    from .run import ModeResult

    assert isinstance(run, ModeResult)
    label = LABELS[mode]
    tail = "" if run.drained else " (the queue was not fully drained in time: counts are partial)"
    if mode == "at_most_once":
        if run.duplicated:
            return (
                f"[red]{label}: {run.duplicated} duplicated effects: a broken promise[/red]{tail}"
            )
        if run.lost:
            return (
                f"{label}: [yellow]lost {run.lost} orders[/yellow] (a consumer died holding "
                f"messages already settled, or a fire-and-forget publish died with the "
                f"leader) and never duplicated one.{tail}"
            )
        return f"{label}: no loss observed in this run (the faults missed); no duplicates.{tail}"
    if mode == "at_least_once":
        if run.lost:
            return f"[red]{label}: lost {run.lost} confirmed orders: a broken promise[/red]{tail}"
        if run.duplicated:
            return (
                f"{label}: lost nothing and [yellow]applied {run.duplicated} effects twice"
                f"[/yellow] (a crash between effect and ack redelivers; a retried publish "
                f"whose answer was lost stores a second copy).{tail}"
            )
        return (
            f"{label}: lost nothing; no duplicate observed in this run (the faults missed).{tail}"
        )
    if run.lost or run.duplicated:
        return (
            f"[red]{label}: lost {run.lost}, duplicated {run.duplicated}: a broken promise"
            f"[/red]{tail}"
        )
    return (
        f"{label}: every order applied exactly once, through {run.consumer_kills} consumer "
        f"and {run.leader_kills} leader kills (Outbox + idempotent producer + Inbox).{tail}"
    )


def write_report(result: DemoResult) -> None:
    directory = result.report_dir
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps(result.summary(), indent=2) + "\n")
    _plot(result, directory / "timeline.png")


def _plot(result: DemoResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = list(result.modes.values())
    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 2.6 * len(runs)), sharex=False)
    if len(runs) == 1:
        axes = [axes]
    bin_width = 0.5
    for axis, run in zip(axes, runs, strict=True):
        start = run.started
        end = start + max(run.duration, bin_width)
        bins = max(1, int((end - start) / bin_width) + 1)
        counts = [0] * bins
        for at in run.effect_times:
            position = int((at - start) / bin_width)
            if 0 <= position < bins:
                counts[position] += 1
        xs = [start + i * bin_width for i in range(bins)]
        axis.step(xs, [c / bin_width for c in counts], where="post", color="tab:blue")
        for fault_start, fault_end, label in run.faults:
            color = "tab:red" if label.startswith("leader") else "tab:orange"
            axis.axvspan(fault_start, max(fault_end, fault_start + 0.05), color=color, alpha=0.2)
        axis.set_title(
            f"{LABELS[run.mode]}: {run.effects} effects for {run.intended} orders, "
            f"lost {run.lost}, duplicated {run.duplicated}",
            fontsize=10,
        )
        axis.set_ylabel("effects / s")
        axis.grid(True, alpha=0.3)
    axes[-1].set_xlabel("seconds since the demo started (red: leader down, orange: consumer down)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
