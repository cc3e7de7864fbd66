"""Log compaction: Raft paper section 7 (InstallSnapshot), and MemoryStorage, the
core's read-only view of stable storage."""

from __future__ import annotations

import pytest

from herald.errors import CompactedError, InvariantError, UnavailableError
from herald.raft import (
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)
from herald.raft.progress import ProgressState
from herald.raft.storage import limit_size

from .harness import Cluster, describe, make_entries

MT = MessageType
PAPER = {"pre_vote": False, "check_quorum": False}


def elect(h: Cluster, node: int = 1) -> None:
    h.campaign(node)
    h.stabilize()
    assert h.leader() == node


def lagging_follower(h: Cluster, proposals: int = 5) -> int:
    """Node 3 misses ``proposals`` entries; the leader compacts them away. Returns the
    snapshot index."""
    elect(h)
    h.propose(1, b"before")
    h.stabilize()
    h.isolate(3)
    for i in range(proposals):
        h.propose(1, b"p%d" % i)
    h.stabilize()
    applied = h.raft(1).log.applied
    h.compact(1, applied)
    h.recover()
    h.take_transcript()
    h.dropped.clear()
    return applied


# -- section 7: InstallSnapshot ------------------------------------------------------------


def test_7_leader_sends_snapshot_to_follower_that_needs_compacted_entries() -> None:
    """Section 7: "the leader must occasionally send snapshots to followers that lag
    behind"; the follower discards its log, installs the snapshot and then
    receives the rest by ordinary appends."""
    h = Cluster(3, **PAPER)
    index = lagging_follower(h)
    assert index == 7
    assert h.peers[1].storage.first_index() == 8
    h.tick(1)  # heartbeat: the follower answers, the leader finds entries compacted
    h.stabilize()
    to_3 = [line for line in h.transcript if line.startswith(("1->3", "3->1"))]
    assert to_3 == [
        "1->3 HEARTBEAT t1 c2",
        "3->1 HEARTBEAT_RESPONSE t1",
        # The leader streamed 2..7 optimistically; they were lost.
        "1->3 APPEND t1 i7 lt1 +0 c7",
        "3->1 APPEND_RESPONSE t1 i7 reject hint2 lt1",
        # Probing from 3 needs entries 3..7 (and the term of 2): compacted.
        "1->3 SNAPSHOT t1 snap i7 t1",
        "3->1 APPEND_RESPONSE t1 i7",
        "1->3 APPEND t1 i7 lt1 +0 c7",
        "3->1 APPEND_RESPONSE t1 i7",
    ]
    snapshot_readies = [rd for n, rd in h.readies if n == 3 and rd.snapshot is not None]
    assert len(snapshot_readies) == 1
    assert snapshot_readies[0].must_sync
    assert snapshot_readies[0].committed_entries == ()
    assert h.applied_data(3) == [b"before", b"p0", b"p1", b"p2", b"p3", b"p4"]
    assert h.peers[3].storage.first_index() == 8
    assert h.node(3).status().applied == 7
    assert h.raft(1).prs[3].state == ProgressState.REPLICATE
    h.propose(1, b"after")
    h.stabilize()
    assert h.applied_data(3)[-1] == b"after"
    assert h.safety_violations() == []


def test_7_stale_snapshot_is_ignored() -> None:
    """Section 7, InstallSnapshot receiver: a snapshot that does not go beyond what the
    follower has committed is discarded (even if the follower compacted the entry the
    snapshot ends with); the reply tells the leader its commit."""
    h = Cluster(3, **PAPER, logs={2: [1] * 6})
    h.step(2, Message(MT.APPEND, 1, 2, term=1, index=6, log_term=1, commit=5))
    h.process_all()
    h.compact(2, 5)
    stale = Snapshot(SnapshotMeta(index=4, term=1, conf=ConfState((1, 2, 3))), b"[]")
    h.step(2, Message(MT.SNAPSHOT, 1, 2, term=1, snapshot=stale))
    rd = h.node(2).ready()
    assert rd.snapshot is None
    assert [describe(m) for m in rd.persisted_messages] == ["2->1 APPEND_RESPONSE t1 i5"]
    assert h.log_terms(2) == [1]  # entry 6; 1-5 compacted
    assert (h.raft(2).log.first_index(), h.raft(2).log.committed) == (6, 5)
    assert h.applied_data(2) == [b"e1t1", b"e2t1", b"e3t1", b"e4t1", b"e5t1"]


