"""The Ready contract (rawnode.py): persist before send, must_sync, apply only what is
durable, one Ready at a time. These are the rules that make Figure 2's "persistent
state ... updated on stable storage before responding to RPCs" hold."""

from __future__ import annotations

import pytest

from herald.errors import UsageError
from herald.raft import Entry, HardState, Message, MessageType, Ready, Role, SoftState

from .harness import Cluster, describe, make_entries

MT = MessageType
PAPER = {"pre_vote": False, "check_quorum": False}


def elect(h: Cluster, node: int = 1) -> None:
    h.campaign(node)
    h.stabilize()
    assert h.leader() == node


def busy_history(h: Cluster) -> None:
    """Pre-vote elections and a transfer election, replication, a lagging follower fed by
    snapshot, read-index, a leadership transfer and a deposed leader."""
    elect(h)
    h.read_index(2, b"r1")
    h.propose(1, b"a")
    h.stabilize()
    h.isolate(3)
    for i in range(5):
        h.propose(1, b"%d" % i)
    h.stabilize()
    h.compact(1, h.raft(1).log.applied)
    h.recover()
    h.tick(1)
    h.stabilize()
    h.transfer(1, 2)
    h.stabilize()
    assert h.leader() == 2
    h.isolate(2)
    h.tick_all(60)
    h.recover()
    h.tick_all(5)
    h.stabilize()


def test_message_kinds_are_split_by_what_they_promise() -> None:
    """Ready contract 1 and 3: appends, heartbeats, snapshots, pre-votes and read-index
    traffic may leave at once; votes, vote grants and append acknowledgements promise
    durable state and only leave in persisted_messages."""
    h = Cluster(3)
    busy_history(h)
    immediate = {m.type for _, rd in h.readies for m in rd.messages}
    persisted = {m.type for _, rd in h.readies for m in rd.persisted_messages}
    assert persisted == {MT.VOTE, MT.VOTE_RESPONSE, MT.APPEND_RESPONSE}
    assert immediate == {
        MT.APPEND,
        MT.HEARTBEAT,
        MT.HEARTBEAT_RESPONSE,
        MT.SNAPSHOT,
        MT.PRE_VOTE,
        MT.PRE_VOTE_RESPONSE,
        MT.READ_INDEX,
        MT.READ_INDEX_RESPONSE,
        MT.TIMEOUT_NOW,
    }


def test_committed_entries_were_durable_in_an_earlier_ready() -> None:
    """Ready contract 4: committed_entries were always written by an earlier Ready
    (or were in storage already), never only in the same one."""
    h = Cluster(5)
    busy_history(h)
    durable: dict[int, dict[int, int]] = {i: {} for i in h.ids}
    checked = 0
    for node, rd in h.readies:
        for entry in rd.committed_entries:
            assert durable[node].get(entry.index) == entry.term, (node, entry)
            checked += 1
        if rd.snapshot is not None:
            durable[node] = {}
        for entry in rd.entries:
            for stale in [i for i in durable[node] if i >= entry.index]:
                del durable[node][stale]
            durable[node][entry.index] = entry.term
    assert checked > 20


def test_vote_and_its_grant_are_persisted_before_the_grant_leaves() -> None:
    """Figure 2 (votedFor is persistent): the Ready carrying a VOTE_RESPONSE also
    carries the new term and vote, and demands a sync."""
    h = Cluster(3, **PAPER)
    h.step(2, Message(MT.VOTE, 1, 2, term=1))
    rd = h.node(2).ready()
    assert rd.hard_state == HardState(term=1, vote=1, commit=0)
    assert rd.must_sync
    assert rd.messages == ()
    assert [describe(m) for m in rd.persisted_messages] == ["2->1 VOTE_RESPONSE t1"]


def test_candidate_vote_requests_wait_for_its_own_vote_to_be_durable() -> None:
    """Figure 2: a candidate votes for itself durably before asking others."""
    h = Cluster(3, **PAPER)
    h.campaign(1)
    rd = h.node(1).ready()
    assert rd.hard_state == HardState(term=1, vote=1, commit=0)
    assert rd.must_sync
    assert rd.messages == ()
    assert [m.type for m in rd.persisted_messages] == [MT.VOTE, MT.VOTE]
    assert rd.soft_state == SoftState(leader=0, role=Role.CANDIDATE)


def test_leader_appends_leave_before_the_leader_persists() -> None:
    """Ready contract 1 (dissertation 10.2.1): the leader's appends go out in messages,
    in the same Ready whose entries are still being written."""
    h = Cluster(3, **PAPER)
    elect(h)
    h.propose(1, b"x")
    rd = h.node(1).ready()
    assert [e.data for e in rd.entries] == [b"x"]
    assert [(m.type, m.entries) for m in rd.messages] == [
        (MT.APPEND, rd.entries),
        (MT.APPEND, rd.entries),
    ]
    assert rd.persisted_messages == ()
    assert rd.must_sync


def test_leader_counts_its_own_entry_only_after_advance() -> None:
    """Ready contract 1: the leader's own copy counts towards the quorum only after
    the host reported it durable."""
    h = Cluster(3, **PAPER)
    elect(h)
    h.propose(1, b"x")
    rd = h.node(1).ready()
    h.queue.extend(rd.messages)
    h.deliver(to=2)
    h.process_ready(2)
    h.deliver(frm=2, to=1)
    raft = h.raft(1)
    assert [raft.prs[i].match for i in h.ids] == [1, 2, 1]
    assert raft.log.committed == 1
    h.peers[1].storage.append(rd.entries)
    h.node(1).advance(rd)
    assert [raft.prs[i].match for i in h.ids] == [2, 2, 1]
    assert raft.log.committed == 2


