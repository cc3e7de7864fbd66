"""Log replication: Raft paper section 5.3 (Figure 2, AppendEntries; Figures 6 and 7),
plus the flow control around it (fast back-off, pipelining, batching)."""

from __future__ import annotations

import pytest

from herald.raft import Entry, EntryKind, Message, MessageType, Role
from herald.raft.progress import ProgressState

from .harness import Cluster, describe, make_entries

MT = MessageType
PAPER = {"pre_vote": False, "check_quorum": False}


def elect(h: Cluster, node: int = 1) -> None:
    h.campaign(node)
    h.stabilize()
    assert h.leader() == node


def appends_to(h: Cluster, node: int) -> list[str]:
    return [line for line in h.transcript if line.startswith(f"1->{node} APPEND ")]


# -- the leader's side ----------------------------------------------------------------


def test_5_3_leader_appends_proposal_and_replicates_it() -> None:
    """Section 5.3: the leader appends the command to its log as a new entry, then
    issues AppendEntries in parallel carrying the preceding index/term and its commit."""
    h = Cluster(3, **PAPER)
    elect(h)
    index = h.propose(1, b"x")
    assert index == 2
    assert h.raft(1).log.last_index() == 2
    assert h.raft(1).log.term(2) == 1
    rd = h.process_ready(1)
    assert rd is not None
    assert rd.entries == (Entry(1, 2, b"x"),)
    assert [describe(m) for m in rd.messages] == [
        "1->2 APPEND t1 i1 lt1 +1 c1",
        "1->3 APPEND t1 i1 lt1 +1 c1",
    ]
    assert rd.messages[0].entries == (Entry(1, 2, b"x"),)


def test_5_3_entry_commits_once_a_majority_stored_it() -> None:
    """Section 5.3: an entry is committed once the leader has replicated it on a
    majority; a minority of acknowledgements is not enough."""
    h = Cluster(5, **PAPER)
    elect(h)
    h.propose(1, b"x")
    h.process_ready(1)
    h.take(frm=1)
    h.step(1, Message(MT.APPEND_RESPONSE, 2, 1, term=1, index=2))
    assert h.raft(1).log.committed == 1
    h.step(1, Message(MT.APPEND_RESPONSE, 3, 1, term=1, index=2))
    assert h.raft(1).log.committed == 2
    rd = h.process_ready(1)
    assert rd is not None
    assert [e.data for e in rd.committed_entries] == [b"x"]
    # The new commit index goes out at once (4 and 5 will learn the entry first).
    assert [describe(m) for m in rd.messages] == [
        "1->2 APPEND t1 i2 lt1 +0 c2",
        "1->3 APPEND t1 i2 lt1 +0 c2",
        "1->4 APPEND t1 i2 lt1 +0 c2",
        "1->5 APPEND t1 i2 lt1 +0 c2",
    ]


def test_5_3_stale_acknowledgement_does_not_move_commit() -> None:
    """Figure 2: matchIndex only grows; a duplicated old acknowledgement changes nothing."""
    h = Cluster(3, **PAPER)
    elect(h)
    h.propose(1, b"x")
    h.process_ready(1)
    h.take(frm=1)
    h.step(1, Message(MT.APPEND_RESPONSE, 2, 1, term=1, index=1))
    assert h.raft(1).prs[2].match == 1
    assert h.raft(1).log.committed == 1


def test_5_3_committing_an_entry_commits_all_preceding_entries() -> None:
    """Section 5.3: committing an entry also commits all preceding entries in the
    leader's log, including those created by previous leaders; every node applies
    them in log order."""
    h = Cluster(3, **PAPER, logs={1: [1, 1, 2], 2: [1, 1, 2], 3: [1]})
    h.campaign(1)
    h.stabilize()
    for node in h.ids:
        assert h.raft(node).log.committed == 4
        assert [(e.index, e.term, e.kind) for e in h.peers[node].applied] == [
            (1, 1, EntryKind.NORMAL),
            (2, 1, EntryKind.NORMAL),
            (3, 2, EntryKind.NORMAL),
            (4, 3, EntryKind.NOOP),
        ]
    assert h.applied_data(3) == [b"e1t1", b"e2t1", b"e3t2"]


