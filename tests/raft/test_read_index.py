"""Linearizable reads by read index (dissertation 6.4): the leader records its commit
index, confirms with a heartbeat round that it still leads, and only then answers;
it first commits an entry of its own term."""

from __future__ import annotations

import pytest

from herald.errors import NotLeaderError, UsageError
from herald.raft import Message, MessageType, ReadState, Role

from .harness import Cluster, describe

MT = MessageType


def elect(h: Cluster, node: int = 1) -> None:
    h.campaign(node)
    h.stabilize()
    assert h.leader() == node


def test_6_4_leader_answers_after_a_heartbeat_quorum() -> None:
    """Dissertation 6.4 steps 1-3: record commitIndex as the read index, send a round
    of heartbeats, answer once a majority acknowledged."""
    h = Cluster(5)
    elect(h)
    h.propose(1, b"a")
    h.stabilize()
    h.read_index(1, b"r1")
    rd = h.process_ready(1)
    assert rd is not None
    assert rd.read_states == ()
    assert [describe(m) for m in rd.messages] == [
        f"1->{i} HEARTBEAT t1 c2 ctx=r1" for i in (2, 3, 4, 5)
    ]
    h.take()
    h.step(1, Message(MT.HEARTBEAT_RESPONSE, 2, 1, term=1, context=b"r1"))
    h.process_all()
    assert h.peers[1].read_states == []  # the leader and one follower: 2 of 5
    h.step(1, Message(MT.HEARTBEAT_RESPONSE, 3, 1, term=1, context=b"r1"))
    h.process_all()
    assert h.peers[1].read_states == [ReadState(2, b"r1")]
    # Late acknowledgements change nothing.
    h.step(1, Message(MT.HEARTBEAT_RESPONSE, 4, 1, term=1, context=b"r1"))
    h.process_all()
    assert h.peers[1].read_states == [ReadState(2, b"r1")]


def test_6_4_heartbeat_responses_without_the_context_do_not_confirm() -> None:
    """Dissertation 6.4: only acknowledgements of *this* round count."""
    h = Cluster(3)
    elect(h)
    h.read_index(1, b"r1")
    h.process_ready(1)
    h.take()
    h.step(1, Message(MT.HEARTBEAT_RESPONSE, 2, 1, term=1))
    h.step(1, Message(MT.HEARTBEAT_RESPONSE, 3, 1, term=1, context=b"other"))
    h.process_all()
    assert h.peers[1].read_states == []


def test_6_4_later_round_releases_earlier_reads() -> None:
    """Dissertation 6.4: a quorum for a later read also vouches for earlier ones
    (each keeps its own read index)."""
    h = Cluster(3)
    elect(h)
    h.read_index(1, b"r1")
    h.process_ready(1)
    h.take()
    h.propose(1, b"a")
    h.stabilize()
    h.read_index(1, b"r2")
    h.process_ready(1)
    h.take()
    h.step(1, Message(MT.HEARTBEAT_RESPONSE, 3, 1, term=1, context=b"r2"))
    h.process_all()
    assert h.peers[1].read_states == [ReadState(1, b"r1"), ReadState(2, b"r2")]


def test_6_4_follower_forwards_read_and_gets_read_index_response() -> None:
    """Dissertation 6.4: a follower asks the leader for the read index, then waits
    until it has applied that index."""
    h = Cluster(3)
    elect(h)
    h.propose(1, b"a")
    h.stabilize()
    h.take_transcript()
    h.read_index(2, b"f1")
    assert h.stabilize() == [
        "2->1 READ_INDEX t1 ctx=f1",
        "1->2 HEARTBEAT t1 c2 ctx=f1",
        "1->3 HEARTBEAT t1 c2 ctx=f1",
        "2->1 HEARTBEAT_RESPONSE t1 ctx=f1",
        "3->1 HEARTBEAT_RESPONSE t1 ctx=f1",
        "1->2 READ_INDEX_RESPONSE t1 i2 ctx=f1",
    ]
    assert h.peers[2].read_states == [ReadState(2, b"f1")]
    assert h.peers[1].read_states == []


