"""Leader election: Raft paper sections 5.1, 5.2 and 5.4.1 (Figure 2, RequestVote and
Rules for Servers)."""

from __future__ import annotations

import random

import pytest

from herald.raft import NONE, Config, MemoryStorage, Message, MessageType, RawNode, Role
from herald.raft.quorum import VoteResult, quorum_size, vote_result

from .harness import Cluster, case_id, describe

MT = MessageType

# The paper's algorithm without the dissertation's extensions, so that a
# single crafted message shows one rule at a time.
PAPER = {"pre_vote": False, "check_quorum": False}


def elect(h: Cluster, node: int = 1) -> None:
    h.campaign(node)
    h.stabilize()
    assert h.leader() == node


def take_ready(h: Cluster, node: int) -> tuple[list[str], list[str]]:
    """Process one Ready; return (messages, persisted_messages) as transcript lines."""
    rd = h.process_ready(node)
    assert rd is not None
    return [describe(m) for m in rd.messages], [describe(m) for m in rd.persisted_messages]


def make_candidate(h: Cluster, node: int = 1) -> None:
    h.campaign(node)
    h.process_ready(node)
    h.take(frm=node)
    assert h.raft(node).role == Role.CANDIDATE


# -- 5.1: terms ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.FOLLOWER, Role.CANDIDATE, Role.LEADER], ids=case_id)
def test_5_1_higher_term_append_makes_any_role_follower_of_sender(role: Role) -> None:
    """Figure 2, all servers: a message with term T > currentTerm sets currentTerm = T
    and converts the receiver to follower; an APPEND also names the leader."""
    h = Cluster(3, **PAPER)
    if role == Role.CANDIDATE:
        make_candidate(h)
    elif role == Role.LEADER:
        elect(h)
    h.step(1, Message(MT.APPEND, 2, 1, term=5, index=0, log_term=0))
    raft = h.raft(1)
    assert (raft.role, raft.term, raft.lead, raft.vote) == (Role.FOLLOWER, 5, 2, NONE)


@pytest.mark.parametrize("role", [Role.FOLLOWER, Role.CANDIDATE, Role.LEADER], ids=case_id)
def test_5_1_higher_term_vote_request_makes_any_role_follower_without_leader(role: Role) -> None:
    """Figure 2, all servers: a VOTE with a higher term converts to follower; no leader
    is known in the new term (and the vote is granted, the log being up to date)."""
    h = Cluster(3, **PAPER)
    if role == Role.CANDIDATE:
        make_candidate(h)
    elif role == Role.LEADER:
        elect(h)
    last = h.raft(1).log.last_index()
    h.step(1, Message(MT.VOTE, 3, 1, term=7, index=last, log_term=h.raft(1).log.last_term()))
    raft = h.raft(1)
    assert (raft.role, raft.term, raft.lead, raft.vote) == (Role.FOLLOWER, 7, NONE, 3)


def test_5_1_higher_term_response_deposes_leader() -> None:
    """Figure 2, all servers: responses count too: a leader that learns of a higher
    term from an APPEND_RESPONSE steps down."""
    h = Cluster(3, **PAPER)
    elect(h)
    h.step(1, Message(MT.APPEND_RESPONSE, 2, 1, term=4, index=1))
    raft = h.raft(1)
    assert (raft.role, raft.term, raft.lead) == (Role.FOLLOWER, 4, NONE)


def test_5_1_stale_term_append_is_answered_with_the_current_term_in_paper_mode() -> None:
    """Figure 2, AppendEntries receiver rule 1: "Reply false if term < currentTerm";
    the reply carries our term and nothing changes locally."""
    h = Cluster(3, **PAPER, terms={1: 3})
    h.step(1, Message(MT.APPEND, 2, 1, term=2, index=0, log_term=0, entries=()))
    raft = h.raft(1)
    assert (raft.term, raft.lead, raft.log.last_index()) == (3, NONE, 0)
    messages, persisted = take_ready(h, 1)
    assert messages == []
    assert persisted == ["1->2 APPEND_RESPONSE t3 i0"]


