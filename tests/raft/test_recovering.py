"""A node whose storage cut its log back must not vote until it has caught up.

Not in the Raft paper, which assumes stable storage never loses what it
acknowledged. A repaired or damaged log breaks that assumption; these tests show
the election that would lose a committed entry, and that a recovering node
(``Config.recovering_term``) refuses to take part in it.
"""

from __future__ import annotations

from collections.abc import Callable

from herald.raft import Entry, HardState, MemoryStorage, Role

from .harness import Cluster

PAPER = {"pre_vote": False, "check_quorum": False}


def tick_until(h: Cluster, done: Callable[[], bool], ticks: int = 500) -> None:
    for _ in range(ticks):
        if done():
            return
        h.tick_all()
        h.stabilize()
    raise AssertionError(f"not reached within {ticks} ticks")


def commit_x_on_nodes_1_and_2() -> Cluster:
    h = Cluster(3, **PAPER)
    h.campaign(1)
    h.stabilize()
    assert h.leader() == 1
    h.cut(1, 3)
    h.propose(1, b"x")
    h.stabilize()
    assert h.applied_data(1)[-1] == b"x"  # committed with node 2's acknowledgement
    assert h.raft(3).log.last_index() == 1
    return h


def lose_the_suffix_of_node_2(h: Cluster) -> None:
    """Node 2 crashes and comes back with its log cut at index 1 (x is gone)."""
    h.crash(2)
    old = h.peers[2].storage
    cut = MemoryStorage(h.ids)
    cut.append([Entry(old.term(1), 1, b"", old.entries(1, 2, 1 << 20)[0].kind)])
    hard = old.hard_state
    cut.set_hard_state(HardState(hard.term, hard.vote, min(hard.commit, 1)))
    h.peers[2].storage = cut


def elect_3_without_1(h: Cluster) -> None:
    h.crash(1)
    h.recover()
    h.campaign(3)
    h.stabilize()


def test_cut_back_node_that_votes_lets_a_committed_entry_be_lost() -> None:
    """The danger: with the cut-back node voting, node 3 (which never had x) wins."""
    h = commit_x_on_nodes_1_and_2()
    lose_the_suffix_of_node_2(h)
    h.restart(2)
    elect_3_without_1(h)
    assert h.raft(3).role == Role.LEADER
    h.restart(1)
    h.stabilize()
    assert h.safety_violations(), "x was committed on node 1 and overwritten elsewhere"


def test_recovering_node_refuses_to_vote_until_it_holds_an_entry_of_a_later_term() -> None:
    h = commit_x_on_nodes_1_and_2()
    term = h.raft(2).term
    lose_the_suffix_of_node_2(h)
    h.restart(2, recovering_term=term)
    assert h.node(2).status().recovering
    assert h.raft(2).term == term + 1  # moved past the term of the lost acknowledgements
    elect_3_without_1(h)
    assert h.raft(3).role != Role.LEADER, "node 2 must not have granted its vote"
    assert h.raft(2).vote != 3

    # Node 1 (which holds x) comes back and wins; node 2 catches up and recovers.
    h.restart(1)
    tick_until(h, lambda: h.leader() is not None and not h.node(2).status().recovering)
    assert h.leader() == 1  # the only node holding x, with node 3's vote
    assert b"x" in h.applied_data(2)
    assert not h.node(2).status().recovering
    assert h.raft(2).recovering_term == 0
    assert h.raft(2).log.last_term() > term
    assert not h.safety_violations()


def test_own_old_commits_do_not_end_recovery() -> None:
    """Entries of the node's own term prove nothing: x was committed in that term
    after the entries the node still holds."""
    h = commit_x_on_nodes_1_and_2()
    term = h.raft(2).term
    lose_the_suffix_of_node_2(h)
    h.restart(2, recovering_term=term)
    assert h.raft(2).log.last_term() == term
    assert h.node(2).status().recovering


def test_leader_of_the_old_term_is_superseded() -> None:
    """A recovering node answers the old term's leader with a higher term, so an
    election happens while the cluster is healthy and recovery can end."""
    h = commit_x_on_nodes_1_and_2()
    h.recover()
    term = h.raft(2).term
    lose_the_suffix_of_node_2(h)
    h.restart(2, recovering_term=term)
    tick_until(h, lambda: not h.node(2).status().recovering)
    h.stabilize()
    assert h.leader() in (1, 3)
    assert h.raft(h.leader() or 1).term > term
    assert b"x" in h.applied_data(2)
    assert not h.safety_violations()


def test_recovering_node_does_not_campaign() -> None:
    h = Cluster(3, recovering_term=5, **PAPER)
    h.tick(1, 100)
    rd = h.process_ready(1)
    assert h.raft(1).role == Role.FOLLOWER
    assert rd is None or not rd.messages
