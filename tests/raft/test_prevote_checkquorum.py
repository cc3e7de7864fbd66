"""Pre-vote (dissertation 9.6) and check-quorum with the leader lease on votes
(dissertation 6.2 and 4.2.3): a partitioned node must not disrupt a healthy cluster,
and a partitioned leader must find out it no longer leads."""

from __future__ import annotations

from herald.raft import NONE, Message, MessageType, Role

from .harness import Cluster, describe

MT = MessageType


def elect(h: Cluster, node: int = 1) -> None:
    h.campaign(node)
    h.stabilize()
    assert h.leader() == node


def run_isolated(h: Cluster, node: int, ticks: int) -> list[str]:
    """Tick ``node`` alone (cut off from everyone); returns the types it tried to send."""
    h.isolate(node)
    for _ in range(ticks):
        h.tick(node)
        h.process_all()
        h.deliver()
    return sorted({line.split()[1] for line in h.dropped if line.startswith(f"{node}->")})


# -- pre-vote --------------------------------------------------------------------------------


def test_9_6_isolated_node_does_not_raise_its_term() -> None:
    """Dissertation 9.6: a node that cannot reach a majority keeps losing pre-elections
    and never increments its term, so it has nothing to disrupt anyone with."""
    h = Cluster(3)
    elect(h)
    sent = run_isolated(h, 3, 100)
    assert sent == ["PRE_VOTE"]
    assert h.raft(3).term == 1
    assert h.raft(3).role == Role.PRE_CANDIDATE
    assert h.peers[3].storage.hard_state.term == 1


def test_9_6_without_pre_vote_an_isolated_node_raises_its_term() -> None:
    """The contrast that makes the previous test meaningful: plain Raft candidates
    increment their term at every election timeout."""
    h = Cluster(3, pre_vote=False)
    elect(h)
    sent = run_isolated(h, 3, 100)
    assert sent == ["VOTE"]
    assert h.raft(3).term >= 4


def test_9_6_rejoining_node_does_not_disrupt_the_leader() -> None:
    """Dissertation 9.6 with the lease of 4.2.3: when the partitioned node rejoins
    with a log as up to date as anyone's, its pre-votes are ignored (the others hear
    from the leader), the leader's heartbeat brings it back as a follower, and the
    cluster keeps its leader and term."""
    h = Cluster(3)
    elect(h)
    run_isolated(h, 3, 100)
    h.recover()
    h.tick_all(40)
    h.stabilize()
    assert h.leader() == 1
    assert [h.raft(i).term for i in h.ids] == [1, 1, 1]
    assert [h.raft(i).lead for i in h.ids] == [1, 1, 1]
    h.propose(1, b"still here")
    h.stabilize()
    assert h.applied_data(3) == [b"still here"]


def test_9_6_pre_vote_alone_stops_a_rejoining_node_with_a_stale_log() -> None:
    """Dissertation 9.6 without the lease: the cluster moved on while the node was away,
    so its log is behind and its pre-vote is refused on log grounds; its term stays."""
    h = Cluster(3, check_quorum=False)
    elect(h)
    h.isolate(3)
    h.propose(1, b"while away")
    h.stabilize()
    run_isolated(h, 3, 100)
    h.recover()
    h.take_transcript()
    for _ in range(40):
        h.tick(3)
        h.stabilize()
    assert h.leader() == 1
    assert [h.raft(i).term for i in h.ids] == [1, 1, 1]
    answers = [line for line in h.transcript if "PRE_VOTE_RESPONSE" in line]
    assert answers[:2] == ["1->3 PRE_VOTE_RESPONSE t1 reject", "2->3 PRE_VOTE_RESPONSE t1 reject"]
    assert all(line.endswith("reject") for line in answers)
    h.tick(1)
    h.stabilize()
    assert h.applied_data(3) == [b"while away"]


def test_9_6_without_pre_vote_the_rejoining_node_deposes_the_leader() -> None:
    """The contrast: without pre-vote (and without check-quorum's lease) the rejoining
    node's higher term forces a new election."""
    h = Cluster(3, pre_vote=False, check_quorum=False)
    elect(h)
    run_isolated(h, 3, 100)
    stale_term = h.raft(3).term
    h.recover()
    h.tick_all(40)
    h.stabilize()
    assert h.raft(1).term >= stale_term > 1


