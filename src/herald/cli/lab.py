"""``herald lab``: run one of the lab's scenarios and show its verdict, tables and picture."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table as RichTable

from herald.errors import UsageError
from herald.lab.registry import SCENARIOS, find, run_scenario
from herald.lab.result import LabResult

HELP = """Run a lab scenario: a protocol in the simulator, judged by a checker.

Each scenario demonstrates one step of Herald's argument (exactly-once
delivery is impossible, agreement under failure is hard, every protocol
trades one guarantee for another) and prints tables and its verdict: what
held and what broke. Breaking can be the expected outcome: 3PC under a
partition *must* violate atomicity. `herald lab --list` names the scenarios.

Every run is a pure function of --seed and --trials. --json prints one JSON
object (first keys: scenario, seed, verdict) instead of the tables;
--plot FILE.png also draws the scenario's picture (needs matplotlib).

Exit status: 0 every outcome is the one the argument predicts; 1 a checker
found something it does not predict (a CRDT that did not converge, 2PC
breaking atomicity, ...); 2 bad usage.
"""

EXIT_AS_PREDICTED = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2


def lab(
    scenario: str | None = typer.Argument(
        None, metavar="SCENARIO", help="The scenario to run (see --list).", show_default=False
    ),
    seed: int = typer.Option(0, "--seed", "-s", min=0, help="The seed everything is drawn from."),
    trials: int | None = typer.Option(
        None, "--trials", "-n", min=1, help="Trials (default: the scenario's own, see --list)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON summary object."),
    plot_file: str | None = typer.Option(
        None, "--plot", metavar="FILE.png", help="Write the scenario's picture to this PNG file."
    ),
    list_scenarios: bool = typer.Option(False, "--list", help="List the scenarios and exit."),
) -> None:
    if list_scenarios:
        _list()
        return
    if scenario is None:
        raise typer.BadParameter(
            "name a scenario, or use --list to see them", param_hint="SCENARIO"
        )
    try:
        entry = find(scenario)
    except UsageError as error:
        raise typer.BadParameter(str(error), param_hint="SCENARIO") from error
    plot = Path(plot_file) if plot_file is not None else None
    if plot is not None and plot.suffix.lower() != ".png":
        raise typer.BadParameter(
            "the picture is written as PNG: give a .png file", param_hint="--plot"
        )
    started = time.perf_counter()
    result = run_scenario(entry.name, seed, trials)
    wall = time.perf_counter() - started
    if plot is not None:
        _plot(result, plot)
    if json_output:
        sys.stdout.write(json.dumps(result.summary()) + "\n")
    else:
        _show(result, wall, plot)
    raise typer.Exit(EXIT_AS_PREDICTED if result.verdict.as_predicted else EXIT_UNEXPECTED)


def _list() -> None:
    width = max(len(s.name) for s in SCENARIOS) + 2
    for scenario in SCENARIOS:
        typer.echo(f"{scenario.name:<{width}}{scenario.claim}")
        typer.echo(f"{'':<{width}}(default --trials {scenario.default_trials}: {scenario.trial})")


def _show(result: LabResult, wall: float, plot: Path | None) -> None:
    # A terminal gets tables that fit it; a pipe or file gets them unwrapped.
    console = Console(width=None if sys.stdout.isatty() else 160)
    entry = find(result.scenario)
    console.print(
        f"[bold]herald lab {result.scenario}[/bold] --seed {result.seed} --trials "
        f"{result.trials}: {entry.claim}\n"
    )
    for table in result.tables:
        rich_table = RichTable(title=table.title, title_justify="left")
        for index, column in enumerate(table.columns):
            if index == 0:
                rich_table.add_column(column, no_wrap=True)
            else:
                rich_table.add_column(column, justify="right")
        for row in table.rows:
            rich_table.add_row(*row)
        console.print(rich_table)
    for note in result.notes:
        console.print(f"\n{note}")
    verdict = result.verdict
    console.print("\n[bold]verdict[/bold]")
    for line in verdict.held:
        console.print(f"  [green]held[/green]   {line}", highlight=False)
    for line in verdict.broke:
        style = "red" if line in verdict.unexpected else "yellow"
        label = "BROKE" if line in verdict.unexpected else "broke"
        console.print(f"  [{style}]{label}[/{style}]  {line}", highlight=False)
    for line in verdict.unexpected:
        if line not in verdict.broke:
            console.print(f"  [red]UNEXPECTED[/red] {line}", highlight=False)
    if verdict.as_predicted:
        console.print(
            "  every outcome is the one the argument predicts (what broke was meant to break)"
        )
    if plot is not None:
        console.print(f"\npicture: {plot}")
    console.print(f"({wall:.1f} s)")
    # The last line is plain, for scripts.
    sys.stdout.write(result.summary_line() + "\n")


def _plot(result: LabResult, path: Path) -> None:
    try:
        import matplotlib
    except ImportError as error:  # pragma: no cover - matplotlib is a dev dependency
        typer.echo("--plot needs matplotlib: pip install 'herald[plot]'", err=True)
        raise typer.Exit(EXIT_USAGE) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts = result.charts or []
    count = max(1, len(charts))
    columns = 1 if count == 1 else 2 if count <= 4 else 3
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6.4 * columns, 4.2 * rows), squeeze=False)
    for index, chart in enumerate(charts):
        ax = axes[index // columns][index % columns]
        seen_bands: set[str] = set()
        for start, end, label in chart.bands:
            ax.axvspan(
                start,
                end,
                color="0.85",
                alpha=0.6,
                label=None if label in seen_bands else label,
                zorder=0,
            )
            seen_bands.add(label)
        for series in chart.series:
            if series.style == "step":
                ax.step(series.xs, series.ys, where="post", label=series.label, linewidth=1.2)
            elif series.style == "points":
                ax.plot(series.xs, series.ys, "o", label=series.label, markersize=4)
            else:
                ax.plot(series.xs, series.ys, marker=".", label=series.label, linewidth=1.2)
        if chart.log_y:
            ax.set_yscale("log")
        ax.set_title(chart.title, fontsize=10)
        ax.set_xlabel(chart.x_label)
        ax.set_ylabel(chart.y_label)
        ax.grid(True, alpha=0.3)
        if chart.series or chart.bands:
            ax.legend(fontsize=7, loc="best")
    for index in range(len(charts), rows * columns):
        axes[index // columns][index % columns].axis("off")
    outcome = "as predicted" if result.verdict.as_predicted else "UNEXPECTED"
    figure.suptitle(
        f"herald lab {result.scenario} (seed {result.seed}, {result.trials} trials): {outcome}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