def test_5_3_followers_learn_commit_from_heartbeats_up_to_their_match() -> None:
    """Section 5.3: the leader includes its commit index in later AppendEntries
    (heartbeats included); a heartbeat never tells a follower to commit past
    what it is known to hold."""
    h = Cluster(3, **PAPER)
    elect(h)
    h.drop(1, 3)
    h.propose(1, b"x")
    h.stabilize()
    assert h.raft(1).log.committed == 2
    assert [h.raft(1).prs[i].match for i in h.ids] == [2, 2, 1]
    h.tick(1, h.raft(1).config.heartbeat_tick)
    rd = h.process_ready(1)
    assert rd is not None
    assert [describe(m) for m in rd.messages] == [
        "1->2 HEARTBEAT t1 c2",
        "1->3 HEARTBEAT t1 c1",
    ]


# -- the follower's side (AppendEntries receiver) ----------------------------------------


@pytest.mark.parametrize(
    ("prev_index", "prev_term", "hint", "hint_term"),
    [
        (3, 2, 3, 1),  # term mismatch at index 3: the follower's entry 3 has term 1
        (5, 1, 3, 1),  # the follower has no entry 5
        (4, 3, 3, 1),  # beyond its log and a later term
    ],
)
def test_5_3_follower_rejects_append_without_matching_previous_entry(
    prev_index: int, prev_term: int, hint: int, hint_term: int
) -> None:
    """Figure 2, AppendEntries receiver step 2: reply false if the log does not
    contain an entry at prevLogIndex whose term matches prevLogTerm; the hint names
    the follower's last entry that can still match (fast back-off)."""
    h = Cluster(3, **PAPER, logs={2: [1, 1, 1]}, terms={2: 2})
    h.step(
        2,
        Message(
            MT.APPEND,
            1,
            2,
            term=2,
            index=prev_index,
            log_term=prev_term,
            entries=tuple(make_entries([2], start=prev_index + 1)),
            commit=3,
        ),
    )
    rd = h.process_ready(2)
    assert rd is not None
    assert [describe(m) for m in rd.persisted_messages] == [
        f"2->1 APPEND_RESPONSE t2 i{prev_index} reject hint{hint} lt{hint_term}"
    ]
    assert rd.entries == ()
    assert h.log_terms(2) == [1, 1, 1]
    assert h.raft(2).log.committed == 0


def test_5_3_conflicting_entries_are_truncated() -> None:
    """Figure 2, AppendEntries receiver step 3: if an existing entry conflicts with a
    new one (same index, different term), delete it and all that follow it."""
    h = Cluster(3, **PAPER, logs={2: [1, 1, 1, 1, 1]}, terms={2: 2})
    new = tuple(make_entries([2, 2], start=3))
    h.step(2, Message(MT.APPEND, 1, 2, term=2, index=2, log_term=1, entries=new, commit=1))
    assert h.log_terms(2) == [1, 1, 2, 2]
    rd = h.process_ready(2)
    assert rd is not None
    assert rd.entries == new
    assert [describe(m) for m in rd.persisted_messages] == ["2->1 APPEND_RESPONSE t2 i4"]
    assert [e.term for e in h.peers[2].storage.entries(1, 5, 1 << 20)] == [1, 1, 2, 2]
    assert h.peers[2].storage.last_index() == 4


def test_5_3_matching_entries_are_not_truncated() -> None:
    """Figure 2, receiver step 3-4: only a *conflict* truncates; an append whose entries
    the follower already has (a delayed duplicate) leaves later entries alone."""
    h = Cluster(3, **PAPER, logs={2: [1, 1, 1, 1, 1]})
    old = tuple(make_entries([1, 1], start=2))
    h.step(2, Message(MT.APPEND, 1, 2, term=1, index=1, log_term=1, entries=old, commit=0))
    assert h.log_terms(2) == [1, 1, 1, 1, 1]
    rd = h.process_ready(2)
    assert rd is not None
    assert rd.entries == ()
    # The acknowledgement vouches only for what this append carried.
    assert [describe(m) for m in rd.persisted_messages] == ["2->1 APPEND_RESPONSE t1 i3"]


def test_5_3_follower_commit_is_min_of_leader_commit_and_last_new_entry() -> None:
    """Figure 2, receiver step 5: commitIndex = min(leaderCommit, index of last new entry)."""
    h = Cluster(3, **PAPER, logs={2: [1, 1, 1, 1, 1]})
    h.step(
        2,
        Message(
            MT.APPEND,
            1,
            2,
            term=1,
            index=1,
            log_term=1,
            entries=tuple(make_entries([1], start=2)),
            commit=5,
        ),
    )
    assert h.raft(2).log.committed == 2
    h.step(2, Message(MT.APPEND, 1, 2, term=1, index=4, log_term=1, entries=(), commit=3))
    assert h.raft(2).log.committed == 3


