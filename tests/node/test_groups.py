"""A node of many data groups, driven by hand: routing, refusals per group, handshakes."""

from __future__ import annotations

import itertools
import random

import pytest

from herald.errors import CorruptionError, GroupCountError, UsageError, WrongGroupError
from herald.node.clock import Instant
from herald.node.config import NodeConfig
from herald.node.groups import NodeCore
from herald.node.server import ServerCore
from herald.raft import Message, MessageType
from herald.sim.storage import SimLogStore
from herald.storage import SimFileSystem
from herald.storage.layout import GROUPS_FILE, claim_group_count, group_dir
from herald.wire import protocol as w
from herald.wire.placement import group_of

from .test_server import T0, Recording

PEERS = {n: f"127.0.0.1:{7430 + n}" for n in (1, 2, 3)}


def node(groups: int = 2) -> tuple[NodeCore, Recording]:
    transport = Recording()
    config = NodeConfig(node_id=1, peers=PEERS)
    now = Instant(0, T0)

    def make(group: int) -> ServerCore:
        return ServerCore(
            config,
            SimLogStore(),
            transport,
            random.Random(group),
            now,
            group=group,
            group_count=groups,
        )

    return NodeCore(config, groups, make), transport


def run(core: NodeCore, now: Instant) -> None:
    while (rd := core.begin(now)) is not None:
        core.sync(rd)
        core.finish(rd, now)


def acknowledged(core: NodeCore, transport: Recording, now: Instant) -> None:
    """Run the node, node 2 acknowledging every append and heartbeat of every
    group (group 0's majority; group 1 has no leader to send any)."""
    for _ in range(20):
        run(core, now)
        sent, transport.sent = transport.sent, []
        answers = []
        for m in sent:
            if m.dst != 2:
                continue
            if m.type is MessageType.APPEND:
                last = m.entries[-1].index if m.entries else m.index
                answers.append(
                    Message(MessageType.APPEND_RESPONSE, 2, 1, m.term, index=last, group=m.group)
                )
            elif m.type is MessageType.HEARTBEAT:  # a read's round
                answers.append(
                    Message(
                        MessageType.HEARTBEAT_RESPONSE,
                        2,
                        1,
                        m.term,
                        context=m.context,
                        wall=T0 + now.mono,
                        group=m.group,
                    )
                )
        if not answers:
            return
        core.step(answers, now)


def lead_group_zero(core: NodeCore, transport: Recording, now: Instant) -> None:
    """Node 1 wins group 0's election with node 2's (fabricated) votes; group 1 has none."""
    core.cores[0].host.node.campaign()
    core.touch(0)
    for wanted, answer in (
        (MessageType.PRE_VOTE, MessageType.PRE_VOTE_RESPONSE),
        (MessageType.VOTE, MessageType.VOTE_RESPONSE),
    ):
        run(core, now)
        (request,) = [m for m in transport.sent if m.type is wanted and m.dst == 2]
        transport.sent.clear()
        core.step([Message(answer, src=2, dst=1, term=request.term, wall=T0)], now)
    run(core, now)
    assert core.leading() == [0]


def queue_in(group: int, groups: int = 2) -> str:
    return next(f"q{n}" for n in range(100) if group_of(f"q{n}", groups) == group)


def test_a_frame_is_split_by_group_and_a_group_it_does_not_lead_turns_away_only_its_own() -> None:
    core, transport = node()
    now = Instant(0, T0)
    lead_group_zero(core, transport, now)
    here, there = queue_in(0), queue_in(1)
    link = core.connect("c")
    core.receive(
        link,
        [
            w.CreateQueue(1, here),
            w.CreateQueue(2, there),
            w.Publish(3, here, b"a", producer="p", sequence=1),
            w.Publish(4, there, b"b", producer="p", sequence=1),
            w.Status(5),
        ],
        now,
    )
    acknowledged(core, transport, now)
    replies = {r.id: r for link_ in core.take_dirty() for r in link_.take_replies()}
    assert replies[1].ok and replies[3].ok
    for refused in (replies[2], replies[4]):
        assert refused.error is not None and refused.error.code == "NotLeaderError"
    assert set(link.refusals) == {1}
    status = replies[5].value
    assert [g["group"] for g in status["groups"]] == [0, 1]
    assert [g["role"] for g in status["groups"]] == ["leader", "follower"]
    # Only the queue's group holds it.
    assert list(core.cores[0].broker.list_queues()) == [here]
    assert list(core.cores[1].broker.list_queues()) == []
    # ListQueues names a group; one the node does not host is answered as such.
    core.receive(link, [w.ListQueues(6, 0), w.ListQueues(7, 9)], now)
    acknowledged(core, transport, now)
    replies = {r.id: r for r in link.take_replies()}
    assert replies[6].value == [here]
    assert replies[7].error is not None and replies[7].error.code == "InvalidCommandError"


def test_raft_messages_go_to_the_group_they_name_and_the_welcome_names_every_leader() -> None:
    core, transport = node()
    now = Instant(0, T0)
    lead_group_zero(core, transport, now)
    heartbeat = Message(MessageType.HEARTBEAT, src=2, dst=1, term=3, group=1)
    core.step([heartbeat], now)
    run(core, now)
    assert core.cores[1].leader == 2 and core.cores[0].leader == 1
    welcome = core.welcome()
    assert welcome.groups == 2
    assert welcome.leaders == [(1, PEERS[1]), (2, PEERS[2])]
    with pytest.raises(WrongGroupError, match="not group 2"):
        core.step([Message(MessageType.HEARTBEAT, src=2, dst=1, term=3, group=2)], now)


