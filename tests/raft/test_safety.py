"""Safety: Raft paper section 5.4.2 (committing entries from previous terms, the
Figure 8 scenario) and the no-op entry a new leader appends (section 8)."""

from __future__ import annotations

from collections.abc import Callable

from herald.raft import Entry, EntryKind, Message, MessageType, Raft, Role
from herald.raft.quorum import committed_index

from .harness import Cluster

MT = MessageType
PAPER = {"pre_vote": False, "check_quorum": False}


class CountsOlderTermsAndSkipsNoop(Raft):
    """The bug Figure 8 warns about: count replicas of entries of *any* term as
    committed, and (since the no-op would mask it) append no entry on election."""

    def _maybe_commit(self) -> bool:
        index = committed_index([self.prs[node].match for node in self.voters])
        if index > self.log.committed:
            self.log.commit_to(index)
            return True
        return False

    def become_leader(self) -> None:
        super().become_leader()
        self.log.unstable.entries.pop()


def test_5_4_2_new_leader_appends_a_noop_of_its_term() -> None:
    """Section 5.4.2 and 8: on election the leader appends a blank entry of its own
    term, so that committing it commits everything before it."""
    h = Cluster(3, **PAPER, logs={1: [1, 1], 2: [1], 3: [1]}, terms={1: 4})
    h.campaign(1)
    h.process_ready(1)
    h.deliver()
    h.process_all()
    h.deliver()
    raft = h.raft(1)
    assert (raft.role, raft.term) == (Role.LEADER, 5)
    assert raft.log.last_index() == 3
    last = raft.log.slice(3, 4, 1 << 20)[0]
    assert last == Entry(5, 3, b"", EntryKind.NOOP)


def test_5_4_2_old_term_entry_is_not_committed_by_counting_replicas() -> None:
    """Section 5.4.2: "Raft never commits log entries from previous terms by counting
    replicas"; only once the no-op of the current term reaches a majority do the
    earlier entries commit with it."""
    h = Cluster(5, **PAPER, logs={1: [1, 2]}, terms={1: 2})
    h.campaign(1)
    h.process_ready(1)
    h.take()
    for voter in (2, 3):
        h.step(1, Message(MT.VOTE_RESPONSE, voter, 1, term=3))
    assert h.raft(1).role == Role.LEADER
    h.process_ready(1)  # the no-op (index 3) is durable on the leader
    h.take()
    # Every follower acknowledges the term-2 entry at index 2: a unanimous count.
    for follower in (2, 3, 4, 5):
        h.step(1, Message(MT.APPEND_RESPONSE, follower, 1, term=3, index=2))
    assert [h.raft(1).prs[i].match for i in h.ids] == [3, 2, 2, 2, 2]
    assert h.raft(1).log.committed == 0
    h.step(1, Message(MT.APPEND_RESPONSE, 2, 1, term=3, index=3))
    assert h.raft(1).log.committed == 0
    h.step(1, Message(MT.APPEND_RESPONSE, 3, 1, term=3, index=3))
    assert h.raft(1).log.committed == 3


def _run_until(h: Cluster, done: Callable[[], bool]) -> None:
    """Process and deliver rounds until ``done()`` or the network is quiet."""
    for _ in range(100):
        if done():
            return
        h.process_all()
        if not h.queue:
            return
        h.deliver()


def _win(h: Cluster, node: int) -> None:
    """Campaign (again, in a new term) until ``node`` leads; stops as soon as it does."""
    for _ in range(3):
        h.campaign(node)
        _run_until(h, lambda: h.raft(node).role == Role.LEADER)
        if h.raft(node).role == Role.LEADER:
            return
    raise AssertionError(f"node {node} could not win an election")


def figure_8(raft_class: type[Raft]) -> tuple[Cluster, dict[str, object]]:
    """The Figure 8 script, one harness operation after the other. Returns the cluster
    and what S1 knew at the moment of Figure 8 (c)."""
    h = Cluster(5, **PAPER, raft_class=raft_class, max_size_per_msg=1)
    # (a) S1 leads and replicates x at index 2 to S2 only.
    _win(h, 1)
    h.stabilize()
    for node in (3, 4, 5):
        h.drop(1, node)
    x_index = h.propose(1, b"x")  # 2 after the no-op; 1 for the planted core
    h.stabilize()
    # (b) S1 crashes; S5 is elected by S3, S4 and itself and appends its own entries
    # (its no-op, then y; just y for the planted core), crashing before it replicates.
    h.crash(1)
    h.recover()
    _win(h, 5)
    h.propose(5, b"y")
    h.process_ready(5)
    h.crash(5)
    # (c) S1 restarts, is elected by S2, S3 (S4 unreachable) and replicates x to S3.
    h.restart(1)
    h.drop(1, 4)
    _win(h, 1)
    _run_until(h, lambda: h.raft(1).prs[3].match >= x_index)
    h.process_ready(1)
    holders = [n for n in (1, 2, 3) if h.raft(n).log.term_or_zero(x_index) == 1]
    moment_c = {
        "x_index": x_index,
        "holders_of_x": holders,
        "leader_knows": [h.raft(1).prs[n].match >= x_index for n in (1, 2, 3)],
        "committed": h.raft(1).log.committed,
        "applied": [e.data for e in h.peers[1].applied],
    }
    # (d) S1 crashes again; S5 restarts and is elected by S3, S4 (and S2 if its log allows).
    h.crash(1)
    h.recover()
    h.restart(5)
    _win(h, 5)
    h.stabilize()
    return h, moment_c


def test_5_4_2_figure_8_correct_core_keeps_old_entry_uncommitted() -> None:
    """Figure 8: at (c) the term-1 entry x (index 2) is stored on a majority (S1, S2,
    S3) and S1 knows it, yet S1 does not commit it; so when S5 overwrites it in (d)
    nothing that was committed is lost and every node applies the same entries."""
    h, c = figure_8(Raft)
    assert c["x_index"] == 2
    assert c["holders_of_x"] == [1, 2, 3]
    assert c["leader_knows"] == [True, True, True]
    assert c["committed"] == 1
    assert b"x" not in c["applied"]
    assert h.leader() == 5
    assert h.safety_violations() == []
    for node in (2, 3, 4, 5):
        assert h.log_terms(node) == h.log_terms(5)
        assert h.applied_data(node) == [b"y"]
    assert h.raft(5).log.term(2) == 2


def test_5_4_2_figure_8_counting_without_noop_breaks_state_machine_safety() -> None:
    """Figure 8, the counter-example: the same script against a core that commits
    older-term entries by counting (and appends no no-op) commits x at (c), applies
    it, and then S5 overwrites x's index with y: two nodes apply different entries at
    the same index (State Machine Safety, Figure 3, is violated)."""
    h, c = figure_8(CountsOlderTermsAndSkipsNoop)
    assert c["x_index"] == 1
    assert c["holders_of_x"] == [1, 2, 3]
    assert c["leader_knows"] == [True, True, True]
    assert c["committed"] == 1
    assert c["applied"] == [b"x"]
    assert h.leader() == 5
    assert h.safety_violations() == [
        f"index 1: node 1 applied {Entry(1, 1, b'x')}, node {n} applied {Entry(2, 1, b'y')}"
        for n in (2, 3, 4, 5)
    ]
    assert h.applied_data(5) == [b"y"]
