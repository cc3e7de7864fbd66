"""The Raft paper's leader-election experiment (section 9.3, Figure 16), in the simulator.

Five nodes; the leader is crashed at a uniformly random point of its heartbeat
interval (half the minimum election timeout) right after it sent a heartbeat to
everyone; downtime runs from the crash until another node is elected. The
crashed node then restarts and the next trial begins once every node follows
the new leader. Pre-vote and check-quorum are off, as in the paper.

The paper's "broadcast time" (about 15 ms) is the time to send RPCs to every
server and receive their answers, a round trip; ``--one-way-ms`` defaults to
7.5 ms so the round trip matches it. ``--one-way-ms 15`` makes the round trip
30 ms, longer than the 12-24 ms timeouts, and shows what that does.
"""

from __future__ import annotations

import argparse
import random
import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from herald.raft import MessageType
from herald.sim.network import NetworkProfile
from herald.sim.options import draw_options, with_overrides
from herald.sim.scheduler import MS, SECOND
from herald.sim.world import SimNode, World

RANGES = [
    (150, 150),
    (150, 151),
    (150, 155),
    (150, 175),
    (150, 200),
    (150, 300),
    (12, 24),
    (25, 50),
    (50, 100),
    (100, 200),
]
GIVE_UP = 10 * SECOND


@dataclass
class RangeResult:
    low: int
    high: int
    downtimes_ms: list[float]  # inf for trials with no leader within GIVE_UP

    def finite(self) -> list[float]:
        return sorted(d for d in self.downtimes_ms if d != float("inf"))


def run_range(low: int, high: int, trials: int, one_way_ms: float, seed: int) -> RangeResult:
    heartbeat = max(1, low // 2)
    jitter = 500  # microseconds, exponential
    base = max(0, int(one_way_ms * MS) - jitter)
    options = with_overrides(
        draw_options(seed, faults=()),
        nodes=5,
        tick_interval=1 * MS,
        election_tick=low,
        election_tick_max=high,
        heartbeat_tick=heartbeat,
        pre_vote=False,
        check_quorum=False,
        drift=0.0,
        clients=0,
        fsync_latency=200,
        network=NetworkProfile(base, jitter, 0.0, 0.0, 0.0),
    )
    world = World(options, random.Random(seed))
    rng = random.Random(seed ^ 0xF16)
    scheduler = world.scheduler
    state: dict[str, object] = {"new_leader": None, "heartbeat_from": None, "heartbeat_seen": False}

    def on_new_leader(node: SimNode) -> None:
        state["new_leader"] = node

    world.on_new_leader = on_new_leader
    send = world.network.send

    def spy(message: object) -> None:
        if (
            getattr(message, "type", None) == MessageType.HEARTBEAT
            and getattr(message, "src", None) == state["heartbeat_from"]
        ):
            state["heartbeat_seen"] = True
        send(message)  # type: ignore[arg-type]

    world.network.send = spy  # type: ignore[method-assign]
    for node in world.voters:
        world.boot(world.nodes[node])

    downtimes: list[float] = []
    for _ in range(trials):
        # Wait for a leader that every node follows.
        def stable() -> bool:
            leader = world.leader()
            if leader is None:
                return False
            return all(
                n.host is not None and n.host.node.raft.lead == leader.id
                for n in world.nodes.values()
            )

        scheduler.run_until(scheduler.now + 60 * SECOND, stop=stable)
        leader = world.leader()
        assert leader is not None
        # Right after its next heartbeat, crash it at a random point of the interval.
        state["heartbeat_from"] = leader.id
        state["heartbeat_seen"] = False
        scheduler.run_until(scheduler.now + 60 * SECOND, stop=lambda: bool(state["heartbeat_seen"]))
        scheduler.run_until(scheduler.now + rng.randint(0, heartbeat * MS))
        crashed_at = scheduler.now
        state["new_leader"] = None
        world.crash(leader)
        found = scheduler.run_until(
            crashed_at + GIVE_UP, stop=lambda: state["new_leader"] is not None
        )
        downtimes.append((scheduler.now - crashed_at) / MS if found else float("inf"))
        world.restart(leader)
    return RangeResult(low, high, downtimes)


def _job(args: tuple[int, int, int, float, int]) -> RangeResult:
    return run_range(*args)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(fraction * (len(values) - 1)))]


def plot(results: list[RangeResult], path: Path, one_way_ms: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 8))
    for result in results:
        values = sorted(result.downtimes_ms)
        xs = [v for v in values if v != float("inf")]
        ys = [(i + 1) / len(values) for i in range(len(xs))]
        axis = top if result.low == 150 else bottom
        axis.step(xs, ys, where="post", label=f"{result.low}-{result.high} ms")
    top.set_title(f"Time without leader (5 nodes, one-way latency ~{one_way_ms:g} ms)")
    for axis in (top, bottom):
        axis.set_xscale("log")
        axis.set_xlabel("time without leader (ms)")
        axis.set_ylabel("cumulative fraction of trials")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--one-way-ms", type=float, default=7.5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--plot", type=Path, default=Path("out/election_timing.png"))
    args = parser.parse_args()

    work = [(low, high, args.trials, args.one_way_ms, args.seed) for low, high in RANGES]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(_job, work))

    print(
        f"Leader election after a leader crash: 5 nodes, one-way latency "
        f"~{args.one_way_ms:g} ms, {args.trials} trials per range"
    )
    print(f"{'timeout (ms)':>14} {'median':>8} {'p99':>8} {'max':>8} {'mean':>8} {'no leader':>10}")
    for result in results:
        finite = result.finite()
        stuck = len(result.downtimes_ms) - len(finite)
        mean = statistics.fmean(finite) if finite else float("nan")
        print(
            f"{result.low:>7}-{result.high:<6} {percentile(finite, 0.5):8.1f} "
            f"{percentile(finite, 0.99):8.1f} {finite[-1] if finite else float('nan'):8.1f} "
            f"{mean:8.1f} {stuck:>10}"
        )
    print(f"(ms; 'no leader' counts trials without a leader after {GIVE_UP // SECOND} s)")
    plot(results, args.plot, args.one_way_ms)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
