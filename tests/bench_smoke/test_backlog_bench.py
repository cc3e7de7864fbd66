"""``bench/backlog.py`` end to end at tiny sizes: a real 3-node cluster, a restart.

Benchmarks assert nothing about speed; this only checks that the script runs,
reports every field for every round and that its restart check passes, so the
benchmark keeps working while the storage underneath it is rewritten.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("herald.runtime.launcher")

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "backlog.py"
ROUND_FIELDS = {
    "retained", "msgs_per_s", "p50_ms", "p99_ms", "max_ms", "max_stall_ms",
    "rss_bytes", "bytes_per_message", "disk_bytes", "errors",
}  # fmt: skip


def run_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_backlog_bench_reports_each_round_and_keeps_the_backlog_across_a_restart() -> None:
    done = run_script(
        "--sizes", "200,500", "--window", "100", "--inflight", "50", "--drain", "--json"
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is True and result["failed"] == []
    assert [row["retained"] for row in result["rounds"]] == [200, 500]
    nodes = {"1", "2", "3"}
    for row in result["rounds"]:
        assert set(row) >= ROUND_FIELDS, row
        window = row["window"]  # 100 more, measured on their own
        assert window["published"] == window["stored"] == 100 and window["p99_ms"] > 0
        assert row["errors"] == 0 and row["msgs_per_s"] > 0
        assert set(row["rss_bytes"]) == set(row["disk_bytes"]) == nodes
        assert all(size > 0 for size in row["rss_bytes"].values())
        assert all(size > 0 for size in row["disk_bytes"].values())
    assert sum(row["probe_answers"] for row in result["rounds"]) >= 1  # the probe ran
    restart = result["restart"]
    assert restart["count_ok"] is True
    assert restart["retained_after"] == restart["retained_before"] + 1 == 601
    assert restart["stop_statuses"] == {node: 0 for node in nodes}
    assert 0 < restart["first_confirm_s"] < 120
    assert result["drain"]["messages"] == 601 and result["drain"]["retained_after"] == 0


def test_backlog_bench_refuses_sizes_that_do_not_grow() -> None:
    done = run_script("--sizes", "1k,500", timeout=60)
    assert done.returncode == 2
    assert "increasing" in done.stderr


def test_backlog_bench_exits_4_when_the_cluster_does_not_start() -> None:
    done = run_script("--sizes", "10", "--serve-args=--no-such-flag", timeout=60)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "FAILED: the cluster did not start" in done.stderr
