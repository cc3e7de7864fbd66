"""Leadership transfer (dissertation 3.10): the leader brings the target up to date,
then sends TIMEOUT_NOW; the target campaigns at once, skipping pre-vote and the
lease; proposals are refused meanwhile; an unfinished transfer is abandoned after an
election timeout."""

from __future__ import annotations

import pytest

from herald.errors import NotLeaderError, ProposalDroppedError
from herald.raft import NONE, Role

from .harness import Cluster


def elect(h: Cluster, node: int = 1) -> None:
    h.campaign(node)
    h.stabilize()
    assert h.leader() == node


def test_3_10_transfer_to_up_to_date_follower() -> None:
    """Dissertation 3.10: an up-to-date target gets TIMEOUT_NOW at once, campaigns in
    the next term with the transfer flag (no pre-vote), and wins."""
    h = Cluster(3)
    elect(h)
    h.take_transcript()
    h.transfer(1, 2)
    assert h.stabilize()[:8] == [
        "1->2 TIMEOUT_NOW t1",
        "2->1 VOTE t2 i1 lt1 transfer",
        "2->3 VOTE t2 i1 lt1 transfer",
        "1->2 VOTE_RESPONSE t2",
        "3->2 VOTE_RESPONSE t2",
        "2->1 APPEND t2 i1 lt1 +1 c1",
        "2->3 APPEND t2 i1 lt1 +1 c1",
        "1->2 APPEND_RESPONSE t2 i2",
    ]
    assert h.leader() == 2
    assert [(h.raft(i).role, h.raft(i).term, h.raft(i).lead) for i in h.ids] == [
        (Role.FOLLOWER, 2, 2),
        (Role.LEADER, 2, 2),
        (Role.FOLLOWER, 2, 2),
    ]


def test_3_10_transfer_to_lagging_follower_catches_it_up_first() -> None:
    """Dissertation 3.10 step 2: the leader first replicates its log to the target;
    TIMEOUT_NOW follows only the acknowledgement that makes the target's log match
    (here one entry per append, so it takes several)."""
    h = Cluster(3, max_size_per_msg=1)
    elect(h)
    h.isolate(3)
    for i in range(3):
        h.propose(1, b"%d" % i)
    h.stabilize()
    h.recover()
    h.take_transcript()
    h.transfer(1, 3)
    assert h.raft(1).lead_transferee == 3
    lines = [line for line in h.stabilize() if line.startswith(("1->3", "3->1"))]
    assert lines[:10] == [
        "1->3 APPEND t1 i4 lt1 +0 c4",
        "3->1 APPEND_RESPONSE t1 i4 reject hint1 lt1",
        "1->3 APPEND t1 i1 lt1 +1 c4",
        "3->1 APPEND_RESPONSE t1 i2",
        "1->3 APPEND t1 i2 lt1 +1 c4",
        "1->3 APPEND t1 i3 lt1 +1 c4",
        "3->1 APPEND_RESPONSE t1 i3",
        "3->1 APPEND_RESPONSE t1 i4",
        "1->3 TIMEOUT_NOW t1",
        "3->1 VOTE t2 i4 lt1 transfer",
    ]
    assert h.leader() == 3
    assert h.raft(3).term == 2
    assert h.applied_data(3) == [b"0", b"1", b"2"]


def test_3_10_proposals_are_refused_during_transfer() -> None:
    """Dissertation 3.10: "the prior leader stops accepting new client requests" while
    the transfer is in progress."""
    h = Cluster(3)
    elect(h)
    h.isolate(3)
    h.transfer(1, 3)
    with pytest.raises(ProposalDroppedError):
        h.propose(1, b"x")
    assert h.raft(1).log.last_index() == 1


def test_3_10_transfer_is_abandoned_after_an_election_timeout() -> None:
    """Dissertation 3.10: if the transfer does not complete within an election
    timeout, the leader aborts it and accepts requests again."""
    h = Cluster(3)
    elect(h)
    h.isolate(3)
    h.transfer(1, 3)
    election_tick = h.raft(1).config.election_tick
    for _ in range(election_tick - 1):
        h.tick(1)
        h.stabilize()
    assert h.raft(1).lead_transferee == 3
    with pytest.raises(ProposalDroppedError):
        h.propose(1, b"x")
    h.tick(1)
    assert h.raft(1).lead_transferee == NONE
    assert h.raft(1).role == Role.LEADER
    assert h.propose(1, b"x") == 2


def test_3_10_transfer_to_self_or_stranger_is_ignored() -> None:
    """Transferring to oneself or to a node outside the group does nothing."""
    h = Cluster(3)
    elect(h)
    h.transfer(1, 1)
    h.transfer(1, 9)
    assert h.raft(1).lead_transferee == NONE
    assert h.propose(1, b"x") == 2


def test_3_10_only_the_leader_can_transfer() -> None:
    h = Cluster(3)
    elect(h)
    with pytest.raises(NotLeaderError) as info:
        h.transfer(2, 3)
    assert (info.value.leader, info.value.term) == (1, 1)


def test_3_10_retargeting_a_transfer_replaces_the_first() -> None:
    """A second transfer request to another node replaces the first one."""
    h = Cluster(3)
    elect(h)
    h.isolate(3)
    h.transfer(1, 3)
    h.recover()
    h.isolate(2)
    h.transfer(1, 2)
    assert h.raft(1).lead_transferee == 2
    h.recover()
    h.stabilize()
    assert h.leader() == 2


def test_3_10_timeout_now_skips_pre_vote_and_raises_term() -> None:
    """Dissertation 3.10: the target starts a real election right away (the leader
    vouched for its log), even with pre-vote configured."""
    h = Cluster(3)
    elect(h)
    h.transfer(1, 2)
    h.process_ready(1)
    h.deliver(to=2)
    raft = h.raft(2)
    assert (raft.role, raft.term, raft.vote, raft.campaign_transfer) == (Role.CANDIDATE, 2, 2, True)
