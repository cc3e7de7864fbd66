"""Raft throughput in a fault-free simulated cluster: committed proposals per CPU-second.

The clients keep many proposals in flight so the leader batches; the figure is
the CPU cost of the whole cluster (every node's core and host, the simulated
network and disk) per committed entry, as all nodes share this one process.
"""

from __future__ import annotations

import argparse
import time

from herald.sim.options import draw_options, with_overrides
from herald.sim.runner import run_seed
from herald.sim.scheduler import MS, SECOND


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="simulated seconds")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--pipeline", type=int, default=64, help="proposals in flight per client")
    parser.add_argument("--size", type=int, default=0, help="unused; payloads are ~10 bytes")
    args = parser.parse_args()

    options = with_overrides(
        draw_options(1, faults=()),
        nodes=args.nodes,
        clients=args.clients,
        max_pending=args.pipeline,
        propose_interval=100,  # microseconds between one client's proposals
        read_fraction=0.0,
        safety_duration=int(args.seconds * SECOND),
        network=with_overrides(
            draw_options(1).network,
            base_latency=200,
            jitter=100,
            loss=0.0,
            duplicate=0.0,
            spike=0.0,
        ),
        fsync_latency=200,
        heartbeat_tick=5,
        election_tick_max=29,
        snapshot_entries=10_000,
    )
    cpu_started = time.process_time()
    wall_started = time.perf_counter()
    result = run_seed(1, options=options)
    cpu = time.process_time() - cpu_started
    wall = time.perf_counter() - wall_started
    committed = result.stats["acked"]
    print(
        f"nodes={args.nodes} simulated={args.seconds:.0f}s verdict={result.verdict} "
        f"acked={committed} messages={result.stats['messages']}"
    )
    print(f"committed_per_cpu_second={committed / cpu:,.0f} (cpu={cpu:.2f}s wall={wall:.2f}s)")
    print(f"simulated_throughput={committed / args.seconds:,.0f} entries per simulated second")
    print(f"fsync={options.fsync_latency / MS:.1f}ms one_way_latency~{0.3:.1f}ms")


if __name__ == "__main__":
    main()