def test_two_followers_commit_without_the_leader_copy() -> None:
    """Section 5.3 with the Ready contract: a majority of followers is a majority; the
    leader's pending write does not hold the commit back (but it applies only after
    its own write)."""
    h = Cluster(3, **PAPER)
    elect(h)
    h.propose(1, b"x")
    rd = h.node(1).ready()
    h.queue.extend(rd.messages)
    h.deliver()
    h.process_ready(2)
    h.process_ready(3)
    h.deliver()
    assert h.raft(1).log.committed == 2
    assert h.raft(1).log.next_committed_entries() == []
    h.peers[1].storage.append(rd.entries)
    h.node(1).advance(rd)
    assert [e.data for e in h.node(1).ready().committed_entries] == [b"x"]


def test_follower_applies_entries_only_after_they_are_durable() -> None:
    """Ready contract 4: entries that arrive already committed are written in one
    Ready and handed to the state machine in the next."""
    h = Cluster(3, **PAPER)
    h.step(2, Message(MT.APPEND, 1, 2, term=1, index=0, log_term=0, commit=0))
    h.process_ready(2)
    entries = tuple(make_entries([1, 1]))
    h.step(2, Message(MT.APPEND, 1, 2, term=1, index=0, log_term=0, entries=entries, commit=2))
    rd = h.node(2).ready()
    assert rd.entries == entries
    assert rd.committed_entries == ()
    assert rd.hard_state == HardState(term=1, vote=0, commit=2)
    h.handle_ready(2, rd)
    rd2 = h.node(2).ready()
    assert rd2.committed_entries == entries
    assert rd2.entries == ()


@pytest.mark.parametrize(
    ("action", "must_sync"),
    [
        ("entries", True),
        ("term", True),
        ("vote", True),
        ("commit-only", False),
        ("messages-only", False),
    ],
)
def test_must_sync_only_for_entries_term_or_vote(action: str, must_sync: bool) -> None:
    """Ready contract 2: new entries, a new term or a new vote must be fsynced; a change
    of the commit index alone need not be (it is recomputed after a crash)."""
    h = Cluster(3, **PAPER, logs={2: [1, 1]}, terms={2: 1})
    if action != "vote":  # (a follower that knows a leader would refuse the vote)
        h.step(2, Message(MT.APPEND, 1, 2, term=1, index=2, log_term=1, commit=0))
        h.process_ready(2)
    if action == "entries":
        h.step(2, Message(MT.APPEND, 1, 2, term=1, index=2, log_term=1, entries=(Entry(1, 3),)))
    elif action == "term":
        h.step(2, Message(MT.HEARTBEAT, 1, 2, term=2))
    elif action == "vote":
        h.step(2, Message(MT.VOTE, 3, 2, term=1, index=2, log_term=1))
    elif action == "commit-only":
        h.step(2, Message(MT.HEARTBEAT, 1, 2, term=1, commit=2))
    else:
        h.step(2, Message(MT.HEARTBEAT, 1, 2, term=1, commit=0))
    rd = h.node(2).ready()
    assert rd.must_sync is must_sync
    if action == "vote":
        assert rd.hard_state == HardState(term=1, vote=3, commit=0)
    if action == "commit-only":
        assert rd.hard_state == HardState(term=1, vote=0, commit=2)
    if action == "messages-only":
        assert rd.hard_state is None


def test_pre_vote_changes_no_hard_state() -> None:
    """Dissertation 9.6: a pre-candidate has not changed term or vote, so its Ready has
    nothing to persist and its PRE_VOTEs leave at once."""
    h = Cluster(3)
    h.campaign(1)
    rd = h.node(1).ready()
    assert rd.hard_state is None
    assert not rd.must_sync
    assert [m.type for m in rd.messages] == [MT.PRE_VOTE, MT.PRE_VOTE]
    assert rd.soft_state == SoftState(leader=0, role=Role.PRE_CANDIDATE)


def test_only_one_ready_may_be_outstanding() -> None:
    """RawNode: call advance before the next ready; has_ready is False meanwhile, and
    new work accumulates for the next Ready."""
    h = Cluster(3, **PAPER)
    h.campaign(1)
    node = h.node(1)
    rd = node.ready()
    h.step(1, Message(MT.VOTE_RESPONSE, 2, 1, term=1))
    assert not node.has_ready()
    with pytest.raises(UsageError):
        node.ready()
    node.advance(rd)
    assert node.has_ready()
    rd2 = node.ready()
    assert rd2.soft_state == SoftState(leader=1, role=Role.LEADER)


def test_advance_with_the_wrong_ready_is_refused() -> None:
    """RawNode: advance must get the Ready last returned; anything else (a copy, an old
    one, a second advance) is a UsageError and changes nothing."""
    h = Cluster(3, **PAPER)
    elect(h)
    h.propose(1, b"x")
    node = h.node(1)
    rd = node.ready()
    fake = Ready(**{f: getattr(rd, f) for f in Ready.__dataclass_fields__})
    with pytest.raises(UsageError):
        node.advance(fake)
    assert h.raft(1).log.unstable.entries  # nothing became stable
    h.handle_ready(1, rd)
    with pytest.raises(UsageError):
        node.advance(rd)


def test_soft_state_reported_only_on_change() -> None:
    """Ready.soft_state is set when leader or role changed, else None."""
    h = Cluster(3, **PAPER)
    elect(h)
    kinds = [(n, rd.soft_state) for n, rd in h.readies if rd.soft_state is not None]
    assert kinds == [
        (1, SoftState(0, Role.CANDIDATE)),
        (1, SoftState(1, Role.LEADER)),
        (2, SoftState(1, Role.FOLLOWER)),
        (3, SoftState(1, Role.FOLLOWER)),
    ]
