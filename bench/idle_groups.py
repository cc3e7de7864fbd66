"""What idle data groups cost: CPU time of each node of a real 3-node cluster at rest.

For each group count, starts a local cluster with ``herald serve --groups N``,
waits until every group has a leader and the leaders have spread, then reads
each node process's CPU time (user + system, from /proc) over ``--seconds`` of
idleness: no client, only Raft heartbeats and the nodes' own timers. Prints
CPU milliseconds per second per node (the leader of most groups costs most)
and the ratio to the first count measured in the same run.

    .venv/bin/python bench/idle_groups.py --groups 1,8,32,64 --seconds 10
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from herald.runtime.launcher import LocalCluster


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def measure(groups: int, seconds: float, tick_ms: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="herald-idle-") as data:
        args = ["--groups", str(groups), "--tick-ms", str(tick_ms)]
        with LocalCluster(3, data_dir=data, args=args, cluster="idle") as cluster:
            cluster.start()
            for group in range(groups):
                cluster.leader(group=group, timeout=60)
            time.sleep(max(3.0, 40 * tick_ms / 1000))  # elections settle, leaders spread
            leaders = [cluster.leader(group=group, timeout=30) for group in range(groups)]
            pids = {node: cluster.nodes[node].pid for node in cluster.nodes}
            before = {node: cpu_seconds(pid) for node, pid in pids.items() if pid}
            time.sleep(seconds)
            after = {node: cpu_seconds(pid) for node, pid in pids.items() if pid}
    per_node = {node: 1000 * (after[node] - before[node]) / seconds for node in before}
    return {"groups": groups, "cpu_ms_per_s": per_node, "leaders": leaders}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", default="1,8,32,64", help="group counts (comma-separated)")
    parser.add_argument("--seconds", type=float, default=10.0, help="idle time measured")
    parser.add_argument("--tick-ms", type=int, default=10, help="the nodes' Raft tick")
    options = parser.parse_args()
    rows = [measure(int(g), options.seconds, options.tick_ms) for g in options.groups.split(",")]
    first = sum(rows[0]["cpu_ms_per_s"].values()) or 1e-9  # type: ignore[attr-defined]
    print(f"idle cluster of 3 nodes, tick {options.tick_ms} ms, {options.seconds:.0f} s measured")
    header = ("groups", "n1 ms/s", "n2 ms/s", "n3 ms/s", "total", "vs first")
    print(" ".join(f"{name:>8}" for name in header) + "  leaders")
    for row in rows:
        cpu: dict[int, float] = row["cpu_ms_per_s"]  # type: ignore[assignment]
        total = sum(cpu.values())
        spread = {n: row["leaders"].count(n) for n in sorted(cpu)}  # type: ignore[attr-defined]
        print(
            f"{row['groups']:>8} "
            + " ".join(f"{cpu.get(n, 0.0):8.1f}" for n in (1, 2, 3))
            + f" {total:8.1f} {total / first:7.2f}x  "
            + " ".join(f"n{n}:{c}" for n, c in spread.items())
        )


if __name__ == "__main__":
    main()
