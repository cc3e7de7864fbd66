"""`herald check HISTORY`: the verdict and its exit status from a file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from herald.check.history import Recorder, write_history
from herald.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def example_history(tmp_path: Path) -> Path:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "record_history.py")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = tmp_path / "history.jsonl"
    path.write_text(out)
    return path


def test_the_documented_example_passes(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", str(example_history(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "every guarantee held" in result.stdout


def test_a_lost_message_fails_with_status_1(tmp_path: Path) -> None:
    history = Recorder()
    history.invoke("p", "publish", {"queue": "q", "id": "m1"})
    history.ok("p", "publish", {"seq": 1})
    history.invoke("c", "deliver", {"queue": "q", "group": "g", "mode": "at_least_once"})
    history.ok("c", "deliver", {"messages": []})
    path = tmp_path / "lost.jsonl"
    with path.open("w") as out:
        write_history(history.ops, out)
    result = runner.invoke(app, ["check", str(path), "--json"])
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["ok"] is False
    assert summary["modes"]["at_least_once"]["lost"] == 1


def test_a_malformed_file_is_status_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"process": 1, "type": "invoke"}\nnot json\n')
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    assert "line" in result.output


def test_a_missing_file_is_status_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2