def test_9_6_pre_vote_request_carries_next_term_without_changing_state() -> None:
    """Dissertation 9.6: the pre-candidate asks with term + 1 but keeps its term and
    vote; only after winning the pre-vote does it become a candidate."""
    h = Cluster(3, terms={1: 4, 2: 4, 3: 4})
    h.campaign(1)
    raft = h.raft(1)
    assert (raft.role, raft.term, raft.vote) == (Role.PRE_CANDIDATE, 4, NONE)
    rd = h.process_ready(1)
    assert rd is not None
    assert [describe(m) for m in rd.messages] == [
        "1->2 PRE_VOTE t5 i0 lt0",
        "1->3 PRE_VOTE t5 i0 lt0",
    ]
    h.deliver()
    h.process_all()
    assert (h.raft(2).term, h.raft(2).vote) == (4, NONE)
    h.deliver()
    assert (raft.role, raft.term, raft.vote) == (Role.CANDIDATE, 5, 1)


def test_9_6_rejected_pre_vote_from_higher_term_makes_pre_candidate_follow() -> None:
    """Section 5.1 applies to pre-vote answers too: a rejection from a later term
    moves the pre-candidate to that term as a follower."""
    h = Cluster(3)
    h.campaign(1)
    h.process_ready(1)
    h.step(1, Message(MT.PRE_VOTE_RESPONSE, 2, 1, term=7, reject=True))
    raft = h.raft(1)
    assert (raft.role, raft.term, raft.lead) == (Role.FOLLOWER, 7, NONE)


def test_9_6_pre_candidate_losing_majority_returns_to_follower() -> None:
    """Dissertation 9.6: a pre-candidate refused by a majority gives up without a trace."""
    h = Cluster(3, logs={2: [1, 1], 3: [1, 1]})
    h.campaign(1)
    h.stabilize()
    raft = h.raft(1)
    assert (raft.role, raft.term, raft.vote) == (Role.FOLLOWER, 1, NONE)
    assert [h.raft(i).term for i in h.ids] == [1, 1, 1]


# -- check-quorum and the lease ---------------------------------------------------------------


def test_6_2_isolated_leader_steps_down_within_election_tick() -> None:
    """Dissertation 6.2: a leader that hears from no majority during a whole election
    timeout steps down. Cut off at the start of a check window (its heartbeats of that
    tick lost), it leads for election_tick - 1 more ticks and is a follower of nobody
    at tick election_tick."""
    h = Cluster(3)
    elect(h)
    election_tick = h.raft(1).config.election_tick
    for _ in range(election_tick):
        if h.raft(1).election_elapsed == election_tick - 1:
            break
        h.tick(1)
        h.stabilize()
    h.tick(1)  # the check passes (the followers answered), a new window starts
    assert (h.raft(1).role, h.raft(1).election_elapsed) == (Role.LEADER, 0)
    h.isolate(1)
    for _ in range(election_tick - 1):
        h.tick(1)
        h.stabilize()
    assert h.raft(1).role == Role.LEADER
    h.tick(1)
    raft = h.raft(1)
    assert (raft.role, raft.lead, raft.term) == (Role.FOLLOWER, NONE, 1)


def test_6_2_isolated_leader_steps_down_within_two_windows_wherever_cut() -> None:
    """Dissertation 6.2: whenever the partition starts, at most two check windows
    (2 * election_tick ticks) pass before the leader steps down."""
    for offset in range(10):
        h = Cluster(3)
        elect(h)
        for _ in range(offset):
            h.tick(1)
            h.stabilize()
        h.isolate(1)
        for _ in range(2 * h.raft(1).config.election_tick):
            h.tick(1)
            h.stabilize()
            if h.raft(1).role != Role.LEADER:
                break
        assert h.raft(1).role == Role.FOLLOWER


def test_6_2_connected_leader_never_steps_down() -> None:
    """The contrast: a leader that hears from its followers keeps leading."""
    h = Cluster(3)
    elect(h)
    h.tick_all(200)
    assert h.leader() == 1
    assert h.raft(1).term == 1


