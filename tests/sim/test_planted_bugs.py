"""The simulator must be able to fail: planted bugs are found within a bounded number of seeds.

Each bug is hunted with the fault kinds it needs (what `herald sim --faults ...`
selects) and, where it matters, a cluster shape drawn narrower than the default
swarm; the bound is several times the seed at which the bug is first found.
"""

from __future__ import annotations

from collections.abc import Callable

from herald.raft import Raft
from herald.sim.network import NetworkProfile
from herald.sim.options import SimOptions, draw_options, with_overrides
from herald.sim.runner import SimResult, run_seed
from herald.sim.world import DiskFactory
from herald.storage import SimFileSystem

from .planted import (
    CommitsOlderTermsByCounting,
    ForgetsVote,
    LyingDisk,
    NeverCampaigns,
    ReadsWithoutQuorum,
)


def first_failure(
    bound: int,
    options: Callable[[int], SimOptions],
    raft_class: type[Raft] = Raft,
    disk: DiskFactory = SimFileSystem,
    verdicts: tuple[str, ...] = ("safety", "liveness", "crash"),
) -> SimResult | None:
    for seed in range(bound):
        result = run_seed(seed, options=options(seed), raft_class=raft_class, disk_factory=disk)
        if result.verdict in verdicts:
            return result
    return None


def test_figure8_commit_by_counting_is_found() -> None:
    """Raft paper section 5.4.2 / Figure 8: counting replicas of an older term's entry."""

    def options(seed: int) -> SimOptions:
        return with_overrides(
            draw_options(seed, faults=("network", "crash")), nodes=3, hunt_leaders=0.7
        )

    result = first_failure(150, options, raft_class=CommitsOlderTermsByCounting)
    assert result is not None, "Figure 8 bug not found within 150 seeds"
    assert result.verdict in ("safety", "crash"), result.detail
    assert any(
        rule in result.detail
        for rule in ("leader completeness", "state machine safety", "durability", "committed")
    ), result.detail


def test_forgotten_vote_is_found() -> None:
    """Figure 2: votedFor must be on stable storage before the vote is answered.

    The double vote needs two candidates in one term (narrow election timeouts),
    a voter crashing right after granting (the nemesis's after-vote crashes), and
    the winner's appends failing to reach the rival candidate for a while (a
    lossy network): the profile draws those, everything else from the seed.
    """

    def options(seed: int) -> SimOptions:
        return with_overrides(
            draw_options(seed, faults=("crash",)),
            nodes=3,
            election_tick_max=17,
            network=NetworkProfile(1000, 1000, loss=0.3, duplicate=0.0, spike=0.0),
        )

    result = first_failure(250, options, raft_class=ForgetsVote)
    assert result is not None, "forgotten vote not found within 250 seeds"
    assert result.verdict == "safety"
    assert "election safety" in result.detail


def test_read_without_quorum_is_found() -> None:
    """Dissertation 6.4: a read index must be confirmed by a heartbeat quorum."""
    result = first_failure(150, draw_options, raft_class=ReadsWithoutQuorum)
    assert result is not None, "stale read not found within 150 seeds"
    assert result.verdict == "safety"
    assert "linearizable read" in result.detail


def test_lying_fsync_is_found() -> None:
    """Durable means fsynced: a disk that acknowledges early loses acknowledged entries."""

    def options(seed: int) -> SimOptions:
        return draw_options(seed, faults=("crash",))

    # Most runs end with nodes refusing to start on damaged files (the honest
    # outcome); the point is that acknowledged data is lost somewhere too.
    result = first_failure(150, options, disk=LyingDisk, verdicts=("safety", "crash"))
    assert result is not None, "lying fsync broke nothing within 150 seeds"


def test_liveness_failure_is_reported() -> None:
    result = run_seed(1, raft_class=NeverCampaigns)
    assert result.verdict == "liveness"
    assert "no convergence" in result.detail


def test_an_exception_is_reported_as_a_crash() -> None:
    class Explodes(Raft):
        def tick(self) -> None:
            raise RuntimeError("boom")

    result = run_seed(1, raft_class=Explodes)
    assert result.verdict == "crash"
    assert "RuntimeError: boom" in result.detail
