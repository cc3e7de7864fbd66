"""Running many seeds: in this process or spread over worker processes.

Each seed's result depends only on the seed, so running seeds in parallel
changes nothing but the wall-clock time; results are reported in seed order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor

from .runner import SimResult, run_seed

__all__ = ["run_seeds"]


#: (seed, fault kinds, workload, data groups or None for the seed's own draw)
Job = tuple[int, tuple[str, ...] | None, str, int | None]


def _run_one(job: Job) -> SimResult:
    seed, faults, workload, groups = job
    return run_seed(seed, faults=faults, workload=workload, groups=groups)


def run_seeds(
    seeds: range,
    faults: tuple[str, ...] | None = None,
    jobs: int = 1,
    workload: str = "raft",
    runner: Callable[[Job], SimResult] = _run_one,
    groups: int | None = None,
) -> Iterator[SimResult]:
    """Yield one result per seed, in seed order."""
    work = [(seed, faults, workload, groups) for seed in seeds]
    if jobs <= 1:
        for item in work:
            yield runner(item)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(runner, work, chunksize=4)