def test_7_snapshot_whose_last_entry_follower_has_fast_forwards_commit() -> None:
    """Section 7: "If the follower receives a snapshot that describes a prefix of its
    log ..., entries covered by the snapshot are deleted but entries following the
    snapshot are still valid and must be retained": the log is kept, and the commit
    index moves to the snapshot's index."""
    h = Cluster(3, **PAPER, logs={2: [1] * 6})
    h.step(2, Message(MT.APPEND, 1, 2, term=1, index=6, log_term=1, commit=2))
    h.process_ready(2)
    covered = Snapshot(SnapshotMeta(index=4, term=1, conf=ConfState((1, 2, 3))), b"[]")
    h.step(2, Message(MT.SNAPSHOT, 1, 2, term=1, snapshot=covered))
    rd = h.node(2).ready()
    assert rd.snapshot is None
    assert [describe(m) for m in rd.persisted_messages] == ["2->1 APPEND_RESPONSE t1 i4"]
    assert h.raft(2).log.committed == 4
    assert h.raft(2).log.last_index() == 6
    assert rd.hard_state == HardState(term=1, vote=0, commit=4)


def test_7_snapshot_that_conflicts_with_follower_log_replaces_it() -> None:
    """Section 7, InstallSnapshot receiver step 7: if the snapshot's last entry is not
    in the log (wrong term), discard the entire log."""
    h = Cluster(3, **PAPER, logs={2: [1] * 6}, terms={2: 2})
    snapshot = Snapshot(SnapshotMeta(index=4, term=2, conf=ConfState((1, 2, 3))), b"[]")
    h.step(2, Message(MT.SNAPSHOT, 1, 2, term=2, snapshot=snapshot))
    assert (h.raft(2).log.first_index(), h.raft(2).log.last_index()) == (5, 4)
    rd = h.node(2).ready()
    assert rd.snapshot == snapshot
    assert rd.entries == ()
    assert [describe(m) for m in rd.persisted_messages] == ["2->1 APPEND_RESPONSE t2 i4"]
    h.handle_ready(2, rd)
    storage = h.peers[2].storage
    assert (storage.first_index(), storage.last_index(), storage.term(4)) == (5, 4, 2)
    assert h.node(2).status().applied == 4


def test_7_snapshot_timeout_makes_the_leader_probe_again() -> None:
    """Section 7 with a lost InstallSnapshot: after snapshot_timeout_tick ticks without
    an answer the leader goes back to probing, which sends a fresh snapshot."""
    h = Cluster(3, **PAPER, snapshot_timeout_tick=5)
    lagging_follower(h)
    h.ignore(MT.SNAPSHOT)
    h.tick(1)
    h.stabilize()
    progress = h.raft(1).prs[3]
    assert progress.state == ProgressState.SNAPSHOT
    assert len(h.dropped) == 1 and "SNAPSHOT" in h.dropped[0]
    for _ in range(4):
        h.tick(1)
        h.stabilize()
    assert progress.state == ProgressState.SNAPSHOT
    h.recover()
    h.tick(1)
    assert progress.state == ProgressState.PROBE
    h.stabilize()
    snapshots = [line for line in h.transcript if "SNAPSHOT" in line]
    assert snapshots == ["1->3 SNAPSHOT t1 snap i7 t1"]
    assert progress.state == ProgressState.REPLICATE
    assert h.applied_data(3)[-1] == b"p4"


def test_7_nothing_else_is_sent_while_a_snapshot_is_in_flight() -> None:
    """Progress tracking: in snapshot state the follower gets no appends until the
    snapshot is acknowledged."""
    h = Cluster(3, **PAPER)
    lagging_follower(h)
    h.tick(1)
    h.run_until(lambda: h.raft(1).prs[3].state == ProgressState.SNAPSHOT)
    h.process_all()
    assert [m.type for m in h.queue if m.dst == 3] == [MT.SNAPSHOT]
    h.propose(1, b"more")
    h.process_all()
    assert [m.type for m in h.queue if m.dst == 3] == [MT.SNAPSHOT]


def test_7_failed_snapshot_report_returns_to_probe() -> None:
    """RawNode.report_snapshot(failure): the leader forgets the pending snapshot and
    probes again once it hears from the follower."""
    h = Cluster(3, **PAPER)
    lagging_follower(h)
    h.ignore(MT.SNAPSHOT)
    h.tick(1)
    h.stabilize()
    progress = h.raft(1).prs[3]
    assert (progress.state, progress.pending_snapshot) == (ProgressState.SNAPSHOT, 7)
    h.node(1).report_snapshot(3, success=False)
    assert (progress.state, progress.pending_snapshot, progress.is_paused()) == (
        ProgressState.PROBE,
        0,
        True,
    )
    h.recover()
    h.tick(1)
    h.stabilize()
    assert progress.state == ProgressState.REPLICATE
    assert h.applied_data(3)[-1] == b"p4"


def test_7_restarted_follower_with_snapshot_starts_applied_at_snapshot() -> None:
    """Section 7: after a restart the state machine is loaded from the snapshot; the
    node starts with applied = snapshot index and re-applies only what follows."""
    h = Cluster(3, **PAPER)
    elect(h)
    for i in range(4):
        h.propose(1, b"p%d" % i)
    h.stabilize()
    h.compact(2, 3)
    h.crash(2)
    node = h.restart(2)
    assert node.status().applied == 3
    assert node.status().commit == 5
    before = len(h.peers[2].applied)
    h.stabilize()
    reapplied = h.peers[2].applied[before:]
    assert [e.index for e in reapplied] == [4, 5]
    assert h.applied_data(2) == [b"p0", b"p1", b"p2", b"p3"]


