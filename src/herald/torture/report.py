"""What `herald torture` leaves behind: a summary table, results.json and two plots."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .run import TortureResult

__all__ = ["print_summary", "write_report"]


def write_report(result: TortureResult) -> None:
    directory = result.report_dir
    (directory / "results.json").write_text(json.dumps(result.summary(), indent=2) + "\n")
    _plot(result, directory / "latency.png")


def print_summary(result: TortureResult, console: Console) -> None:
    """The table, the faults, then the verdict: safety (guarantees) and liveness
    (the drain) apart. A queue that did not drain has no lost messages, only
    undelivered ones so far."""
    table = Table(title=f"herald torture: {result.nodes} nodes, {result.seconds:.0f} s")
    missing = "lost" if result.drained else "undelivered so far"
    for column in (
        "semantics",
        "confirmed",
        missing,
        "unexpected",
        "dup. deliveries",
        "dup. effects",
    ):
        table.add_column(column, justify="left" if column == "semantics" else "right")
    for mode, counts in result.by_mode.items():
        table.add_row(
            mode,
            str(counts["confirmed"]),
            str(counts["lost"] if result.drained else counts["undelivered_so_far"]),
            str(counts["unexpected"]),
            str(counts["duplicated"]),
            str(counts["duplicated_effects"]),
        )
    console.print(table)
    faults = ", ".join(f"{kind} {count}" for kind, count in result.faults.items())
    console.print(
        f"faults injected: {faults}; consumers crashed {result.consumer_crashes} times "
        "(after a delivery or between an effect and its ack)"
    )
    console.print(
        f"operations: {result.ops} publishes, {result.ok_fraction:.1%} succeeded while a "
        f"majority was up; longest unavailability {result.longest_unavailable:.2f} s; "
        f"confirm latency p50 {result.latency_ms['p50']} ms, p99 {result.latency_ms['p99']} ms"
    )
    for line in result.phenomena:
        console.print(f"[yellow]allowed[/yellow] {escape(line)}")
    for line in result.failures:
        console.print(f"[red]SAFETY FAILURE[/red] {escape(line)}")
    if result.drained:
        console.print(f"liveness: {escape(result.drain.describe())}")
    else:
        console.print(f"[red]LIVENESS FAILURE[/red] {escape(result.drain.describe())}")
        console.print(
            "undelivered so far (not lost: the queue did not drain): "
            + ", ".join(f"{mode} {count}" for mode, count in result.undelivered.items())
        )
    console.print(_verdict(result))
    console.print(f"report: {result.report_dir} (history.jsonl, results.json, latency.png)")


def _verdict(result: TortureResult) -> str:
    if result.ok:
        return "[green]every guarantee held, and the queue drained[/green]"
    lines = []
    if not result.safe:
        lines.append("[red]safety: a guarantee is broken[/red]")
    if not result.live:
        lines.append(
            "[red]liveness: drain did not finish[/red]"
            + ("" if not result.safe else " (no guarantee found broken in the partial history)")
        )
    return "\n".join(lines)


def _plot(result: TortureResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (latency, throughput) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    if result.timeline:
        xs = [at for at, _ in result.timeline]
        latency.scatter(xs, [ms for _, ms in result.timeline], s=2, alpha=0.4)
        width = 0.5
        end = max(xs)
        bins = int(end / width) + 1
        counts = [0] * bins
        for at in xs:
            counts[int(at / width)] += 1
        throughput.step([i * width for i in range(bins)], [c / width for c in counts], where="post")
    colors = {"SIGKILL": "tab:red", "SIGSTOP": "tab:blue", "power": "tab:purple",
              "partition": "tab:orange", "isolate": "tab:orange", "one-way": "tab:orange",
              "slow": "tab:green"}  # fmt: skip
    for start, end, label in result.fault_spans:
        color = next((c for prefix, c in colors.items() if label.startswith(prefix)), "tab:gray")
        for axis in (latency, throughput):
            axis.axvspan(start, max(end, start + 0.05), color=color, alpha=0.15)
    latency.set_yscale("log")
    latency.set_ylabel("publish confirm (ms)")
    throughput.set_ylabel("confirmed publishes / s")
    throughput.set_xlabel(
        "seconds (red: kills, blue: pauses, purple: power loss, orange: partitions, "
        "green: slow links)"
    )
    missing = (
        f"lost {result.lost}"
        if result.lost is not None
        else f"did not drain: {sum(result.undelivered.values())} undelivered so far"
    )
    latency.set_title(
        f"herald torture: {result.ops} publishes, {missing}, "
        f"duplicated effects {result.duplicated_effects}"
    )
    for axis in (latency, throughput):
        axis.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