def test_6_2_without_check_quorum_isolated_leader_keeps_leading() -> None:
    """The contrast: with check_quorum off the partitioned leader never notices."""
    h = Cluster(3, check_quorum=False)
    elect(h)
    h.isolate(1)
    for _ in range(100):
        h.tick(1)
        h.stabilize()
    assert h.raft(1).role == Role.LEADER


def test_6_2_follower_in_lease_ignores_higher_term_vote_request() -> None:
    """Dissertation 4.2.3/6.2: a follower that heard from a leader within the minimum
    election timeout ignores RequestVote, even of a higher term: no term change,
    no answer."""
    h = Cluster(3)
    elect(h)
    h.step(2, Message(MT.VOTE, 3, 2, term=5, index=99, log_term=9))
    raft = h.raft(2)
    assert (raft.term, raft.vote, raft.lead) == (1, 1, 1)
    assert h.process_ready(2) is None


def test_6_2_leader_in_lease_ignores_higher_term_vote_request() -> None:
    """Dissertation 6.2: the lease applies to the leader itself."""
    h = Cluster(3)
    elect(h)
    h.step(1, Message(MT.VOTE, 3, 1, term=5, index=99, log_term=9))
    assert (h.raft(1).role, h.raft(1).term) == (Role.LEADER, 1)


def test_6_2_follower_in_lease_ignores_pre_vote_too() -> None:
    """Dissertation 9.6 with 6.2: pre-votes are also ignored while the lease holds."""
    h = Cluster(3)
    elect(h)
    h.step(2, Message(MT.PRE_VOTE, 3, 2, term=2, index=99, log_term=9))
    assert h.process_ready(2) is None


def test_6_2_transfer_flag_overrides_the_lease() -> None:
    """Dissertation 3.10 with 6.2: a campaign started by leadership transfer is
    honoured although the follower still hears the old leader."""
    h = Cluster(3)
    elect(h)
    h.step(2, Message(MT.VOTE, 3, 2, term=2, index=1, log_term=1, transfer=True))
    raft = h.raft(2)
    assert (raft.term, raft.vote, raft.lead) == (2, 3, NONE)
    rd = h.process_ready(2)
    assert rd is not None
    assert [describe(m) for m in rd.persisted_messages] == ["2->3 VOTE_RESPONSE t2"]


def test_6_2_vote_is_considered_once_the_lease_expired() -> None:
    """Dissertation 6.2: after election_tick ticks without the leader the follower
    listens to candidates again."""
    h = Cluster(3, election_tick=10, election_tick_max=30)
    elect(h)
    h.isolate(1)
    h.tick(2, 9)
    h.step(2, Message(MT.VOTE, 3, 2, term=2, index=1, log_term=1))
    assert h.raft(2).term == 1
    h.tick(2)
    h.step(2, Message(MT.VOTE, 3, 2, term=2, index=1, log_term=1))
    assert (h.raft(2).term, h.raft(2).vote) == (2, 3)


def test_6_2_without_check_quorum_there_is_no_lease() -> None:
    """The contrast: with check_quorum off a follower that knows a leader still moves
    to a higher term on RequestVote."""
    h = Cluster(3, check_quorum=False)
    elect(h)
    h.step(2, Message(MT.VOTE, 3, 2, term=5, index=1, log_term=1))
    assert (h.raft(2).term, h.raft(2).vote) == (5, 3)


def test_6_2_minority_partition_cannot_elect_and_majority_moves_on() -> None:
    """Dissertation 6.2 end to end, five nodes split 2/3: the old leader in the
    minority steps down, the majority elects a new leader, and after healing
    everyone follows it with no entry lost."""
    h = Cluster(5)
    elect(h)
    h.propose(1, b"a")
    h.stabilize()
    for a in (1, 2):
        for b in (3, 4, 5):
            h.cut(a, b)
    h.tick_all(80)
    new = h.leader()
    assert new in (3, 4, 5)
    assert h.raft(1).role != Role.LEADER
    assert h.raft(1).term == 1 and h.raft(2).term == 1
    h.propose(new, b"b")
    h.stabilize()
    h.recover()
    h.tick_all(30)
    h.stabilize()
    assert h.leader() == new
    assert all(h.applied_data(i) == [b"a", b"b"] for i in h.ids)
    assert h.safety_violations() == []