def test_5_1_stale_term_append_gets_current_term_back_with_prevote_or_check_quorum() -> None:
    """Section 5.1 ("the sender updates its term from the reply"): with pre-vote or
    check-quorum a deposed leader could never learn the new term otherwise, so the
    stale APPEND is answered with the current term and nothing is appended."""
    h = Cluster(3, terms={1: 3})
    h.step(1, Message(MT.APPEND, 2, 1, term=2, index=0, log_term=0, commit=0))
    messages, persisted = take_ready(h, 1)
    assert messages == []
    assert persisted == ["1->2 APPEND_RESPONSE t3 i0"]
    assert h.raft(1).log.last_index() == 0


def test_5_1_stale_leader_steps_down_when_it_hears_the_new_term() -> None:
    """Section 5.1: a leader that was partitioned away (and, without check-quorum,
    does not notice) sees the newer term in the reply to its heartbeat and steps
    down. With pre-vote on, that reply is the only way it can learn the term."""
    h = Cluster(3, check_quorum=False)
    elect(h)
    h.isolate(1)
    h.tick_all(60)
    h.stabilize()
    new = h.raft(2).lead
    assert new in (2, 3)
    new_term = h.raft(new).term
    assert (h.raft(1).role, h.raft(1).term) == (Role.LEADER, 1)
    h.recover()
    h.take_transcript()
    h.tick(1)
    h.stabilize()
    assert h.transcript[:2] == ["1->2 HEARTBEAT t1 c1", "1->3 HEARTBEAT t1 c1"]
    assert h.transcript[2:4] == [
        f"2->1 APPEND_RESPONSE t{new_term} i0",
        f"3->1 APPEND_RESPONSE t{new_term} i0",
    ]
    assert (h.raft(1).role, h.raft(1).term) == (Role.FOLLOWER, new_term)


@pytest.mark.parametrize("kind", [MT.VOTE, MT.VOTE_RESPONSE, MT.HEARTBEAT_RESPONSE], ids=case_id)
def test_5_1_stale_term_messages_are_ignored(kind: MessageType) -> None:
    """Section 5.1: stale-term votes and responses change nothing and get no reply."""
    h = Cluster(3, **PAPER, terms={1: 3})
    make_candidate(h)  # term 4
    before = (h.raft(1).term, h.raft(1).vote, dict(h.raft(1).votes))
    h.step(1, Message(kind, 2, 1, term=2))
    assert (h.raft(1).term, h.raft(1).vote, dict(h.raft(1).votes)) == before
    assert h.process_ready(1) is None


def test_5_1_stale_pre_vote_is_rejected_with_current_term() -> None:
    """Dissertation 9.6 with 5.1: a pre-vote from a stale term gets a rejection that
    carries our term, so the pre-candidate learns it is behind."""
    h = Cluster(3, terms={1: 5})
    h.step(1, Message(MT.PRE_VOTE, 2, 1, term=3, index=9, log_term=2))
    messages, persisted = take_ready(h, 1)
    assert messages == ["1->2 PRE_VOTE_RESPONSE t5 reject"]
    assert persisted == []


# -- 5.2: leader election ----------------------------------------------------------------


def test_5_2_nodes_start_as_followers_without_leader() -> None:
    """Section 5.2: "When servers start up, they begin as followers"."""
    h = Cluster(5)
    for node in h.ids:
        raft = h.raft(node)
        assert (raft.role, raft.term, raft.vote, raft.lead) == (Role.FOLLOWER, 0, NONE, NONE)
        assert not h.node(node).has_ready()


@pytest.mark.parametrize("seed", range(6))
def test_5_2_election_timeout_is_drawn_from_the_injected_rng(seed: int) -> None:
    """Section 5.2: election timeouts are chosen randomly from a fixed interval, here
    [election_tick, election_tick_max], using only the injected random.Random."""
    config = Config(id=1, voters=(1, 2, 3), election_tick=10, election_tick_max=16)
    expected = random.Random(seed).randint(10, 16)
    node = RawNode(config, MemoryStorage((1, 2, 3)), random.Random(seed))
    assert node.raft.randomized_election_timeout == expected
    for _ in range(expected - 1):
        node.tick()
    assert node.raft.role == Role.FOLLOWER
    node.tick()
    assert node.raft.role == Role.PRE_CANDIDATE


