"""`herald torture`: real processes under every fault kind, judged by the queue checker.

CI runs these short tortures; longer runs are documented in docs/torture.md.
They count rounds of faults, not seconds: a loaded machine gets through fewer
faults per second, never fewer faults per round. Nothing here asserts speed.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from herald.cli.main import app
from herald.cli.torture import EXIT_LIVENESS, EXIT_SAFETY, exit_status
from herald.torture.run import DrainReport, GroupRemaining, run_torture

runner = CliRunner()


def test_a_short_torture_with_every_fault_kind(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["torture", "--rounds", "1", "--nemesis", "kill,pause,partition,slow,disk",
         "--seed", "11", "--out", str(tmp_path), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(summary)[:6] == [
        "lost", "unexpected", "duplicated_effects", "ops", "ok_fraction", "faults"
    ]  # fmt: skip
    assert summary["drained"] is True
    assert summary["liveness"] == "ok"
    assert summary["lost"] == 0
    assert summary["unexpected"] == 0
    assert summary["duplicated_effects"] == 0
    # Every kind was injected, and each group's consumer crashed at both crash
    # points (one round owes one of each): counts, not a throughput.
    assert all(count >= 1 for count in summary["faults"].values()), summary["faults"]
    assert set(summary["faults"]) == {"kill", "pause", "partition", "slow", "disk"}
    assert summary["consumer_crashes"] >= 2 * 3
    assert all(counts["confirmed"] > 0 for counts in summary["modes"].values()), summary
    assert (tmp_path / "history.jsonl").stat().st_size > 0
    assert (tmp_path / "latency.png").read_bytes()[:4] == b"\x89PNG"
    # The history is in the documented format: herald check judges it the same way.
    checked = runner.invoke(app, ["check", str(tmp_path / "history.jsonl")])
    assert checked.exit_code == 0, checked.output


def test_an_effectively_once_consumer_without_its_inbox_is_caught(tmp_path: Path) -> None:
    """Planted bug: redeliveries (after a crash between an effect and its ack,
    failed acks and lease expiry) apply twice. The round owes that crash in the
    effectively-once group, so at least one effect is applied twice."""
    result = asyncio.run(
        run_torture(
            rounds=1,
            nemeses=("kill", "partition"),
            seed=5,
            report_dir=tmp_path,
            use_inbox=False,
        )
    )
    assert result.drained, result.drain.describe()
    assert not result.ok
    assert exit_status(result) == EXIT_SAFETY
    assert result.duplicated_effects > 0
    assert any("effectively_once" in line for line in result.failures)


def test_a_drain_that_does_not_finish_is_a_liveness_failure_not_a_loss(tmp_path: Path) -> None:
    """Planted liveness bug: the consumers quit before the producers' last
    confirmed publishes, so those stay in the queue. The run fails on liveness,
    names what remains, and counts them as undelivered so far, not as lost."""
    result = asyncio.run(
        run_torture(
            rounds=1,
            nemeses=("pause",),
            seed=3,
            report_dir=tmp_path,
            consumers_drain=False,
            drain_stall=3.0,
        )
    )
    summary = result.summary()
    assert not result.drained and not result.ok
    assert result.safe, result.failures
    assert exit_status(result) == EXIT_LIVENESS
    assert result.lost is None and summary["lost"] is None
    assert summary["liveness"] == "drain did not finish"
    assert "no progress for 3 s" in result.drain.describe()
    assert set(result.drain.remaining) == {"amo", "alo", "eo"}
    assert all(left.total >= 1 for left in result.drain.remaining.values()), result.drain
    assert result.undelivered["at_least_once"] >= 1
    assert result.undelivered["effectively_once"] >= 1
    assert all("lost" not in counts for counts in result.by_mode.values()), result.by_mode


def test_the_drain_report_names_what_remains() -> None:
    left = GroupRemaining(backlog=5, in_flight=2, ready=1, delayed=0, dead_letters=3)
    assert left.total == 8
    report = DrainReport(
        drained=False,
        seconds=61.0,
        why="no progress for 60 s",
        at_start={"alo": left},
        remaining={"alo": left},
        dead_letters=3,
    )
    text = report.describe()
    assert "did not finish" in text and "no progress for 60 s" in text
    assert "backlog 5, in flight 2, ready 1, delayed 0" in text
    assert "dead letters 3" in text
    assert report.as_dict()["remaining"] == {"alo": left.as_dict()}


def test_usage_errors() -> None:
    assert runner.invoke(app, ["torture", "--nemesis", "gremlins"]).exit_code == 2
    assert runner.invoke(app, ["torture", "--nodes", "4"]).exit_code == 2
    assert runner.invoke(app, ["torture", "--rounds", "0"]).exit_code == 2
