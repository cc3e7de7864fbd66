"""The test harness itself: deterministic, and its network rules do what they say."""

from __future__ import annotations

from herald.raft import (
    ConfState,
    Entry,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)

from .harness import Cluster, describe

MT = MessageType


def chaotic_run(seed: int) -> tuple[list[str], list[int]]:
    h = Cluster(5, seed=seed)
    h.tick_all(30)
    leader = h.leader()
    assert leader is not None
    h.propose(leader, b"a")
    h.isolate(leader)
    h.tick_all(40)
    h.recover()
    h.cut(1, 2)
    h.tick_all(40)
    h.recover()
    h.stabilize()
    return h.transcript, [h.raft(i).term for i in h.ids]


def test_same_seed_same_transcript() -> None:
    """A seed reproduces everything (DESIGN.md, principle 3)."""
    assert chaotic_run(7) == chaotic_run(7)


def test_seed_drives_election_timeouts() -> None:
    timeouts = {
        seed: [Cluster(3, seed=seed).raft(i).randomized_election_timeout for i in (1, 2, 3)]
        for seed in range(5)
    }
    assert len({tuple(v) for v in timeouts.values()}) > 1
    assert timeouts == {
        seed: [Cluster(3, seed=seed).raft(i).randomized_election_timeout for i in (1, 2, 3)]
        for seed in range(5)
    }


def test_describe_formats() -> None:
    snapshot = Snapshot(SnapshotMeta(9, 2, ConfState((1, 2))), b"")
    cases = [
        (
            Message(MT.APPEND, 1, 2, 2, index=5, log_term=1, entries=(Entry(2, 6),), commit=4),
            "1->2 APPEND t2 i5 lt1 +1 c4",
        ),
        (
            Message(MT.APPEND_RESPONSE, 2, 1, 2, index=5, reject=True, reject_hint=3, log_term=1),
            "2->1 APPEND_RESPONSE t2 i5 reject hint3 lt1",
        ),
        (
            Message(MT.VOTE, 1, 2, 3, index=7, log_term=2, transfer=True),
            "1->2 VOTE t3 i7 lt2 transfer",
        ),
        (Message(MT.PRE_VOTE_RESPONSE, 2, 1, 3, reject=True), "2->1 PRE_VOTE_RESPONSE t3 reject"),
        (Message(MT.HEARTBEAT, 1, 3, 2, commit=4, context=b"r"), "1->3 HEARTBEAT t2 c4 ctx=r"),
        (Message(MT.SNAPSHOT, 1, 3, 2, snapshot=snapshot), "1->3 SNAPSHOT t2 snap i9 t2"),
        (
            Message(MT.READ_INDEX_RESPONSE, 1, 3, 2, index=4, context=b"r"),
            "1->3 READ_INDEX_RESPONSE t2 i4 ctx=r",
        ),
        (Message(MT.TIMEOUT_NOW, 1, 3, 2), "1->3 TIMEOUT_NOW t2"),
    ]
    assert [describe(m) for m, _ in cases] == [text for _, text in cases]


def test_network_rules() -> None:
    h = Cluster(3)
    h.drop(1, 2)
    h.ignore(MT.HEARTBEAT)
    h.queue = [
        Message(MT.APPEND, 1, 2, 1),
        Message(MT.APPEND, 2, 1, 1),
        Message(MT.HEARTBEAT, 1, 3, 1),
        Message(MT.APPEND, 1, 3, 1),
    ]
    delivered = h.deliver()
    assert [describe(m) for m in delivered] == [
        "2->1 APPEND t1 i0 lt0 +0 c0",
        "1->3 APPEND t1 i0 lt0 +0 c0",
    ]
    assert h.dropped == ["1->2 APPEND t1 i0 lt0 +0 c0", "1->3 HEARTBEAT t1 c0"]
    h.recover()
    h.isolate(3)
    h.queue = [Message(MT.APPEND, 2, 3, 1), Message(MT.APPEND, 2, 1, 1)]
    assert [m.dst for m in h.deliver()] == [1]


def test_crash_loses_messages_and_volatile_state() -> None:
    h = Cluster(3)
    h.campaign(1)
    h.stabilize()
    h.propose(1, b"x")
    h.process_ready(1)
    assert any(m.src == 1 for m in h.queue)
    h.crash(1)
    assert h.queue == []
    assert h.alive() == [2, 3]
    node = h.restart(1)
    assert node.status().last_index == 2  # the entry was written before the crash
    assert h.leader() is None