def test_5_2_election_timeouts_cover_the_interval_and_stay_in_it() -> None:
    """Section 5.2: the randomized timeout spreads over [election_tick, election_tick_max]
    and never leaves it; a new value is drawn at every term change."""
    seen = set()
    for seed in range(40):
        rng = random.Random(seed)
        config = Config(id=1, voters=(1, 2, 3), election_tick=5, election_tick_max=8)
        node = RawNode(config, MemoryStorage((1, 2, 3)), rng)
        first = node.raft.randomized_election_timeout
        mirror = random.Random(seed)
        assert first == mirror.randint(5, 8)
        node.raft.become_follower(1, NONE)
        assert node.raft.randomized_election_timeout == mirror.randint(5, 8)
        seen.add(first)
    assert seen == {5, 6, 7, 8}


def test_5_2_default_election_tick_max_is_twice_election_tick_minus_one() -> None:
    """Section 9.3 of the paper suggests 150-300 ms: max defaults to 2*election_tick-1."""
    values = set()
    for seed in range(200):
        config = Config(id=1, voters=(1, 2), election_tick=3)
        node = RawNode(config, MemoryStorage((1, 2)), random.Random(seed))
        values.add(node.raft.randomized_election_timeout)
    assert values == {3, 4, 5}


def test_5_2_candidate_increments_term_votes_for_itself_and_requests_votes() -> None:
    """Section 5.2 / Figure 2, candidates: increment currentTerm, vote for self, send
    RequestVote (with last log index and term) to all other servers."""
    h = Cluster(3, **PAPER, logs={1: [1, 1, 2]}, terms={1: 2})
    h.campaign(1)
    raft = h.raft(1)
    assert (raft.role, raft.term, raft.vote) == (Role.CANDIDATE, 3, 1)
    messages, persisted = take_ready(h, 1)
    assert messages == []
    assert persisted == ["1->2 VOTE t3 i3 lt2", "1->3 VOTE t3 i3 lt2"]


def test_5_2_follower_times_out_and_starts_election() -> None:
    """Section 5.2: a follower that hears nothing for an election timeout becomes a
    candidate (no pre-vote here)."""
    h = Cluster(3, **PAPER)
    timeout = h.raft(2).randomized_election_timeout
    h.tick(2, timeout - 1)
    assert h.raft(2).role == Role.FOLLOWER
    h.tick(2)
    assert (h.raft(2).role, h.raft(2).term) == (Role.CANDIDATE, 1)


VOTE_OUTCOMES = [
    # size, responses from the other voters (True = granted), expected role
    (1, {}, Role.LEADER),
    (2, {2: True}, Role.LEADER),
    (2, {2: False}, Role.FOLLOWER),
    (2, {}, Role.CANDIDATE),
    (3, {2: True, 3: True}, Role.LEADER),
    (3, {2: True}, Role.LEADER),
    (3, {2: False, 3: True}, Role.LEADER),
    (3, {2: False}, Role.CANDIDATE),
    (3, {2: False, 3: False}, Role.FOLLOWER),
    (3, {}, Role.CANDIDATE),
    (4, {2: True}, Role.CANDIDATE),
    (4, {2: True, 3: True}, Role.LEADER),
    (4, {2: False, 3: False}, Role.FOLLOWER),
    (4, {2: True, 3: False, 4: False}, Role.FOLLOWER),
    (5, {2: True, 3: True, 4: True, 5: True}, Role.LEADER),
    (5, {2: True, 3: True}, Role.LEADER),
    (5, {2: True}, Role.CANDIDATE),
    (5, {2: False, 3: False}, Role.CANDIDATE),
    (5, {2: True, 3: False, 4: False}, Role.CANDIDATE),
    (5, {2: True, 3: False, 4: False, 5: False}, Role.FOLLOWER),
    (5, {2: False, 3: False, 4: False}, Role.FOLLOWER),
]


@pytest.mark.parametrize(("size", "responses", "expected"), VOTE_OUTCOMES, ids=case_id)
def test_5_2_vote_outcomes(size: int, responses: dict[int, bool], expected: Role) -> None:
    """Section 5.2: a candidate wins with votes from a majority, steps down once a
    majority refused, and otherwise keeps waiting."""
    h = Cluster(size, **PAPER)
    h.campaign(1)
    h.process_ready(1)
    for voter, granted in responses.items():
        h.step(1, Message(MT.VOTE_RESPONSE, voter, 1, term=1, reject=not granted))
    assert h.raft(1).role == expected
    assert h.raft(1).term == 1


