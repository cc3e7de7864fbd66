"""The bugs found on the request path, put back: the simulator (or a targeted test) must fail.

Each reproduced bug of the request path has a planted twin in
``tests/sim/planted.py``. Those the queue workload reaches are hunted over
seeds with a bound several times the seed that finds them; the two whose
moment no seed reaches in a practical number (a proposal re-proposed over by
its own node, a crash inside the sync that ends a recovery) are put back into
the targeted tests that pin them, which must then fail.
"""

from __future__ import annotations

import pytest

from herald.node.host import NodeHost
from herald.node.server import ServerCore
from herald.sim.options import draw_options
from herald.sim.runner import SimResult, run_seed
from herald.sim.serving import Plants
from tests.node import test_host, test_server

from .planted import (
    AnswersLostWhenUnknown,
    DropsTheMarkerEarly,
    RenumberingClient,
    StampsBeforeItKnowsTheTime,
    StampsItsOwnClock,
    inbox_key_without_incarnation,
)


def first_failure(bound: int, plants: Plants, faults: tuple[str, ...] | None = None) -> SimResult:
    for seed in range(bound):
        result = run_seed(seed, workload="queue", faults=faults, plants=plants)
        if result.verdict != "ok":
            return result
    pytest.fail(f"{plants} not caught within {bound} seeds")


def test_renumbering_behind_a_refusal_is_found() -> None:
    """Bug 1: the client renumbered the publishes behind a refused one, so a later
    publish was confirmed with another's receipt (and one that was stored failed)."""
    # Some seeds only stall (the relay's renumbered rows are refused for ever, and
    # the drain waits for a relay with nothing left to publish): hunt the
    # confirmed publish answered with another's receipt.
    plants = Plants(client_class=RenumberingClient)
    for seed in range(20):
        result = run_seed(seed, workload="queue", plants=plants)
        if result.verdict == "safety":
            assert "unexpected" in result.detail or "lost" in result.detail, result.detail
            return
    pytest.fail("the renumbering client's wrong receipts were not found within 20 seeds")


def test_a_leader_stamping_its_own_clock_is_found() -> None:
    """Bug 3: the leader's own wall clock, stepped, moved the log's time: keys and
    producers expire early (a retry is stored twice), or time stands still for the
    size of a backward step (leases never expire, the queue never drains)."""
    result = first_failure(20, Plants(server_class=StampsItsOwnClock))
    assert result.verdict in ("safety", "liveness"), result.detail
    assert result.stats["wall_steps"] > 0


def test_a_stamp_from_one_clock_fails_its_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same bug, seen as what users suffer: a retry after the step stored twice."""
    monkeypatch.setattr(ServerCore, "_stamp", StampsItsOwnClock._stamp)
    with pytest.raises(AssertionError, match="stored twice"):
        test_server.test_a_step_of_the_leaders_clock_does_not_forget_keys()


def test_a_leader_stamping_before_it_knows_the_time_is_found() -> None:
    """Bug found by CI after issue 11: a new cluster's leader stamped its first
    commands 0; the next real stamp expired every producer, and retries that had
    landed were stored a second time."""
    result = first_failure(5, Plants(server_class=StampsBeforeItKnowsTheTime))
    assert result.verdict == "safety", result.detail
    assert "log time" in result.detail, result.detail


def test_stamping_before_the_time_is_known_fails_its_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same bug, put back into the scenario that pins it."""
    monkeypatch.setattr(ServerCore, "_stamp", StampsBeforeItKnowsTheTime._stamp)
    with pytest.raises(AssertionError, match="OverloadedError"):
        test_server.test_a_new_leader_that_has_heard_no_clock_turns_writes_away_instead_of_stamping_0()


def test_an_inbox_keyed_without_the_incarnation_is_found() -> None:
    """Bug 5: a recreated queue's new messages matched the old queue's Inbox records.

    Only seeds that recreate the scratch queue can show it, and few do at the
    right moment: 2 of seeds 0-59 (3 and 40) with one group, 1 (40) with the
    drawn groups; the hunt runs the recreating seeds of the first 60."""
    plants = Plants(inbox_key=inbox_key_without_incarnation)
    result = None
    for seed in range(60):
        options = draw_options(seed, workload="queue")
        if options.queue is None or not options.queue.recreate_every:
            continue
        found = run_seed(seed, workload="queue", plants=plants)
        if found.verdict != "ok":
            result = found
            break
    assert result is not None, "an Inbox keyed without the incarnation was not found"
    assert result.verdict == "safety", result.detail
    assert "effectively_once" in result.detail and "lost" in result.detail, result.detail


def test_answering_lost_for_a_replaced_proposal_fails_its_test(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bug 4, put back into the scenario that pins it."""
    monkeypatch.setattr(ServerCore, "_replaced_answer", AnswersLostWhenUnknown._replaced_answer)
    with pytest.raises(AssertionError, match="ProposalLostError"):
        test_server.test_a_proposal_replaced_by_the_same_nodes_later_one_is_unknown_not_lost()


def test_dropping_the_marker_early_fails_its_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug 2, put back into the scenario that pins it; the simulator's recovery check
    (a node may not restart without its marker before a later entry was durable)
    watches every run for it."""
    monkeypatch.setattr(NodeHost, "_caught_up", DropsTheMarkerEarly._caught_up)
    with pytest.raises(AssertionError):
        test_host.test_the_marker_stays_until_the_entries_that_end_recovery_are_durable()