# -- MemoryStorage ---------------------------------------------------------------------------


def storage_with(terms: list[int]) -> MemoryStorage:
    storage = MemoryStorage((1, 2, 3))
    storage.append(make_entries(terms))
    return storage


def test_storage_starts_empty() -> None:
    storage = MemoryStorage((1, 2))
    assert (storage.first_index(), storage.last_index(), storage.term(0)) == (1, 0, 0)
    assert storage.entries(1, 1, 100) == []
    assert storage.initial_state() == (HardState(), ConfState((1, 2)))
    assert storage.snapshot().is_empty()
    with pytest.raises(UnavailableError):
        storage.term(1)
    with pytest.raises(UnavailableError):
        storage.entries(1, 2, 100)


def test_storage_append_replaces_conflicting_suffix() -> None:
    storage = storage_with([1, 1, 1, 1, 1])
    storage.append([Entry(2, 3), Entry(2, 4)])
    assert storage.last_index() == 4
    assert [e.term for e in storage.entries(1, 5, 1 << 20)] == [1, 1, 2, 2]


def test_storage_append_with_a_gap_is_an_invariant_error() -> None:
    storage = storage_with([1, 1])
    with pytest.raises(InvariantError):
        storage.append([Entry(1, 4)])


def test_storage_append_skips_compacted_entries() -> None:
    storage = storage_with([1, 1, 1, 1])
    storage.compact(3)
    storage.append(make_entries([1, 1], start=1))  # all compacted: ignored
    assert (storage.first_index(), storage.last_index()) == (4, 4)
    storage.append(make_entries([1, 2, 2], start=3))  # 3 compacted, 4-5 applied
    assert (storage.first_index(), storage.last_index()) == (4, 5)
    assert [storage.term(i) for i in (3, 4, 5)] == [1, 2, 2]


def test_storage_entries_errors_and_size_limit() -> None:
    storage = storage_with([1, 1, 2, 2, 3])
    storage.compact(2)
    with pytest.raises(CompactedError):
        storage.entries(2, 4, 1 << 20)
    with pytest.raises(UnavailableError):
        storage.entries(3, 7, 1 << 20)
    one = Entry(0, 0, b"e3t2").size()
    assert [e.index for e in storage.entries(3, 6, 1 << 20)] == [3, 4, 5]
    assert [e.index for e in storage.entries(3, 6, 2 * one)] == [3, 4]
    assert [e.index for e in storage.entries(3, 6, 0)] == [3]  # never empty


def test_storage_compact_keeps_term_of_last_compacted_entry() -> None:
    storage = storage_with([1, 2, 3, 4])
    storage.compact(2)
    assert (storage.first_index(), storage.last_index()) == (3, 4)
    assert storage.term(2) == 2  # the probe for index 3 needs it
    with pytest.raises(CompactedError):
        storage.term(1)
    storage.compact(1)  # already compacted: nothing happens
    assert storage.first_index() == 3
    with pytest.raises(InvariantError):
        storage.compact(5)


def test_storage_create_snapshot() -> None:
    storage = storage_with([1, 2, 2])
    conf = ConfState((1, 2, 3))
    snapshot = storage.create_snapshot(2, conf, b"state")
    assert snapshot == Snapshot(SnapshotMeta(index=2, term=2, conf=conf), b"state")
    assert storage.snapshot() == snapshot
    assert storage.create_snapshot(1, conf, b"older") == snapshot  # not newer: unchanged
    with pytest.raises(InvariantError):
        storage.create_snapshot(4, conf, b"future")
    # Creating a snapshot does not compact by itself.
    assert storage.first_index() == 1


def test_storage_apply_snapshot_replaces_log_and_ignores_stale() -> None:
    storage = storage_with([1, 1, 1])
    snapshot = Snapshot(SnapshotMeta(index=10, term=4, conf=ConfState((1, 2))), b"s")
    storage.apply_snapshot(snapshot)
    assert (storage.first_index(), storage.last_index(), storage.term(10)) == (11, 10, 4)
    assert storage.snapshot() == snapshot
    with pytest.raises(CompactedError):
        storage.term(9)
    storage.apply_snapshot(Snapshot(SnapshotMeta(index=5, term=3), b"old"))
    assert storage.snapshot() == snapshot
    storage.append(make_entries([4, 5], start=11))
    assert storage.last_index() == 12


def test_limit_size_keeps_at_least_one_entry() -> None:
    entries = make_entries([1, 1, 1])
    size = entries[0].size()
    assert limit_size(entries, 0) == entries[:1]
    assert limit_size(entries, size * 2) == entries[:2]
    assert limit_size(entries, size * 3) == entries
    assert limit_size([], 0) == []