@pytest.mark.parametrize(("size", "responses", "expected"), VOTE_OUTCOMES, ids=case_id)
def test_5_2_vote_result_arithmetic(size: int, responses: dict[int, bool], expected: Role) -> None:
    """The quorum module agrees with the outcome table (the candidate's own vote included)."""
    votes = {1: True, **responses}
    as_result = {
        Role.LEADER: VoteResult.WON,
        Role.FOLLOWER: VoteResult.LOST,
        Role.CANDIDATE: VoteResult.PENDING,
    }
    assert vote_result(tuple(range(1, size + 1)), votes) == as_result[expected]


@pytest.mark.parametrize(("voters", "quorum"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)])
def test_5_2_majority_sizes(voters: int, quorum: int) -> None:
    """Section 5.2: "a majority of the servers in the full cluster"."""
    assert quorum_size(voters) == quorum


def test_5_2_duplicate_vote_responses_count_once() -> None:
    """Section 5.2: a candidate needs votes from a majority of distinct servers;
    a retransmitted grant is not counted twice, and a voter's first answer in the
    term stands (a grant is a durable promise for the term)."""
    h = Cluster(5, **PAPER)
    make_candidate(h)
    for _ in range(3):
        h.step(1, Message(MT.VOTE_RESPONSE, 2, 1, term=1))
    h.step(1, Message(MT.VOTE_RESPONSE, 2, 1, term=1, reject=True))
    assert h.raft(1).votes == {1: True, 2: True}
    assert h.raft(1).role == Role.CANDIDATE
    h.step(1, Message(MT.VOTE_RESPONSE, 3, 1, term=1))
    assert h.raft(1).role == Role.LEADER


def test_5_2_one_vote_per_term_first_come_first_served() -> None:
    """Section 5.2: each server votes for at most one candidate in a given term, on a
    first-come-first-served basis; repeating the grant to the same candidate is fine."""
    h = Cluster(3, **PAPER)
    h.step(1, Message(MT.VOTE, 2, 1, term=1, index=0, log_term=0))
    h.step(1, Message(MT.VOTE, 3, 1, term=1, index=0, log_term=0))
    h.step(1, Message(MT.VOTE, 2, 1, term=1, index=0, log_term=0))
    messages, persisted = take_ready(h, 1)
    assert messages == []
    assert persisted == [
        "1->2 VOTE_RESPONSE t1",
        "1->3 VOTE_RESPONSE t1 reject",
        "1->2 VOTE_RESPONSE t1",
    ]
    assert (h.raft(1).term, h.raft(1).vote) == (1, 2)
    assert h.node(1).status().vote == 2


def test_5_2_vote_in_a_new_term_is_free_again() -> None:
    """Section 5.2: the one-vote rule is per term; a higher term resets the vote."""
    h = Cluster(3, **PAPER)
    h.step(1, Message(MT.VOTE, 2, 1, term=1))
    h.step(1, Message(MT.VOTE, 3, 1, term=2))
    _, persisted = take_ready(h, 1)
    assert persisted == ["1->2 VOTE_RESPONSE t1", "1->3 VOTE_RESPONSE t2"]
    assert (h.raft(1).term, h.raft(1).vote) == (2, 3)


def test_5_2_follower_that_knows_a_leader_refuses_votes_of_that_term() -> None:
    """Section 5.2: a follower that accepted a leader for the term cannot vote for
    another candidate of the same term."""
    h = Cluster(3, **PAPER)
    h.step(1, Message(MT.APPEND, 2, 1, term=1, index=0, log_term=0))
    h.process_ready(1)
    h.step(1, Message(MT.VOTE, 3, 1, term=1))
    _, persisted = take_ready(h, 1)
    assert persisted == ["1->3 VOTE_RESPONSE t1 reject"]


def test_5_2_candidate_steps_down_on_append_of_its_term() -> None:
    """Section 5.2: a candidate that receives AppendEntries from a leader whose term is
    at least as large as its own recognizes the leader and returns to follower."""
    h = Cluster(3, **PAPER)
    make_candidate(h)
    h.step(1, Message(MT.APPEND, 2, 1, term=1, index=0, log_term=0, commit=0))
    raft = h.raft(1)
    assert (raft.role, raft.term, raft.lead, raft.vote) == (Role.FOLLOWER, 1, 2, 1)
    _, persisted = take_ready(h, 1)
    assert persisted == ["1->2 APPEND_RESPONSE t1 i0"]


