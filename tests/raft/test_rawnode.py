"""The RawNode driver API, configuration validation, and restart from storage
(Figure 2: currentTerm, votedFor and log[] are persistent state)."""

from __future__ import annotations

import random

import pytest

from herald.errors import (
    ConfigError,
    InvariantError,
    NotLeaderError,
    UsageError,
    WrongGroupError,
)
from herald.raft import (
    NONE,
    Config,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    Role,
)
from herald.raft.progress import ProgressState

from .harness import Cluster, case_id, describe, make_entries

MT = MessageType
PAPER = {"pre_vote": False, "check_quorum": False}


def elect(h: Cluster, node: int = 1) -> None:
    h.campaign(node)
    h.stabilize()
    assert h.leader() == node


def lone_node(**overrides: object) -> RawNode:
    config = Config(id=1, voters=(1, 2, 3), group=7, **overrides)  # type: ignore[arg-type]
    return RawNode(config, MemoryStorage((1, 2, 3)), random.Random(1))


# -- step ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("group", "dst"), [(8, 1), (0, 1), (7, 2), (7, 0)])
def test_step_rejects_messages_for_another_group_or_node(group: int, dst: int) -> None:
    """RawNode.step: a message for another group or another node is a caller bug
    (WrongGroupError, a UsageError) and changes nothing."""
    node = lone_node()
    message = Message(MT.APPEND, 2, dst, term=5, group=group)
    with pytest.raises(WrongGroupError):
        node.step(message)
    assert isinstance(WrongGroupError("x"), UsageError)
    assert node.raft.term == 0
    assert not node.has_ready()


def test_step_accepts_messages_of_its_group() -> None:
    node = lone_node()
    node.step(Message(MT.HEARTBEAT, 2, 1, term=5, group=7))
    assert (node.raft.term, node.raft.lead) == (5, 2)


@pytest.mark.parametrize("kind", [MT.APPEND, MT.VOTE, MT.HEARTBEAT, MT.TIMEOUT_NOW], ids=case_id)
def test_step_ignores_messages_from_non_voters(kind: MessageType) -> None:
    """RawNode.step: only voters of the group are heard."""
    node = lone_node()
    node.step(Message(kind, 9, 1, term=5, group=7))
    assert (node.raft.term, node.raft.lead, node.raft.role) == (0, NONE, Role.FOLLOWER)
    assert not node.has_ready()


def test_node_outside_voters_never_campaigns() -> None:
    """A node whose id is not among the voters is not promotable."""
    config = Config(id=4, voters=(1, 2, 3))
    node = RawNode(config, MemoryStorage((1, 2, 3)), random.Random(0))
    for _ in range(100):
        node.tick()
    node.campaign()
    assert (node.raft.role, node.raft.term) == (Role.FOLLOWER, 0)
    assert not node.has_ready()


# -- proposals and other inputs ----------------------------------------------------------


def test_propose_on_follower_names_the_leader() -> None:
    h = Cluster(3)
    elect(h)
    with pytest.raises(NotLeaderError) as info:
        h.propose(2, b"x")
    assert (info.value.leader, info.value.term) == (1, 1)
    with pytest.raises(NotLeaderError) as info:
        Cluster(3).propose(1, b"x")
    assert info.value.leader == NONE


def test_propose_many_sends_one_append_per_follower() -> None:
    h = Cluster(3, **PAPER)
    elect(h)
    assert h.node(1).propose_many([b"a", b"b", b"c"]) == 2
    rd = h.process_ready(1)
    assert rd is not None
    assert [describe(m) for m in rd.messages] == [
        "1->2 APPEND t1 i1 lt1 +3 c1",
        "1->3 APPEND t1 i1 lt1 +3 c1",
    ]
    with pytest.raises(UsageError):
        h.node(1).propose_many([])
    h.stabilize()
    assert h.applied_data(3) == [b"a", b"b", b"c"]


def test_campaign_on_leader_does_nothing() -> None:
    h = Cluster(3)
    elect(h)
    h.campaign(1)
    assert (h.raft(1).role, h.raft(1).term) == (Role.LEADER, 1)
    assert h.process_ready(1) is None


def test_status_reports_leader_progress() -> None:
    h = Cluster(3, **PAPER)
    elect(h)
    h.isolate(3)
    h.propose(1, b"x")
    h.stabilize()
    status = h.node(1).status()
    assert (status.id, status.term, status.vote, status.role, status.leader) == (
        1,
        1,
        1,
        Role.LEADER,
        1,
    )
    assert (status.commit, status.applied, status.last_index) == (2, 2, 2)
    assert status.progress == ((1, 2), (2, 2), (3, 1))
    assert h.node(2).status().progress == ()


def test_report_unreachable_moves_replicating_follower_to_probe() -> None:
    h = Cluster(3, **PAPER)
    elect(h)
    assert h.raft(1).prs[2].state == ProgressState.REPLICATE
    h.node(1).report_unreachable(2)
    assert h.raft(1).prs[2].state == ProgressState.PROBE
    h.node(2).report_unreachable(1)  # not a leader: ignored
    h.propose(1, b"x")
    h.stabilize()
    assert h.applied_data(2) == [b"x"]


