"""The lab's scenarios, in the order the argument makes them, and how to run one.

Scenario modules are imported only when run, so listing the lab stays cheap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from herald.errors import UsageError

from .result import LabResult

__all__ = ["SCENARIOS", "Scenario", "find", "run_scenario"]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    claim: str  # the one line the scenario demonstrates
    default_trials: int
    trial: str  # what one trial is
    module: str  # herald.lab.scenarios.<module>, whose run(seed, trials) it calls


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "two-generals",
        "no finite strategy over a lossy channel makes disagreement impossible",
        1000,
        "simulated runs per (strategy, loss rate)",
        "two_generals",
    ),
    Scenario(
        "delivery",
        "at-most-once loses, at-least-once duplicates, effectively-once does neither",
        3,
        "seeds of the queue workload per fault level",
        "delivery",
    ),
    Scenario(
        "2pc",
        "two-phase commit is atomic, and blocks while its coordinator is away",
        20,
        "runs per situation",
        "two_phase",
    ),
    Scenario(
        "3pc",
        "three-phase commit does not block on crashes, and breaks atomicity on a partition",
        20,
        "runs per situation",
        "three_phase",
    ),
    Scenario(
        "raft-partition",
        "a Raft minority is fenced, the majority goes on, healing catches up",
        3,
        "runs of the partition timeline (seeds S, S+1, ...)",
        "raft_partition",
    ),
    Scenario(
        "crdt",
        "state-based CRDTs converge under loss, duplication and partitions; naive ops diverge",
        10,
        "fault schedules, each run by every type",
        "crdt",
    ),
    Scenario(
        "causal",
        "vector clocks deliver in causal order under reordering; FIFO alone does not",
        5,
        "runs per delivery order",
        "causal",
    ),
    Scenario(
        "paxos",
        "single-decree Paxos agrees under faults; its cost beside Raft's election and commit",
        50,
        "decisions per configuration",
        "paxos",
    ),
)


def find(name: str) -> Scenario:
    """The scenario called ``name``; raises :class:`UsageError` if there is none."""
    for scenario in SCENARIOS:
        if scenario.name == name:
            return scenario
    known = ", ".join(s.name for s in SCENARIOS)
    raise UsageError(f"unknown scenario {name!r}; choose from {known}")


def run_scenario(name: str, seed: int = 0, trials: int | None = None) -> LabResult:
    """Run a scenario. Raises :class:`UsageError` for an unknown one, or for a
    trial count below 1."""
    scenario = find(name)
    count = scenario.default_trials if trials is None else trials
    if count < 1:
        raise UsageError("trials must be at least 1")
    module = importlib.import_module(f"herald.lab.scenarios.{scenario.module}")
    result = module.run(seed, count)
    assert isinstance(result, LabResult)
    return result