def test_5_2_candidate_steps_down_on_heartbeat_of_its_term() -> None:
    """Section 5.2: a heartbeat is an empty AppendEntries, with the same effect."""
    h = Cluster(3, **PAPER)
    make_candidate(h)
    h.step(1, Message(MT.HEARTBEAT, 3, 1, term=1, commit=0))
    assert (h.raft(1).role, h.raft(1).lead) == (Role.FOLLOWER, 3)


def test_5_2_candidate_ignores_append_of_older_term() -> None:
    """Section 5.2: "If the term in the RPC is smaller than the candidate's current
    term, then the candidate rejects the RPC and continues in candidate state"."""
    h = Cluster(3, **PAPER, terms={1: 4})
    make_candidate(h)
    h.step(1, Message(MT.APPEND, 2, 1, term=3, index=0, log_term=0))
    assert (h.raft(1).role, h.raft(1).term) == (Role.CANDIDATE, 5)


def test_5_2_split_vote_is_resolved_by_randomized_timeouts() -> None:
    """Section 5.2: two candidates split a four-node cluster's votes two to two; both
    lose the term, and the randomized timeouts elect a single leader in a later term."""
    h = Cluster(4, **PAPER)
    h.campaign(1)
    h.campaign(3)
    h.process_all()
    # 2 hears from 1 first, 4 from 3 first: two votes each.
    h.deliver(to=2, frm=1)
    h.deliver(to=4, frm=3)
    h.stabilize()
    assert h.leader() is None
    assert [(h.raft(i).role, h.raft(i).vote) for i in h.ids] == [
        (Role.FOLLOWER, 1),
        (Role.FOLLOWER, 1),
        (Role.FOLLOWER, 3),
        (Role.FOLLOWER, 3),
    ]
    for _ in range(100):
        h.tick_all()
        h.stabilize()
        if h.leader() is not None:
            break
    leader = h.leader()
    assert leader is not None
    assert h.raft(leader).term >= 2
    assert [h.raft(i).role for i in h.ids].count(Role.LEADER) == 1
    assert {h.raft(i).lead for i in h.ids} == {leader}


def test_5_2_candidate_retransmits_vote_requests_to_silent_voters() -> None:
    """Section 5.1 ("servers retry RPCs if they do not receive a response"): every
    heartbeat tick a candidate repeats its request to the voters that have not
    answered, and only to them."""
    h = Cluster(5, **PAPER, heartbeat_tick=2)
    make_candidate(h)
    h.step(1, Message(MT.VOTE_RESPONSE, 2, 1, term=1))
    h.step(1, Message(MT.VOTE_RESPONSE, 3, 1, term=1, reject=True))
    h.tick(1)
    assert h.process_ready(1) is None
    h.tick(1)
    _, persisted = take_ready(h, 1)
    assert persisted == ["1->4 VOTE t1 i0 lt0", "1->5 VOTE t1 i0 lt0"]
    h.step(1, Message(MT.VOTE_RESPONSE, 4, 1, term=1))
    assert h.raft(1).role == Role.LEADER


def test_5_2_lost_vote_requests_do_not_cost_an_election_timeout() -> None:
    """Section 5.1/5.2: with every first VOTE lost, the retransmission still elects
    the candidate in the same term, before its election timeout."""
    h = Cluster(3, **PAPER)
    h.campaign(1)
    h.process_ready(1)
    assert len(h.take(frm=1, types=[MT.VOTE])) == 2
    h.tick(1)
    h.stabilize()
    assert h.leader() == 1
    assert h.raft(1).term == 1


def test_5_2_candidate_that_times_out_starts_a_new_term() -> None:
    """Section 5.2: "If election timeout elapses: start new election" (term + 1)."""
    h = Cluster(3, **PAPER)
    make_candidate(h)
    h.tick(1, h.raft(1).randomized_election_timeout)
    assert (h.raft(1).role, h.raft(1).term, h.raft(1).vote) == (Role.CANDIDATE, 2, 1)