# -- Config validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"id": 0},
        {"id": -1},
        {"voters": ()},
        {"voters": (1, 1, 2)},
        {"voters": (1, 0)},
        {"heartbeat_tick": 0},
        {"election_tick": 1, "heartbeat_tick": 1},
        {"election_tick": 5, "election_tick_max": 4},
        {"max_inflight_msgs": 0},
        {"max_size_per_msg": 0},
        {"max_committed_size_per_ready": 0},
        {"applied": -1},
        {"group": -1},
    ],
    ids=lambda fields: ",".join(f"{k}={v}" for k, v in fields.items()),
)
def test_config_rejects_bad_values(fields: dict[str, object]) -> None:
    settings: dict[str, object] = {"id": 1, "voters": (1, 2, 3), **fields}
    with pytest.raises(ConfigError):
        Config(**settings)  # type: ignore[arg-type]


def test_config_defaults_are_valid() -> None:
    config = Config(id=1, voters=(1,))
    assert (config.election_tick, config.randomized_election_max) == (10, 19)
    assert config.snapshot_timeout == 20
    assert isinstance(ConfigError("x"), UsageError)


# -- restart ----------------------------------------------------------------------------------


def test_restart_preserves_term_vote_and_log() -> None:
    """Figure 2: currentTerm, votedFor and log[] survive a crash; a restarted node
    starts as a follower with them."""
    h = Cluster(3, **PAPER)
    h.campaign(2)
    h.stabilize()
    h.propose(2, b"x")
    h.stabilize()
    h.crash(1)
    node = h.restart(1)
    status = node.status()
    assert (status.term, status.vote, status.role, status.leader) == (1, 2, Role.FOLLOWER, NONE)
    assert status.last_index == 2
    assert status.commit == 2
    assert h.log_terms(1) == [1, 1]


def test_restarted_node_cannot_vote_twice_in_a_term() -> None:
    """Figure 2 (votedFor is persistent): after a restart the node still refuses a
    second candidate of the term it voted in."""
    h = Cluster(3, **PAPER)
    h.step(1, Message(MT.VOTE, 2, 1, term=3))
    h.process_all()
    h.crash(1)
    h.restart(1)
    h.step(1, Message(MT.VOTE, 3, 1, term=3))
    rd = h.process_ready(1)
    assert rd is not None
    assert [describe(m) for m in rd.persisted_messages] == ["1->3 VOTE_RESPONSE t3 reject"]


def test_restarted_leader_reapplies_committed_entries_in_order() -> None:
    """A restart without a snapshot re-applies committed entries from index 1."""
    h = Cluster(3, **PAPER)
    elect(h)
    for data in (b"a", b"b"):
        h.propose(1, data)
    h.stabilize()
    h.crash(1)
    h.restart(1)
    assert h.node(1).status().applied == 0
    h.process_all()
    assert h.applied_data(1) == [b"a", b"b"]
    assert [e.index for e in h.peers[1].applied] == [1, 2, 3, 1, 2, 3]


def test_restart_with_snapshot_starts_applied_at_snapshot_index() -> None:
    """Section 7: a node that restarts over a snapshot has applied = snapshot index and
    reads the log from the snapshot on."""
    storage = MemoryStorage((1, 2, 3))
    storage.append(make_entries([1, 1, 1, 2, 2]))
    storage.create_snapshot(3, storage.snapshot().meta.conf, b"[]")
    storage.compact(3)
    storage.set_hard_state(HardState(term=2, vote=1, commit=4))
    config = Config(id=1, voters=(1, 2, 3), applied=3)
    node = RawNode(config, storage, random.Random(0))
    status = node.status()
    assert (status.applied, status.commit, status.last_index, status.term) == (3, 4, 5, 2)
    rd = node.ready()
    assert [e.index for e in rd.committed_entries] == [4]
    assert rd.hard_state is None


def test_restart_with_commit_beyond_log_is_refused() -> None:
    """A hard state whose commit index lies beyond the stored log means the log was
    lost or corrupted: the core refuses to start rather than serve from it."""
    storage = MemoryStorage((1, 2, 3))
    storage.append(make_entries([1, 1]))
    storage.set_hard_state(HardState(term=1, vote=0, commit=5))
    with pytest.raises(InvariantError):
        RawNode(Config(id=1, voters=(1, 2, 3)), storage, random.Random(0))


def test_crash_and_restart_whole_cluster_keeps_committed_entries() -> None:
    """State machine safety across full-cluster restarts."""
    h = Cluster(3)
    elect(h)
    h.propose(1, b"a")
    h.stabilize()
    for node in h.ids:
        h.crash(node)
    for node in h.ids:
        h.restart(node)
    h.campaign(3)
    h.stabilize()
    assert h.leader() == 3
    h.propose(3, b"b")
    h.stabilize()
    assert [h.applied_data(i) for i in h.ids] == [[b"a", b"b"]] * 3
    assert h.safety_violations() == []
