"""The node host obeys the Ready contract and recovers from what its log store kept."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

import pytest

from herald.errors import NotLeaderError
from herald.node.host import DurableState, NodeHost
from herald.raft import (
    Config,
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)
from herald.sim.storage import SimLogStore
from herald.sim.world import DigestStateMachine
from herald.storage import DiskFaults, SimFileSystem, WalLogStore


class RecordingTransport:
    def __init__(self, store: SimLogStore) -> None:
        self.store = store
        self.sent: list[tuple[Message, int]] = []  # message, unsynced writes when sent

    def send(self, messages: Sequence[Message]) -> None:
        for message in messages:
            self.sent.append((message, self.store.unsynced_writes))


def single_node(store: SimLogStore | None = None, **kw: int) -> tuple[NodeHost, SimLogStore]:
    store = store or SimLogStore()
    host = NodeHost(
        Config(id=1, voters=(1,)),
        store,
        RecordingTransport(store),
        DigestStateMachine(),
        random.Random(1),
        **kw,
    )
    return host, store


def wal_host(
    fs: SimFileSystem, *, checkpoint_slice: int, snapshot_entries: int
) -> tuple[NodeHost, WalLogStore]:
    """A single voter over the real write-ahead log on a simulated disk."""
    store = WalLogStore(fs, "/data", segment_size=4096, checkpoint_slice=checkpoint_slice)
    host = NodeHost(
        Config(id=1, voters=(1,)),
        store,
        RecordingTransport(SimLogStore()),
        DigestStateMachine(),
        random.Random(1),
        snapshot_entries=snapshot_entries,
    )
    return host, store


def elect(host: NodeHost) -> None:
    host.node.campaign()
    host.process_all()


def test_single_node_commits_after_its_own_fsync() -> None:
    host, store = single_node()
    elect(host)
    index, term = host.propose(b"x")
    rd = host.begin()
    assert rd is not None and rd.entries and rd.must_sync
    assert not rd.committed_entries  # not durable yet, so not committed
    host.sync(rd)
    host.finish(rd)
    host.process_all()
    assert host.node.raft.log.applied == index
    assert store.load().last_index == index
    assert store.entries(index, index + 1, 1 << 20) == [Entry(term, index, b"x")]


def test_restart_keeps_term_vote_and_log() -> None:
    host, store = single_node()
    elect(host)
    host.propose(b"a")
    host.process_all()
    term = host.node.raft.term
    restarted, _ = single_node(store)
    assert restarted.node.raft.term == term
    assert restarted.node.raft.vote == 1
    assert restarted.node.raft.log.last_index() == 2


def test_crash_before_sync_loses_the_unsynced_write() -> None:
    host, store = single_node()
    elect(host)
    host.propose(b"lost")
    rd = host.begin()
    assert rd is not None
    store.crash()
    restarted, _ = single_node(store)
    assert restarted.node.raft.log.last_index() == 1  # only the leader's no-op survived


def test_restart_with_commit_behind_snapshot() -> None:
    """Corpus seeds 229/262: commit-only hard states are not fsynced, snapshots are."""
    store = SimLogStore()
    entries = [Entry(1, i, b"e%d" % i) for i in range(1, 61)]
    store.write(HardState(1, 1, 40), entries, None)
    store.sync()
    machine = DigestStateMachine()
    for entry in entries[:50]:
        machine.apply(entry)
    snapshot = Snapshot(SnapshotMeta(50, 1, ConfState((1,))), machine.snapshot())
    store.save_snapshot(snapshot)
    host, _ = single_node(store)
    assert host.node.raft.log.committed == 50
    assert host.node.raft.log.applied == 50


def test_snapshot_and_compaction_after_threshold() -> None:
    host, store = single_node(snapshot_entries=10, retain_entries=2)
    elect(host)
    for i in range(25):
        host.propose(b"p%d" % i)
        host.process_all()
    snapshot = store.load().snapshot
    assert snapshot is not None and snapshot.index >= 20
    assert host.storage.first_index() > 10
    restarted, _ = single_node(store)
    assert restarted.node.raft.log.applied == snapshot.index


def test_follower_refuses_proposals() -> None:
    store = SimLogStore()
    host = NodeHost(
        Config(id=2, voters=(1, 2, 3)),
        store,
        RecordingTransport(store),
        DigestStateMachine(),
        random.Random(2),
    )
    with pytest.raises(NotLeaderError):
        host.propose(b"x")


def test_votes_leave_only_after_fsync() -> None:
    """Ready contract step 3: a vote request is sent only once term and vote are durable."""
    store = SimLogStore()
    transport = RecordingTransport(store)
    host = NodeHost(
        Config(id=1, voters=(1, 2, 3), pre_vote=False),
        store,
        transport,
        DigestStateMachine(),
        random.Random(3),
    )
    host.node.campaign()
    rd = host.begin()
    assert rd is not None and rd.must_sync
    assert not transport.sent
    host.sync(rd)
    host.finish(rd)
    votes = [(m, unsynced) for m, unsynced in transport.sent if m.type == MessageType.VOTE]
    assert len(votes) == 2
    assert all(unsynced == 0 for _, unsynced in votes)
    assert store.load().hard_state.vote == 1


class CutBackStore(SimLogStore):
    """A store whose last load found a cut-back log at term 1."""

    def __init__(self) -> None:
        super().__init__()
        self.recovered_calls = 0

    def load(self) -> DurableState:
        return replace(super().load(), recovering_term=1)

    def mark_recovered(self) -> None:
        self.recovered_calls += 1


def test_host_reports_recovery_to_the_store() -> None:
    """A lone voter has nobody to catch up from: it leads, and the marker is dropped."""
    store = CutBackStore()
    host, _ = single_node(store)
    elect(host)
    assert host.node.raft.role.name == "LEADER"
    assert store.recovered_calls == 1


def test_recovering_follower_keeps_the_marker() -> None:
    store = CutBackStore()
    host = NodeHost(
        Config(id=2, voters=(1, 2, 3)),
        store,
        RecordingTransport(store),
        DigestStateMachine(),
        random.Random(2),
    )
    assert host.node.status().recovering
    for _ in range(100):
        host.tick()
        host.process_all()
    assert host.node.status().recovering
    assert host.node.raft.role.name == "FOLLOWER"
    assert store.recovered_calls == 0


def test_the_marker_stays_until_the_entries_that_end_recovery_are_durable() -> None:
    """Regression: the marker went as soon as the core's log (unstable entries
    included) held an entry of a later term. An entry still on its way to the
    disk, lost in a crash, left a node with the cut-back log and no marker, which
    then voted as if it had caught up."""
    store = CutBackStore()
    host = NodeHost(
        Config(id=2, voters=(1, 2, 3)),
        store,
        RecordingTransport(store),
        DigestStateMachine(),
        random.Random(2),
    )
    term = host.node.raft.term  # moved past the recovering term (1)
    host.step(Message(MessageType.HEARTBEAT, src=1, dst=2, term=term))
    first = host.begin()  # the new leader's term, being written
    assert first is not None
    # While that write is in flight, the leader's entries of its term arrive.
    append = Message(
        MessageType.APPEND,
        src=1,
        dst=2,
        term=term,
        index=0,
        log_term=0,
        entries=(Entry(term, 1, b"x"),),
    )
    host.step(append)
    assert not host.node.raft.recovering()  # the core's log holds a later term ...
    host.sync(first)
    host.finish(first)
    assert store.recovered_calls == 0  # ... but not durably: the marker stays
    second = host.begin()
    assert second is not None and second.entries
    host.sync(second)
    host.finish(second)
    assert store.recovered_calls == 1


def test_an_idle_host_starts_and_keeps_its_checkpoint_with_syncs_of_its_own() -> None:
    """A checkpoint is started and kept by syncs, and syncs came only with writes:
    after a burst an idle node left its checkpoint unwritten or unkept, and a
    restart replayed the log from the checkpoint before. Idle, the host asks for
    syncs that hold nothing else; the world writes the slices in between."""
    fs = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))
    host, store = wal_host(fs, checkpoint_slice=4, snapshot_entries=3)
    elect(host)
    idle = slices = 0
    for n in range(4):
        host.propose(b"x%d" % n)
    while True:
        rd = host.begin()
        if rd is None:
            if not host.wants_checkpoint_writes:
                break
            host.write_checkpoint()  # what the runtime's checkpoint thread does
            slices += 1
            continue
        if not (rd.entries or rd.committed_entries or rd.messages or rd.hard_state):
            idle += 1
            assert rd.must_sync and store.checkpoint_wants_sync
        host.sync(rd)
        host.finish(rd)
    assert idle == 2  # one to start it, one to keep it
    assert slices > 2  # the checkpoint (about 60 bytes) took several slices
    assert not store.checkpoint_wants_sync and not store.checkpoint_wants_writes
    assert any(name.startswith("ckpt-") and name.endswith(".snap") for name in fs.list_dir("/data"))
    assert host.log_store.promote(1 << 40) > 0  # kept


def test_a_clean_stop_checkpoints_what_is_applied_so_a_restart_replays_nothing() -> None:
    fs = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))

    def start() -> tuple[NodeHost, WalLogStore]:
        # No checkpoint of its own in this test.
        return wal_host(fs, checkpoint_slice=16, snapshot_entries=1000)

    host, store = start()
    elect(host)
    for n in range(20):
        host.propose(b"m%d" % n)
        host.process_all()
    applied = host.node.raft.log.applied
    digest = host.state_machine.snapshot()
    host.checkpoint_at_stop()
    store.close(clean=True)
    restarted, _ = start()
    assert restarted.node.raft.log.applied == applied  # restored, not replayed
    assert restarted.state_machine.snapshot() == digest
    rd = restarted.begin()
    assert rd is None or not rd.committed_entries