def test_5_2_single_node_elects_itself() -> None:
    """Section 5.2 with a cluster of one: its own vote is a majority."""
    h = Cluster(1)
    h.campaign(1)
    assert (h.raft(1).role, h.raft(1).term) == (Role.LEADER, 1)
    h.stabilize()
    assert h.raft(1).log.committed == 1


def test_5_2_a_full_election_transcript() -> None:
    """Section 5.2 end to end, default configuration (pre-vote first)."""
    h = Cluster(3)
    h.campaign(1)
    assert h.stabilize() == [
        "1->2 PRE_VOTE t1 i0 lt0",
        "1->3 PRE_VOTE t1 i0 lt0",
        "2->1 PRE_VOTE_RESPONSE t1",
        "3->1 PRE_VOTE_RESPONSE t1",
        "1->2 VOTE t1 i0 lt0",
        "1->3 VOTE t1 i0 lt0",
        "2->1 VOTE_RESPONSE t1",
        "3->1 VOTE_RESPONSE t1",
        "1->2 APPEND t1 i0 lt0 +1 c0",
        "1->3 APPEND t1 i0 lt0 +1 c0",
        "2->1 APPEND_RESPONSE t1 i1",
        "3->1 APPEND_RESPONSE t1 i1",
        "1->2 APPEND t1 i1 lt1 +0 c1",
        "1->3 APPEND t1 i1 lt1 +0 c1",
        "2->1 APPEND_RESPONSE t1 i1",
        "3->1 APPEND_RESPONSE t1 i1",
    ]
    assert [h.raft(i).log.committed for i in h.ids] == [1, 1, 1]


# -- 5.4.1: election restriction ---------------------------------------------------------

# The voter's log is [1, 1, 2] (last index 3, last term 2).
UP_TO_DATE = [
    # candidate's last term, last index, granted
    (1, 1, False),
    (1, 3, False),
    (1, 9, False),
    (2, 2, False),
    (2, 3, True),
    (2, 4, True),
    (3, 1, True),
    (3, 3, True),
    (3, 5, True),
]


@pytest.mark.parametrize(("last_term", "last_index", "granted"), UP_TO_DATE)
def test_5_4_1_vote_granted_only_to_up_to_date_candidates(
    last_term: int, last_index: int, granted: bool
) -> None:
    """Section 5.4.1: grant only if the candidate's log is at least as up-to-date:
    a later last term wins; with equal last terms, the longer log wins."""
    h = Cluster(3, **PAPER, logs={1: [1, 1, 2]})
    h.step(1, Message(MT.VOTE, 2, 1, term=3, index=last_index, log_term=last_term))
    _, persisted = take_ready(h, 1)
    assert persisted == ["1->2 VOTE_RESPONSE t3" + ("" if granted else " reject")]
    assert h.raft(1).vote == (2 if granted else NONE)
    assert h.raft(1).term == 3


@pytest.mark.parametrize(("last_term", "last_index", "granted"), UP_TO_DATE)
def test_5_4_1_pre_vote_uses_the_same_up_to_date_check(
    last_term: int, last_index: int, granted: bool
) -> None:
    """Dissertation 9.6: a pre-vote is granted exactly when the real vote would be,
    and changes neither term nor vote."""
    h = Cluster(3, logs={1: [1, 1, 2]})
    h.step(1, Message(MT.PRE_VOTE, 2, 1, term=3, index=last_index, log_term=last_term))
    messages, _ = take_ready(h, 1)
    if granted:
        assert messages == ["1->2 PRE_VOTE_RESPONSE t3"]
    else:
        assert messages == ["1->2 PRE_VOTE_RESPONSE t2 reject"]
    assert (h.raft(1).term, h.raft(1).vote) == (2, NONE)


def test_5_4_1_node_with_stale_log_cannot_win() -> None:
    """Section 5.4.1: a candidate missing a committed entry cannot collect a majority."""
    h = Cluster(3, **PAPER)
    elect(h)
    h.isolate(3)
    h.propose(1, b"committed")
    h.stabilize()
    assert h.raft(1).log.committed == 2
    h.recover()
    h.crash(1)
    h.campaign(3)
    h.stabilize()
    # 2 refuses; 1 is down: 3 can never reach a majority in this term.
    assert h.raft(3).votes == {3: True, 2: False}
    assert h.leader() is None
    h.campaign(2)
    h.stabilize()
    assert h.leader() == 2
    assert h.applied_data(3) == [b"committed"]
