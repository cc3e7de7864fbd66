"""The `herald sim` and `herald demo` commands: output contract and exit codes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from herald.cli import sim as sim_cli
from herald.cli.main import app
from herald.sim.options import draw_options
from herald.sim.runner import SimResult

runner = CliRunner()


def test_sim_summary_line() -> None:
    result = runner.invoke(app, ["sim", "--seeds", "3", "--start", "40"])
    assert result.exit_code == 0, result.output
    summary = [line for line in result.stdout.splitlines() if line.startswith("seeds=")]
    assert summary and summary[-1].startswith("seeds=3 failures=0")


def test_trace_is_byte_identical() -> None:
    first = runner.invoke(app, ["sim", "--seed", "9", "--trace"])
    second = runner.invoke(app, ["sim", "--seed", "9", "--trace"])
    assert first.exit_code == 0
    assert first.stdout == second.stdout
    assert first.stdout.startswith("SEED=9 ")
    assert "verdict=ok" in first.stdout


def test_unknown_fault_kind_is_a_usage_error() -> None:
    result = runner.invoke(app, ["sim", "--faults", "network,gremlins"])
    assert result.exit_code == 2
    assert "gremlins" in result.output


def test_trace_needs_a_single_seed() -> None:
    result = runner.invoke(app, ["sim", "--seeds", "2", "--trace"])
    assert result.exit_code == 2


@pytest.mark.parametrize(
    ("verdicts", "code"),
    [
        (["ok", "ok"], 0),
        (["ok", "crash"], 3),
        (["liveness", "ok"], 4),
        (["liveness", "safety", "crash"], 5),
        (["crash", "liveness"], 3),
    ],
)
def test_exit_code_is_the_most_serious_verdict(
    monkeypatch: pytest.MonkeyPatch, verdicts: list[str], code: int
) -> None:
    def fake_run_seeds(
        seeds: range, faults: object, jobs: int, workload: str, groups: int | None = None
    ) -> Iterator[SimResult]:
        for seed, verdict in zip(seeds, verdicts, strict=False):
            yield SimResult(seed, draw_options(seed), verdict, detail="planted")

    monkeypatch.setattr(sim_cli, "run_seeds", fake_run_seeds)
    result = runner.invoke(app, ["sim", "--seeds", str(len(verdicts))])
    assert result.exit_code == code
    failing = [line for line in result.stdout.splitlines() if line.startswith("SEED=")]
    assert len(failing) == sum(v != "ok" for v in verdicts)
    assert f"failures={sum(v != 'ok' for v in verdicts)}" in result.stdout


def test_groups_force_every_seeds_count_and_need_the_queue_workload() -> None:
    result = runner.invoke(app, ["sim", "--seed", "3", "--workload", "queue", "--groups", "3"])
    assert result.exit_code == 0, result.stdout
    traced = runner.invoke(
        app, ["sim", "--seed", "3", "--workload", "queue", "--groups", "2", "--trace"]
    )
    assert " groups=2 " in traced.stdout.splitlines()[0]
    refused = runner.invoke(app, ["sim", "--seeds", "1", "--groups", "2"])
    assert refused.exit_code == 2
    assert runner.invoke(app, ["sim", "--workload", "queue", "--groups", "0"]).exit_code == 2
    assert runner.invoke(app, ["sim", "--workload", "queue", "--groups", "65"]).exit_code == 2


def test_parallel_run_matches_serial() -> None:
    serial = runner.invoke(app, ["sim", "--seeds", "4", "--start", "60"])
    parallel = runner.invoke(app, ["sim", "--seeds", "4", "--start", "60", "--jobs", "2"])
    strip = lambda text: text.split(" wall=")[0]  # noqa: E731
    assert strip(serial.stdout) == strip(parallel.stdout)


def test_demo_prints_a_verdict_table() -> None:
    result = runner.invoke(app, ["demo", "--simulated", "--seeds", "2"])
    assert result.exit_code == 0, result.output
    assert "held" in result.stdout
    assert "2 of 2 worlds passed" in result.stdout
