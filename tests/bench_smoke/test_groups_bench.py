"""``herald bench --groups`` and ``bench/idle_groups.py`` end to end at tiny sizes.

Nothing about speed is asserted: only that each runs real clusters of each
group count, reports every field, spreads the leaders, and refuses bad usage.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from herald.cli.main import app

pytest.importorskip("herald.runtime.launcher")

IDLE = Path(__file__).resolve().parents[2] / "bench" / "idle_groups.py"


def herald(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "herald"), *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_bench_compares_group_counts_in_one_run() -> None:
    result = herald("bench", "--groups", "1,3", "--messages", "300", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = report["groups"]
    assert [row["groups"] for row in rows] == [1, 3]
    for row in rows:
        assert row["publish"]["errors"] == 0
        assert row["publish"]["msgs_per_s"] > 0
        assert len(row["leaders"]) == row["groups"]
        assert row["durability"] == "durable"


@pytest.mark.parametrize("groups", ["0", "1,x", "65", ""])
def test_bench_refuses_bad_group_counts(groups: str) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["bench", "--groups", groups])
    assert result.exit_code == 2, result.output


def test_bench_groups_refuses_a_url() -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["bench", "--groups", "1,2", "--url", "127.0.0.1:1"])
    assert result.exit_code == 2, result.output


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads CPU times from /proc")
def test_idle_groups_reports_each_count() -> None:
    result = subprocess.run(
        [sys.executable, str(IDLE), "--groups", "1,3", "--seconds", "1"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    assert [row[0] for row in rows] == ["1", "3"]
