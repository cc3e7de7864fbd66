"""`herald lab`: the list, the JSON contract, the picture, and the exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from herald.cli import lab as lab_cli
from herald.cli.main import app
from herald.lab.registry import SCENARIOS
from herald.lab.result import LabResult, Verdict

runner = CliRunner()

SMALL = {"two-generals": 20}


def test_list_names_every_scenario() -> None:
    result = runner.invoke(app, ["lab", "--list"])
    assert result.exit_code == 0
    for scenario in SCENARIOS:
        assert scenario.name in result.stdout


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_every_scenario_prints_its_json_summary(name: str) -> None:
    trials = str(SMALL.get(name, 1))
    result = runner.invoke(app, ["lab", name, "--seed", "3", "--trials", trials, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert list(summary)[:3] == ["scenario", "seed", "verdict"]
    assert summary["scenario"] == name and summary["seed"] == 3
    assert summary["verdict"]["as_predicted"] is True
    assert summary["verdict"]["held"]


def test_human_output_ends_with_the_summary_line() -> None:
    result = runner.invoke(app, ["lab", "3pc", "--trials", "1"])
    assert result.exit_code == 0, result.output
    assert "partition-during-pre-commit: atomicity violated in 1/1 trials" in result.stdout
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("scenario=3pc seed=0 trials=1 outcome=as-predicted")


def test_json_is_a_function_of_the_seed() -> None:
    first = runner.invoke(app, ["lab", "crdt", "--seed", "9", "--trials", "1", "--json"])
    second = runner.invoke(app, ["lab", "crdt", "--seed", "9", "--trials", "1", "--json"])
    assert first.stdout == second.stdout


def test_plot_writes_a_png(tmp_path: Path) -> None:
    target = tmp_path / "2pc.png"
    result = runner.invoke(app, ["lab", "2pc", "--trials", "1", "--plot", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "arguments",
    [
        ["lab"],
        ["lab", "gremlins"],
        ["lab", "2pc", "--trials", "0"],
        ["lab", "2pc", "--plot", "picture.svg"],
    ],
)
def test_bad_usage_exits_2(arguments: list[str]) -> None:
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2


def test_an_unexpected_finding_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(name: str, seed: int, trials: int | None) -> LabResult:
        verdict = Verdict()
        verdict.expect(False, "converged", "G-Counter: did not converge")
        return LabResult(name, seed, 1, verdict)

    monkeypatch.setattr(lab_cli, "run_scenario", fake)
    result = runner.invoke(app, ["lab", "crdt"])
    assert result.exit_code == 1
    assert "outcome=UNEXPECTED" in result.stdout
    result = runner.invoke(app, ["lab", "crdt", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["verdict"]["unexpected"] == ["G-Counter: did not converge"]
