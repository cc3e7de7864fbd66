"""`herald sim --workload queue`: the broker under Raft and faults, judged by the queue checker."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from herald.broker import Broker
from herald.cli.main import app
from herald.sim.options import draw_options
from herald.sim.runner import run_seed
from tests.check.test_broker_histories import (
    DropsEveryTenthPublish,
    ForgetsAcks,
    ForgetsProducers,
    LeasesAtMostOnce,
)

MODES = ("at_most_once", "at_least_once", "effectively_once")


@pytest.mark.parametrize("seed", [0, 3, 5, 7])
def test_queue_seeds_keep_every_guarantee(seed: int) -> None:
    result = run_seed(seed, workload="queue")
    assert result.verdict == "ok", result.detail
    for mode in MODES:
        assert result.stats[f"{mode}.confirmed"] > 0
    assert result.stats["at_most_once.duplicated"] == 0
    assert result.stats["at_most_once.duplicated_deliveries"] == 0
    assert result.stats["at_least_once.lost"] == 0
    assert result.stats["effectively_once.lost"] == 0
    assert result.stats["effectively_once.duplicated"] == 0


def test_users_whose_setup_came_late_still_work_under_faults() -> None:
    """Seed 3 loses its quorum for most of the safety phase: the setup is done
    only after the phase's drawn end, and the faults go on until the users have
    worked a while (a run that published nothing would pass having tested
    nothing)."""
    from herald.sim import queue as sim_queue
    from herald.sim.runner import QUEUE_MIN_WORK

    began: list[int] = []
    original = sim_queue.QueueWorkload._begin

    def begin(self: sim_queue.QueueWorkload) -> None:
        began.append(self.world.scheduler.now)
        original(self)

    sim_queue.QueueWorkload._begin = begin  # type: ignore[method-assign]
    try:
        result = run_seed(3, workload="queue")
    finally:
        sim_queue.QueueWorkload._begin = original  # type: ignore[method-assign]
    assert began and began[0] > result.options.safety_duration
    assert result.verdict == "ok", result.detail
    assert result.stats["effectively_once.confirmed"] > 0
    assert result.virtual_time > began[0] + QUEUE_MIN_WORK


def test_the_phenomena_really_occur() -> None:
    """Loss under at-most-once and duplicated effects under at-least-once are what
    the modes allow; the workload must actually provoke them, or it shows nothing."""
    totals = {"amo_lost": 0, "alo_duplicated": 0, "eo_duplicate_deliveries": 0}
    for seed in range(8):
        stats = run_seed(seed, workload="queue").stats
        totals["amo_lost"] += stats["at_most_once.lost"]
        totals["alo_duplicated"] += stats["at_least_once.duplicated"]
        totals["eo_duplicate_deliveries"] += stats["effectively_once.duplicated_deliveries"]
    assert all(count > 0 for count in totals.values()), totals


@pytest.mark.parametrize(
    ("broker", "failure"),
    [
        (ForgetsAcks, "redelivered_after_ack"),
        (LeasesAtMostOnce, "at_most_once"),
        (DropsEveryTenthPublish, "lost"),
        (ForgetsProducers, "copy"),
    ],
)
def test_planted_broker_bugs_fail_the_seed(broker: type[Broker], failure: str) -> None:
    for seed in range(10):
        result = run_seed(seed, workload="queue", broker_class=broker)
        if result.verdict == "safety" and failure in result.detail:
            return
    pytest.fail(f"{broker.__name__} not caught within 10 seeds")


def test_queue_options_are_printed_with_the_seed() -> None:
    described = draw_options(4, workload="queue").describe()
    assert "queue: producers=" in described and "lease=" in described
    # The cluster, network and faults of a seed do not depend on the workload.
    raft = draw_options(4)
    queue = draw_options(4, workload="queue")
    assert (raft.nodes, raft.network, raft.faults) == (queue.nodes, queue.network, queue.faults)


def test_json_summary() -> None:
    result = CliRunner().invoke(
        app, ["sim", "--workload", "queue", "--seeds", "2", "--start", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert list(summary)[:2] == ["seeds", "failures"]
    assert summary["seeds"] == 2 and summary["failures"] == 0
    for mode in MODES:
        assert {"lost", "duplicated"} <= set(summary["modes"][mode])
    assert summary["modes"]["effectively_once"]["duplicated"] == 0


def test_what_users_do_and_suffer_really_happens() -> None:
    """The workload is only as good as what it provokes: over a few seeds, every kind
    of refusal, restart, recreation and clock fault occurs, and the JSON summary
    counts it."""
    result = CliRunner().invoke(
        app, ["sim", "--workload", "queue", "--seeds", "12", "--start", "0", "--json"]
    )
    assert result.exit_code == 0, result.output
    exercised = json.loads(result.stdout)["exercised"]
    for name in (
        "refused_too_large",
        "refused_queue_full",
        "refused_unknown_queue",
        "turned_away_overload_or_not_leader",
        "producer_restarts_new_id",
        "outbox_rows_set_aside",
        "queues_deleted_and_recreated",
        "consumer_crashes",
        "wall_clock_steps",
        "node_crashes",
    ):
        assert exercised.get(name, {}).get("total", 0) > 0, (name, exercised)