def test_6_4_read_is_deferred_until_the_leader_commits_in_its_term() -> None:
    """Dissertation 6.4 step 1: a new leader does not know the latest commit index
    until an entry of its term committed; a read arriving earlier waits for it, and
    is then served at the new commit index."""
    h = Cluster(3, logs={1: [1, 1], 2: [1, 1], 3: [1, 1]}, terms={1: 1, 2: 1, 3: 1})
    h.campaign(1)
    h.run_until(lambda: h.raft(1).role == Role.LEADER)
    assert h.raft(1).log.committed == 0
    h.read_index(1, b"early")
    assert h.raft(1).read_only.pending_count() == 0
    h.take_transcript()
    assert h.stabilize() == [
        "1->2 APPEND t2 i2 lt1 +1 c0",
        "1->3 APPEND t2 i2 lt1 +1 c0",
        "2->1 APPEND_RESPONSE t2 i3",
        "3->1 APPEND_RESPONSE t2 i3",
        # 2's answer commits the no-op: now the read can start its heartbeat round.
        "1->2 HEARTBEAT t2 c3 ctx=early",
        "1->3 HEARTBEAT t2 c0 ctx=early",
        "1->2 APPEND t2 i3 lt2 +0 c3",
        "1->3 APPEND t2 i3 lt2 +0 c3",
        "2->1 HEARTBEAT_RESPONSE t2 ctx=early",
        "2->1 APPEND_RESPONSE t2 i3",
        "3->1 HEARTBEAT_RESPONSE t2 ctx=early",
        "3->1 APPEND_RESPONSE t2 i3",
    ]
    assert h.peers[1].read_states == [ReadState(3, b"early")]


def test_6_4_forwarded_read_is_deferred_too() -> None:
    """Dissertation 6.4: the same deferral applies to reads forwarded by followers."""
    h = Cluster(3)
    h.campaign(1)
    h.run_until(lambda: h.raft(1).role == Role.LEADER)
    h.step(1, Message(MT.READ_INDEX, 2, 1, term=1, context=b"f"))
    assert h.raft(1).read_only.pending_count() == 0  # no heartbeat round yet
    assert h.raft(1).pending_reads == [(b"f", 2)]
    h.stabilize()
    assert h.raft(1).pending_reads == []
    assert h.peers[2].read_states == [ReadState(1, b"f")]


def test_6_4_partitioned_stale_leader_never_answers() -> None:
    """Dissertation 6.4: a leader cut off from the majority (which elected another
    leader) cannot complete a heartbeat round, so it never serves a stale read; when
    it rejoins it steps down and the read is dropped."""
    h = Cluster(3, check_quorum=False)
    elect(h)
    h.isolate(1)
    h.tick_all(60)
    new = h.leader()
    assert new in (2, 3)
    h.propose(new, b"newer")
    h.stabilize()
    assert h.raft(1).role == Role.LEADER  # it does not know
    h.read_index(1, b"stale")
    for _ in range(50):
        h.tick(1)
        h.stabilize()
    assert h.peers[1].read_states == []
    h.recover()
    h.tick_all(5)
    h.stabilize()
    assert h.raft(1).role == Role.FOLLOWER
    assert h.peers[1].read_states == []
    assert h.raft(1).read_only.pending_count() == 0


def test_6_4_single_node_answers_at_once() -> None:
    """Dissertation 6.4: with one voter there is nobody to ask; the read is answered
    from the commit index without a heartbeat round."""
    h = Cluster(1)
    h.campaign(1)
    h.stabilize()
    h.propose(1, b"a")
    h.stabilize()
    h.read_index(1, b"r")
    rd = h.process_ready(1)
    assert rd is not None
    assert rd.read_states == (ReadState(2, b"r"),)
    assert rd.messages == ()


def test_6_4_read_index_needs_a_context_and_a_known_leader() -> None:
    h = Cluster(3)
    with pytest.raises(NotLeaderError):
        h.read_index(2, b"r")
    elect(h)
    with pytest.raises(UsageError):
        h.read_index(2, b"")


def test_6_4_duplicate_context_is_answered_once() -> None:
    """A read context identifies one request; a duplicate while pending is ignored."""
    h = Cluster(3)
    elect(h)
    h.read_index(1, b"r")
    h.read_index(1, b"r")
    h.stabilize()
    assert h.peers[1].read_states == [ReadState(1, b"r")]


def test_6_4_single_node_restarted_with_stale_commit_waits_for_its_term() -> None:
    """Dissertation 6.4 step 1 holds for a cluster of one too. A commit-only hard-state
    write need not be fsynced (Ready contract), so after a crash the node may restart
    with a commit index below entries it had already applied and acknowledged. Its
    first read in the new term must wait until its no-op commits; answering at once
    from the stale commit index would miss the acknowledged write."""
    h = Cluster(1)
    h.campaign(1)
    h.stabilize()
    index = h.propose(1, b"acknowledged")
    h.stabilize()
    assert h.applied_data(1) == [b"acknowledged"]
    assert h.peers[1].synced_hard_state.commit < index  # the last commit was not fsynced
    h.crash(1, lose_unsynced=True)
    h.restart(1)
    assert h.raft(1).log.committed < index
    h.campaign(1)
    assert h.raft(1).role == Role.LEADER
    h.read_index(1, b"after-restart")
    h.stabilize()
    read_states = h.peers[1].read_states
    assert read_states == [ReadState(index + 1, b"after-restart")]
    assert read_states[0].index >= index