def test_a_peer_with_another_group_count_is_refused() -> None:
    core, _ = node()
    same = w.Hello(w.MAGIC, w.PROTOCOL_VERSION, "peer", node=2, cluster="herald", groups=2)
    other = w.Hello(w.MAGIC, w.PROTOCOL_VERSION, "peer", node=2, cluster="herald", groups=3)
    assert core.check_peer(same) == ""
    assert "--groups" in core.check_peer(other)


def test_a_node_refuses_a_count_its_cores_do_not_share() -> None:
    with pytest.raises(UsageError):
        NodeCore(NodeConfig(peers=PEERS), 0, lambda g: None)  # type: ignore[arg-type,return-value]
    core, _ = node(2)
    with pytest.raises(UsageError, match="group 0 of 2"):
        NodeCore(core.config, 3, lambda g: core.cores[0])


def test_a_data_directory_keeps_the_count_it_was_made_with() -> None:
    fs = SimFileSystem(random.Random(1))
    claim_group_count(fs, "/d", 3)
    claim_group_count(fs, "/d", 3)  # the same again: fine
    with pytest.raises(GroupCountError, match="holds a node of 3 data group"):
        claim_group_count(fs, "/d", 2)
    assert group_dir("/d", 0) == "/d" and group_dir("/d", 2) == "/d/group-2"
    # A directory of a single-group node (a log, no record) opened with more.
    fs.make_dirs("/old")
    fs.create("/old/hardstate").close()
    with pytest.raises(GroupCountError, match="of 1 data group"):
        claim_group_count(fs, "/old", 2)
    claim_group_count(fs, "/old", 1)


def test_a_damaged_group_count_is_refused_and_repaired_only_when_the_layout_agrees() -> None:
    fs = SimFileSystem(random.Random(1))
    claim_group_count(fs, "/d", 3)
    fs.make_dirs("/d/group-1")
    fs.make_dirs("/d/group-2")
    path = f"/d/{GROUPS_FILE}"
    data = bytearray(fs.read(path))
    data[len("herald-groups ")] = ord("2")  # a flipped bit: 3 -> 2
    handle = fs.create(path)
    handle.append(bytes(data))
    handle.sync()
    handle.close()
    with pytest.raises(CorruptionError):
        claim_group_count(fs, "/d", 3)
    with pytest.raises(CorruptionError):
        claim_group_count(fs, "/d", 2, repair=True)  # group-2 exists: not 2 groups
    with pytest.raises(CorruptionError):
        claim_group_count(fs, "/d", 4, repair=True)  # no group-3: not 4 groups
    claim_group_count(fs, "/d", 3, repair=True)
    claim_group_count(fs, "/d", 3)


# -- leaders spread over the nodes ---------------------------------------------------------


def lead(core: NodeCore, transport: Recording, now: Instant, group: int) -> None:
    """Node 1 wins ``group``'s election with node 2's (fabricated) votes."""
    core.cores[group].host.node.campaign()
    core.touch(group)
    for wanted, answer in (
        (MessageType.PRE_VOTE, MessageType.PRE_VOTE_RESPONSE),
        (MessageType.VOTE, MessageType.VOTE_RESPONSE),
    ):
        run(core, now)
        (request,) = [
            m for m in transport.sent if m.type is wanted and m.dst == 2 and m.group == group
        ]
        transport.sent.clear()
        core.step([Message(answer, src=2, dst=1, term=request.term, wall=T0, group=group)], now)
    run(core, now)
    assert group in core.leading()


def offers(core: NodeCore, transport: Recording, ticks: int) -> list[tuple[int, int]]:
    """Tick ``ticks`` times (node 2 acknowledging everything); the (tick, group) of
    every leadership transfer node 1 starts."""
    seen = []
    for tick in range(ticks):
        now = Instant(tick * 10_000, T0 + tick * 10_000)
        core.tick(now)
        run(core, now)
        seen += [(tick, m.group) for m in transport.sent if m.type is MessageType.TIMEOUT_NOW]
        transport.sent = [m for m in transport.sent if m.type is not MessageType.TIMEOUT_NOW]
        acknowledged(core, transport, now)
    return seen


def test_each_group_prefers_one_voter_in_turn() -> None:
    core, _ = node(groups=5)
    assert core.preferred == [1, 2, 3, 1, 2]


def test_a_leader_of_a_group_it_should_not_lead_hands_it_to_the_preferred_node() -> None:
    """Node 1 leads both groups; group 1 prefers node 2, which holds the whole log:
    after a period node 1 offers it group 1 (and never group 0, its own)."""
    core, transport = node(groups=2)
    now = Instant(0, T0)
    lead(core, transport, now, 0)
    lead(core, transport, now, 1)
    acknowledged(core, transport, now)
    period = core.config.election_tick * 3
    seen = offers(core, transport, period + 5)
    assert seen and {group for _, group in seen} == {1}
    assert seen[0][0] >= period - 1  # not before a whole period of leading
    # Node 2 never takes it (this test's node 2 only acknowledges): the offers
    # back off, each wait at least twice the one before, up to a cap.
    seen = offers(core, transport, period * 12)
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(seen)]
    assert gaps == sorted(gaps) and len(seen) <= 5, seen


def test_a_node_of_one_group_never_transfers() -> None:
    core, transport = node(groups=1)
    now = Instant(0, T0)
    lead(core, transport, now, 0)
    assert offers(core, transport, core.config.election_tick * 10) == []
