"""Simulator speed: seeds per minute on one core, and simulated vs wall time.

``--workload queue`` measures the whole request path (real server and client
cores on every node and client). Quote it beside another run on the same
machine: ``cpu`` (the process's CPU time) is the figure to compare when the
machine is busy.
"""

from __future__ import annotations

import argparse
import statistics
import time

from herald.sim.runner import run_seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=200, help="seeds to run (default 200)")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--workload", default="raft", help="raft (default) or queue")
    args = parser.parse_args()

    wall_started = time.perf_counter()
    cpu_started = time.process_time()
    virtual = 0
    events = 0
    per_seed: list[float] = []
    failures = 0
    for seed in range(args.start, args.start + args.seeds):
        began = time.perf_counter()
        result = run_seed(seed, workload=args.workload)
        per_seed.append(time.perf_counter() - began)
        virtual += result.virtual_time
        events += result.events
        failures += result.failed
    wall = time.perf_counter() - wall_started
    cpu = time.process_time() - cpu_started
    per_seed.sort()
    print(f"seeds={args.seeds} failures={failures} wall={wall:.1f}s cpu={cpu:.1f}s")
    print(f"seeds_per_minute={args.seeds / wall * 60:.0f} (one core, wall)")
    print(f"seeds_per_cpu_minute={args.seeds / cpu * 60:.0f}")
    print(f"projected_1000_seeds={1000 * wall / args.seeds / 60:.1f} min")
    print(f"virtual_time={virtual / 1e6:.0f}s simulated_to_wall={virtual / 1e6 / wall:.1f}x")
    print(f"events={events} events_per_second={events / wall:,.0f}")
    print(
        f"per_seed_ms median={statistics.median(per_seed) * 1000:.0f} "
        f"p99={per_seed[int(len(per_seed) * 0.99) - 1] * 1000:.0f} max={per_seed[-1] * 1000:.0f}"
    )


if __name__ == "__main__":
    main()
