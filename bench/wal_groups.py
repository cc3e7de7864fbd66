"""Benchmark of one WAL per Raft group against one WAL per node shared by all groups.

Prints numbers; asserts nothing. Run::

    .venv/bin/python bench/wal_groups.py                      # G = 1,2,4,8; 32 KiB; 500 rounds
    .venv/bin/python bench/wal_groups.py --size 4096          # smaller records
    .venv/bin/python bench/wal_groups.py --groups 1,16 --json # one JSON object per line

Why: a node that hosts many Raft groups must make each group's new entries
durable before it acknowledges them. Either every group has its own
write-ahead log (its own file, its own ``fdatasync``) or all groups on the node
share one log (the records of all groups written in one cycle go into one file
and are made durable by one ``fdatasync``). The shared log costs coupling
(recovery reads every group's records, one slow group's batch delays all) and
buys fewer syncs; whether that is worth it depends on what the disk does with
several syncs at once. This measures it on the real disk.

For each group count G (``--groups``) and a record of ``--size`` bytes per
group per round (default 32 KiB: one group's batch entry of ~100 publishes of
256 B), it runs ``--rounds`` rounds (after ``--warmup`` uncounted ones) of
three strategies, each on fresh files in a scratch directory under ``--dir``
(default: the system temporary directory, /tmp), removed afterwards:

shared
    one file; a round is one ``os.write`` of the G records (G * size bytes)
    and one ``os.fdatasync``.
sequential
    G files; a round appends one record to each file, then fdatasyncs each
    file in turn, all in one thread.
parallel
    G files and G threads; in a round every thread appends its record and
    fdatasyncs its own file; a ``threading.Barrier`` starts each round once
    every thread has finished the previous one. The round's latency is the
    time from its start to the moment the last group's ``fdatasync`` returned.

Files are opened with ``O_WRONLY | O_CREAT | O_APPEND``: no preallocation, no
rotation. For each (strategy, G) it reports rounds/s, round latency p50, p99
and max in ms, durable MB/s (10^6 bytes of records made durable per second)
and the ratio of the strategy's rounds/s to that of ``shared`` at the same G
(above 1: faster than the shared log).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time

STRATEGIES = ("shared", "sequential", "parallel")
FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND


class Result:
    """The measurement of one strategy at one group count."""

    def __init__(
        self, strategy: str, groups: int, size: int, latencies: list[float], elapsed: float
    ) -> None:
        self.strategy = strategy
        self.groups = groups
        self.size = size
        self.latencies = latencies
        self.elapsed = elapsed

    @property
    def rounds(self) -> int:
        return len(self.latencies)

    @property
    def rounds_per_second(self) -> float:
        return self.rounds / self.elapsed

    @property
    def durable_mb_per_second(self) -> float:
        return self.rounds * self.groups * self.size / self.elapsed / 1e6

    def latency_ms(self, quantile: float) -> float:
        ordered = sorted(self.latencies)
        position = min(len(ordered) - 1, max(0, round(quantile * len(ordered)) - 1))
        return ordered[position] * 1e3

    def to_json(self, baseline: Result) -> dict[str, object]:
        return {
            "strategy": self.strategy,
            "groups": self.groups,
            "record_bytes": self.size,
            "rounds": self.rounds,
            "seconds": round(self.elapsed, 6),
            "rounds_per_s": round(self.rounds_per_second, 3),
            "p50_ms": round(self.latency_ms(0.50), 4),
            "p99_ms": round(self.latency_ms(0.99), 4),
            "max_ms": round(max(self.latencies) * 1e3, 4),
            "mean_ms": round(statistics.fmean(self.latencies) * 1e3, 4),
            "durable_mb_per_s": round(self.durable_mb_per_second, 3),
            "ratio_to_shared": round(self.rounds_per_second / baseline.rounds_per_second, 4),
        }


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def open_files(directory: str, strategy: str, count: int) -> list[int]:
    return [
        os.open(os.path.join(directory, f"{strategy}-{i}.wal"), FLAGS, 0o644) for i in range(count)
    ]


def close_files(directory: str, fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)
    for name in os.listdir(directory):
        os.remove(os.path.join(directory, name))


def run_shared(
    directory: str, records: list[bytes], rounds: int, warmup: int
) -> tuple[list[float], float]:
    (fd,) = open_files(directory, "shared", 1)
    batch = b"".join(records)
    try:
        for _ in range(warmup):
            write_all(fd, batch)
            os.fdatasync(fd)
        latencies: list[float] = []
        started = time.perf_counter()
        for _ in range(rounds):
            begin = time.perf_counter()
            write_all(fd, batch)
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - begin)
        elapsed = time.perf_counter() - started
    finally:
        close_files(directory, [fd])
    return latencies, elapsed


def run_sequential(
    directory: str, records: list[bytes], rounds: int, warmup: int
) -> tuple[list[float], float]:
    fds = open_files(directory, "sequential", len(records))
    pairs = list(zip(fds, records, strict=True))

    def one_round() -> None:
        for fd, record in pairs:
            write_all(fd, record)
        for fd in fds:
            os.fdatasync(fd)

    try:
        for _ in range(warmup):
            one_round()
        latencies: list[float] = []
        started = time.perf_counter()
        for _ in range(rounds):
            begin = time.perf_counter()
            one_round()
            latencies.append(time.perf_counter() - begin)
        elapsed = time.perf_counter() - started
    finally:
        close_files(directory, fds)
    return latencies, elapsed


def run_parallel(
    directory: str, records: list[bytes], rounds: int, warmup: int
) -> tuple[list[float], float]:
    groups = len(records)
    fds = open_files(directory, "parallel", groups)
    total = warmup + rounds
    # starts[r]: when round r began (the last thread reached the barrier);
    # done[r][g]: when group g's fdatasync of round r returned.
    starts: list[float] = [0.0] * (total + 1)
    done: list[list[float]] = [[0.0] * groups for _ in range(total)]
    counter = [0]

    def start_round() -> None:
        # Run by exactly one thread, after all have arrived and before any leaves.
        starts[counter[0]] = time.perf_counter()
        counter[0] += 1

    barrier = threading.Barrier(groups, action=start_round)
    errors: list[BaseException] = []

    def worker(group: int) -> None:
        fd = fds[group]
        record = records[group]
        try:
            for r in range(total):
                barrier.wait()
                write_all(fd, record)
                os.fdatasync(fd)
                done[r][group] = time.perf_counter()
            barrier.wait()  # the end of the last round
        except threading.BrokenBarrierError:
            pass
        except BaseException as error:
            errors.append(error)
            barrier.abort()

    threads = [
        threading.Thread(target=worker, args=(g,), name=f"wal-group-{g}") for g in range(groups)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        close_files(directory, fds)
    if errors:
        raise errors[0]
    latencies = [max(done[r]) - starts[r] for r in range(warmup, total)]
    # From the start of the first counted round to the end of the last one.
    elapsed = max(done[total - 1]) - starts[warmup]
    return latencies, elapsed


def measure(
    directory: str, strategy: str, groups: int, size: int, rounds: int, warmup: int
) -> Result:
    records = [os.urandom(size) for _ in range(groups)]
    if strategy == "shared":
        latencies, elapsed = run_shared(directory, records, rounds, warmup)
    elif strategy == "sequential":
        latencies, elapsed = run_sequential(directory, records, rounds, warmup)
    else:
        latencies, elapsed = run_parallel(directory, records, rounds, warmup)
    return Result(strategy, groups, size, latencies, elapsed)


def parse_groups(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"need positive group counts, got {text!r}")
    return values


def print_header(size: int, rounds: int, warmup: int, directory: str) -> None:
    print(
        f"WAL per group vs shared WAL: {size:,} B per group per round, "
        f"{rounds} rounds (+{warmup} warm-up), fdatasync, in {directory}"
    )
    print(
        f"  {'G':>3} {'strategy':<11} {'rounds/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'MB/s':>8} {'vs shared':>9}"
    )


def print_row(result: Result, baseline: Result) -> None:
    print(
        f"  {result.groups:>3} {result.strategy:<11} {result.rounds_per_second:>9,.1f} "
        f"{result.latency_ms(0.50):>8.2f} {result.latency_ms(0.99):>8.2f} "
        f"{max(result.latencies) * 1e3:>8.2f} {result.durable_mb_per_second:>8.1f} "
        f"{result.rounds_per_second / baseline.rounds_per_second:>8.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--groups", type=parse_groups, default=[1, 2, 4, 8], help="group counts (default 1,2,4,8)"
    )
    parser.add_argument(
        "--size", type=int, default=32 * 1024, help="bytes per group per round (default 32768)"
    )
    parser.add_argument("--rounds", type=int, default=500, help="counted rounds (default 500)")
    parser.add_argument("--warmup", type=int, default=5, help="uncounted rounds first (default 5)")
    parser.add_argument(
        "--dir", default=None, help="where to make the scratch directory (default: /tmp)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args()
    if args.size < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--size and --rounds must be positive, --warmup not negative")

    directory = tempfile.mkdtemp(prefix="herald-wal-groups-", dir=args.dir)
    try:
        if not args.json:
            print_header(args.size, args.rounds, args.warmup, directory)
        for groups in args.groups:
            results = [
                measure(directory, strategy, groups, args.size, args.rounds, args.warmup)
                for strategy in STRATEGIES
            ]
            baseline = results[0]
            for result in results:
                if args.json:
                    print(json.dumps(result.to_json(baseline)), flush=True)
                else:
                    print_row(result, baseline)
            if not args.json:
                print(flush=True)
    finally:
        for name in os.listdir(directory):
            os.remove(os.path.join(directory, name))
        os.rmdir(directory)


if __name__ == "__main__":
    main()
