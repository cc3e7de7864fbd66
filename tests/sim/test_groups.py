"""Queue worlds of many data groups: the same checks hold, and a group left unsynced is found.

A seed draws 1 to 3 data groups per node (``SimOptions.groups``); every node
then runs the real :class:`~herald.node.groups.NodeCore` with a store per
group on its one simulated disk, and every client routes by the real
:class:`~herald.client.routing.GroupRouter`.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from herald.node.groups import NodeCore, NodeReady
from herald.sim.options import draw_options
from herald.sim.runner import run_seed
from herald.wire.placement import group_of


def _seeds_with(groups: int, count: int, start: int = 0) -> list[int]:
    found = []
    seed = start
    while len(found) < count:
        if draw_options(seed, workload="queue").groups == groups:
            found.append(seed)
        seed += 1
    return found


def test_seeds_draw_one_to_three_groups_and_only_in_queue_worlds() -> None:
    drawn = {draw_options(seed, workload="queue").groups for seed in range(40)}
    assert drawn == {1, 2, 3}
    assert {draw_options(seed).groups for seed in range(40)} == {1}


def test_a_world_of_three_groups_runs_every_group() -> None:
    """The queues live in different groups, each group elects its leaders, and
    the run is judged as any other."""
    # The workload's two queues: in groups 2 and 1 of three (group 0 stays idle).
    assert (group_of("q", 3), group_of("r", 3)) == (2, 1)
    seed = _seeds_with(3, 1)[0]
    result = run_seed(seed, workload="queue")
    assert result.verdict == "ok", result.detail
    assert result.stats["groups"] == 3
    assert result.stats["leaders"] >= 3  # at least one per group
    assert result.stats["effectively_once.confirmed"] > 0


def test_the_same_seed_with_its_group_count_forced_is_a_different_world() -> None:
    """The group count is part of the world: forcing it (as tests and the CLI may)
    changes the run, and a run of one group is the run it always was."""
    seed = _seeds_with(1, 1)[0]
    options = draw_options(seed, workload="queue")
    one = run_seed(seed, workload="queue")
    again = run_seed(seed, workload="queue", options=options)
    assert one.events == again.events
    three = run_seed(seed, workload="queue", options=replace(options, groups=3))
    assert three.verdict == "ok", three.detail
    assert three.events != one.events


def test_a_node_that_syncs_only_its_first_group_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted: the one Ready cycle of a node makes only group 0's writes durable,
    so a group holding a queue acknowledges entries a power loss takes away."""

    def sync_first_group_only(self: NodeCore, nrd: NodeReady) -> None:
        for core, rd in nrd.parts:
            if rd.must_sync and core.group == 0:
                core.sync(rd)

    monkeypatch.setattr(NodeCore, "sync", sync_first_group_only)
    for seed in _seeds_with(3, 15):
        result = run_seed(seed, workload="queue", faults=("crash",))
        if result.verdict != "ok":
            # Found by the store's own checks (an entry asked for that was never
            # made durable), by the checkers, or as a queue that never drains.
            return
    pytest.fail("a node that never syncs groups 1 and 2 was not caught within 15 seeds")