def test_5_3_append_below_commit_is_answered_with_commit() -> None:
    """Figure 2, receiver: a delayed append entirely below the commit index changes
    nothing; the reply tells the leader how far the follower is committed."""
    h = Cluster(3, **PAPER, logs={2: [1, 1, 1, 1]})
    h.step(2, Message(MT.APPEND, 1, 2, term=1, index=4, log_term=1, commit=4))
    h.process_ready(2)
    h.step(
        2, Message(MT.APPEND, 1, 2, term=1, index=1, log_term=1, entries=(Entry(2, 2),), commit=1)
    )
    assert h.log_terms(2) == [1, 1, 1, 1]
    rd = h.process_ready(2)
    assert rd is not None
    assert [describe(m) for m in rd.persisted_messages] == ["2->1 APPEND_RESPONSE t1 i4"]


# Figure 7: the leader (term 8) and six possible followers.
FIGURE_7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIGURE_7_FOLLOWERS = {
    "a-missing-one": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b-missing-many": [1, 1, 1, 4],
    "c-one-extra": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d-extra-of-later-term": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e-missing-and-extra": [1, 1, 1, 4, 4, 4, 4],
    "f-long-conflict": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


@pytest.mark.parametrize("case", sorted(FIGURE_7_FOLLOWERS))
def test_5_3_figure_7_leader_brings_follower_into_agreement(case: str) -> None:
    """Section 5.3, Figure 7: whatever a follower is missing, has extra, or has in
    conflict, the leader's consistency check finds the last matching entry and
    overwrites the rest with its own log."""
    follower = FIGURE_7_FOLLOWERS[case]
    h = Cluster(
        3,
        **PAPER,
        logs={1: FIGURE_7_LEADER, 2: follower, 3: FIGURE_7_LEADER},
        terms={1: 7, 2: 7, 3: 7},
    )
    h.campaign(1)
    h.stabilize()
    assert (h.leader(), h.raft(1).term) == (1, 8)
    expected = [*FIGURE_7_LEADER, 8]
    assert h.log_terms(2) == expected
    assert h.log_terms(1) == expected
    assert h.raft(2).log.committed == 11
    stored = h.peers[2].storage
    assert [e.term for e in stored.entries(1, stored.last_index() + 1, 1 << 30)] == expected


def test_5_3_fast_back_off_skips_a_conflicting_term_in_one_round_trip() -> None:
    """Section 5.3's optimisation ("the follower can include the term of the
    conflicting entry and the first index it stores for that term"): a follower with
    45 conflicting entries of term 2 costs one rejected append, not 45."""
    leader_log = [1] * 5 + [3] * 5
    h = Cluster(
        3,
        **PAPER,
        logs={1: leader_log, 2: [1] * 5 + [2] * 45, 3: leader_log},
        terms={1: 3, 2: 3, 3: 3},
    )
    h.campaign(1)
    h.stabilize()
    assert appends_to(h, 2) == [
        "1->2 APPEND t4 i10 lt3 +1 c0",
        "1->2 APPEND t4 i5 lt1 +6 c0",
        "1->2 APPEND t4 i11 lt4 +0 c11",
    ]
    assert [line for line in h.transcript if "reject" in line] == [
        "2->1 APPEND_RESPONSE t4 i10 reject hint10 lt2"
    ]
    assert h.log_terms(2) == [*leader_log, 4]


def test_5_3_fast_back_off_with_a_short_follower_log() -> None:
    """Section 5.3: a follower far behind names its last index; the leader jumps there."""
    h = Cluster(3, **PAPER, logs={1: [1] * 30, 2: [1] * 3, 3: [1] * 30})
    h.campaign(1)
    h.stabilize()
    assert [line for line in h.transcript if "reject" in line] == [
        "2->1 APPEND_RESPONSE t2 i30 reject hint3 lt1"
    ]
    assert appends_to(h, 2)[1] == "1->2 APPEND t2 i3 lt1 +28 c0"
    assert h.log_terms(2) == [1] * 30 + [2]


def test_5_3_fast_back_off_across_several_terms() -> None:
    """Section 5.3: each rejection skips at least a whole term of the follower's log,
    so the number of round trips is bounded by the number of conflicting terms."""
    leader_log = [1, 1, 5, 5, 5, 5, 5, 5]
    follower_log = [1, 1] + [2] * 10 + [3] * 10 + [4] * 10
    h = Cluster(
        3, **PAPER, logs={1: leader_log, 2: follower_log, 3: leader_log}, terms={1: 5, 2: 5, 3: 5}
    )
    h.campaign(1)
    h.stabilize()
    rejects = [line for line in h.transcript if "reject" in line]
    assert rejects == ["2->1 APPEND_RESPONSE t6 i8 reject hint8 lt2"]
    assert h.log_terms(2) == [*leader_log, 6]


def test_5_3_pipelining_is_bounded_by_max_inflight_msgs() -> None:
    """Replicate state keeps at most max_inflight_msgs appends unacknowledged per
    follower; an acknowledgement frees room and the leader sends the rest at once."""
    h = Cluster(3, **PAPER, max_inflight_msgs=2)
    elect(h)
    assert h.raft(1).prs[2].state == ProgressState.REPLICATE
    for i in range(5):
        h.propose(1, f"p{i}".encode())
        h.process_ready(1)
    queued = [describe(m) for m in h.queue if m.dst == 2]
    assert queued == ["1->2 APPEND t1 i1 lt1 +1 c1", "1->2 APPEND t1 i2 lt1 +1 c1"]
    assert h.raft(1).prs[2].is_paused()
    h.deliver(to=2)
    h.process_ready(2)
    first_ack, second_ack = h.take(frm=2, to=1)
    h.step(1, first_ack)  # acknowledges only the first append: one slot frees
    h.process_ready(1)
    assert [describe(m) for m in h.queue if m.dst == 2 and m.entries] == [
        "1->2 APPEND t1 i3 lt1 +3 c2"
    ]
    assert h.raft(1).prs[2].inflights.count() == 2
    assert h.raft(1).prs[2].is_paused()
    h.step(1, second_ack)
    assert h.raft(1).prs[2].inflights.count() == 1
    h.stabilize()
    assert h.applied_data(2) == [b"p0", b"p1", b"p2", b"p3", b"p4"]


def test_5_3_batching_is_bounded_by_max_size_per_msg() -> None:
    """One append carries at most max_size_per_msg bytes of entries (an entry counts
    its payload plus 16 bytes); a lagging follower catches up in several appends."""
    h = Cluster(3, **PAPER, max_size_per_msg=100)
    elect(h)
    h.isolate(3)
    for i in range(7):
        h.propose(1, b"%019d" % i + b"x")  # 20 bytes: 36 with the header
    h.stabilize()
    h.recover()
    h.take_transcript()
    h.tick(1)
    h.stabilize()
    assert appends_to(h, 3) == [
        "1->3 APPEND t1 i8 lt1 +0 c8",  # the stream was lost: rejected, back to probing
        "1->3 APPEND t1 i1 lt1 +2 c8",
        "1->3 APPEND t1 i3 lt1 +2 c8",
        "1->3 APPEND t1 i5 lt1 +2 c8",
        "1->3 APPEND t1 i7 lt1 +1 c8",
    ]
    assert h.raft(3).log.last_index() == 8
    assert h.raft(3).log.committed == 8


def test_5_3_an_entry_larger_than_the_limit_still_travels_alone() -> None:
    """Batching never stalls: an entry bigger than max_size_per_msg goes in its own append."""
    h = Cluster(3, **PAPER, max_size_per_msg=10)
    elect(h)
    h.propose(1, b"x" * 100)
    h.propose(1, b"y" * 100)
    rd = h.process_ready(1)
    assert rd is not None
    to_2 = [m for m in rd.messages if m.dst == 2]
    assert [len(m.entries) for m in to_2] == [1, 1]
    h.stabilize()
    assert h.applied_data(2) == [b"x" * 100, b"y" * 100]


def test_5_3_lost_appends_in_replicate_state_recover_via_heartbeat_response() -> None:
    """Section 5.3 ("the leader retries AppendEntries indefinitely"): with the
    pipeline full of appends that were lost, a heartbeat response frees an
    in-flight slot, the next append is rejected as a gap, and the follower falls
    back to probing and catches up."""
    h = Cluster(3, **PAPER, max_inflight_msgs=2)
    elect(h)
    h.drop(1, 2)
    for i in range(4):
        h.propose(1, f"p{i}".encode())
        h.stabilize()
    assert h.raft(1).log.committed == 5
    progress = h.raft(1).prs[2]
    assert (progress.state, progress.match, progress.inflights.count()) == (
        ProgressState.REPLICATE,
        1,
        2,
    )
    h.recover()
    h.stabilize()
    assert h.raft(2).log.last_index() == 1  # nothing moves by itself
    h.take_transcript()
    h.tick(1)  # heartbeat
    h.stabilize()
    assert [line for line in h.transcript if "1->2" in line or "2->1" in line] == [
        "1->2 HEARTBEAT t1 c1",
        "2->1 HEARTBEAT_RESPONSE t1",
        "1->2 APPEND t1 i3 lt1 +2 c5",
        "2->1 APPEND_RESPONSE t1 i3 reject hint1 lt1",
        "1->2 APPEND t1 i1 lt1 +4 c5",
        "2->1 APPEND_RESPONSE t1 i5",
        # The probe's success unpauses the follower: the commit index is resent.
        "1->2 APPEND t1 i5 lt1 +0 c5",
        "2->1 APPEND_RESPONSE t1 i5",
    ]
    assert h.applied_data(2) == [b"p0", b"p1", b"p2", b"p3"]
    assert h.raft(1).prs[2].state == ProgressState.REPLICATE


def test_5_3_rejection_in_replicate_state_falls_back_to_probe() -> None:
    """Progress tracking: a follower in replicate state that rejects an append has
    lost part of the stream; the leader probes again from just after its match."""
    h = Cluster(3, **PAPER)
    elect(h)
    h.propose(1, b"a")
    h.stabilize()
    progress = h.raft(1).prs[2]
    assert progress.state == ProgressState.REPLICATE
    # A stale rejection (at or below match) is ignored.
    h.step(
        1,
        Message(MT.APPEND_RESPONSE, 2, 1, term=1, index=2, reject=True, reject_hint=1, log_term=1),
    )
    assert (progress.state, progress.next, progress.match) == (ProgressState.REPLICATE, 3, 2)
    h.step(
        1,
        Message(MT.APPEND_RESPONSE, 2, 1, term=1, index=3, reject=True, reject_hint=1, log_term=1),
    )
    assert (progress.state, progress.next, progress.match) == (ProgressState.PROBE, 3, 2)
    rd = h.process_ready(1)
    assert rd is not None
    assert [describe(m) for m in rd.messages] == ["1->2 APPEND t1 i2 lt1 +0 c2"]


def test_5_3_probe_ends_when_an_answer_confirms_the_known_match() -> None:
    """Progress tracking: an acknowledgement of exactly the match the leader already
    knows proves the logs agree up to there, so probing gives way to streaming
    (without it the follower would stay in probe until the next proposal)."""
    h = Cluster(3, **PAPER)
    elect(h)
    h.propose(1, b"a")
    h.stabilize()
    progress = h.raft(1).prs[2]
    progress.become_probe()
    assert (progress.state, progress.match) == (ProgressState.PROBE, 2)
    h.step(1, Message(MT.APPEND_RESPONSE, 2, 1, term=1, index=2))
    assert (progress.state, progress.next, progress.match) == (ProgressState.REPLICATE, 3, 2)


def test_5_3_probe_state_sends_one_append_at_a_time() -> None:
    """Progress tracking: while the leader does not know where a follower's log
    matches, it sends a single append and waits for its answer."""
    h = Cluster(3, **PAPER)
    h.campaign(1)
    h.process_ready(1)
    h.deliver()
    h.process_all()
    h.deliver(to=1)  # votes: 1 becomes leader, probes
    rd = h.process_ready(1)
    assert rd is not None
    assert h.raft(1).prs[2].state == ProgressState.PROBE
    for i in range(3):
        h.propose(1, b"%d" % i)
    rd2 = h.process_ready(1)
    assert rd2 is not None
    assert [m for m in rd2.messages if m.dst == 2] == []
    assert h.raft(1).role == Role.LEADER


def test_5_3_consistency_check_never_matches_an_entry_the_follower_lacks() -> None:
    """Figure 2, receiver step 2, for a malformed append naming term 0 for an index
    beyond the follower's log: "does not contain an entry at prevLogIndex" must mean
    rejection; the entry must not be appended at the wrong position."""
    h = Cluster(3, **PAPER)
    h.step(
        2,
        Message(
            MT.APPEND, 1, 2, term=1, index=3, log_term=0, entries=(Entry(1, 4, b"x"),), commit=4
        ),
    )
    log = h.raft(2).log
    assert (log.last_index(), log.committed, log.unstable.entries) == (0, 0, [])
    rd = h.process_ready(2)
    assert rd is not None
    assert rd.entries == ()
    assert [describe(m) for m in rd.persisted_messages] == [
        "2->1 APPEND_RESPONSE t1 i3 reject hint0 lt0"
    ]
