"""The server's request core, driven by hand: batching, answers, and turning writes away."""

from __future__ import annotations

import random
from collections.abc import Sequence

from herald.broker import AckMany, Batch, Tick
from herald.broker.codec import decode_entry
from herald.errors import CompactedError
from herald.node.clock import Instant
from herald.node.config import NodeConfig
from herald.node.server import ClientLink, ServerCore
from herald.raft import Entry, Message, MessageType
from herald.sim.storage import SimLogStore
from herald.wire import protocol as w

SECOND = 1_000_000
T0 = 1_800_000_000 * SECOND


class NullTransport:
    def send(self, messages: Sequence[Message]) -> None:
        pass


class Driver:
    """One single-node core with a clock that moves only when told."""

    def __init__(self, **config: object) -> None:
        self.mono = 0
        options: dict[str, object] = {"peers": {1: "127.0.0.1:7430"}, **config}
        self.core = ServerCore(
            NodeConfig(**options),  # type: ignore[arg-type]
            SimLogStore(),
            NullTransport(),
            random.Random(1),
            self.now(),
        )
        self.next_id = 0
        self.elect()

    def now(self) -> Instant:
        return Instant(self.mono, T0 + self.mono)

    def advance(self, micros: int) -> None:
        self.mono += micros

    def elect(self) -> None:
        for _ in range(200):
            if self.core.is_leader():
                break
            self.advance(10_000)
            self.core.tick(self.now())
            self.run()
        assert self.core.is_leader()
        self.run()

    def run(self) -> None:
        """Ready cycles until quiet (the single node's fsync is instant)."""
        core = self.core
        while True:
            rd = core.begin(self.now())
            if rd is None:
                return
            core.sync(rd)
            core.finish(rd, self.now())

    def rid(self) -> int:
        self.next_id += 1
        return self.next_id

    def send(self, link: ClientLink, *requests: w.Request) -> dict[int, w.Reply]:
        self.core.receive(link, requests, self.now())
        self.run()
        return {reply.id: reply for reply in link.take_replies()}


def test_writes_of_one_frame_become_one_entry_and_each_gets_its_answer() -> None:
    d = Driver()
    link = d.core.connect("c")
    replies = d.send(link, w.CreateQueue(d.rid(), "q"))
    assert all(reply.ok for reply in replies.values())
    proposed = d.core.stats["entries_proposed"]
    publishes = [w.Publish(d.rid(), "q", b"m%d" % n) for n in range(5)]
    replies = d.send(link, *publishes)
    assert d.core.stats["entries_proposed"] == proposed + 1
    values = [replies[p.id].value for p in publishes]
    assert [value[1] for value in values] == [1, 2, 3, 4, 5]
    assert all(value[4] >= 1 for value in values)  # the queue's incarnation
    assert link.unanswered == 0


def test_a_write_turned_away_is_never_overtaken_by_a_later_one_of_its_connection() -> None:
    """Regression: an OverloadedError for one publish, then a later publish of the same
    connection accepted: a producer's number 2 reached the broker before 1, which the
    broker took as the producer's first, and the retry of 1 was answered stale."""
    d = Driver(max_uncommitted_bytes=300)
    link = d.core.connect("producer")
    assert d.send(link, w.CreateQueue(d.rid(), "q"))
    first = [w.Publish(d.rid(), "q", b"x" * 100, producer="p", sequence=n) for n in (1, 2, 3, 4)]
    d.core.receive(link, first, d.now())  # nothing applies in between: the last are refused
    replies = {reply.id: reply for reply in link.take_replies()}
    refused = [p for p in first if p.id in replies]
    assert refused and all(replies[p.id].error.code == "OverloadedError" for p in refused)  # type: ignore[union-attr]
    d.run()
    link.take_replies()
    # Room again; the same connection's next publish is still turned away ...
    later = w.Publish(d.rid(), "q", b"y", producer="p", sequence=5)
    reply = d.send(link, later)[later.id]
    assert not reply.ok and reply.error is not None and reply.error.code == "OverloadedError"
    # ... while a new connection (where the client resends, in order) is served.
    fresh = d.core.connect("producer-again")
    resend = [
        w.Publish(d.rid(), "q", b"x" * 100, producer="p", sequence=p.sequence) for p in refused
    ]
    answers = d.send(fresh, *resend)
    assert all(answers[p.id].ok for p in resend)


def test_a_node_that_is_not_leading_turns_the_connection_away() -> None:
    d = Driver()
    link = d.core.connect("c")
    d.core.begin_shutdown()
    reply = d.send(link, w.CreateQueue(d.rid(), "q"))
    assert {r.error.code for r in reply.values() if r.error} == {"ShuttingDownError"}
    assert link.refusals.get(0) is not None


def test_peek_takes_nothing_and_counts_no_attempt() -> None:
    d = Driver()
    link = d.core.connect("c")
    d.send(link, w.CreateQueue(d.rid(), "q"))
    d.send(link, w.Subscribe(d.rid(), "q", "g", "c1"))
    d.send(link, *[w.Publish(d.rid(), "q", b"m%d" % n) for n in range(3)])
    for _ in range(3):
        peek = w.Peek(d.rid(), "q", "g", limit=2)
        reply = d.send(link, peek)[peek.id]
        assert reply.ok
        assert [(m.sequence, m.attempts, m.state) for m in reply.value] == [
            (1, 0, "backlog"),
            (2, 0, "backlog"),
        ]
    deliver = w.Deliver(d.rid(), "q", "g", "c1", max_messages=1)
    (delivery,) = d.send(link, deliver)[deliver.id].value
    assert delivery.attempt == 1  # looking did not count


def test_commands_are_stamped_with_the_time_a_majority_agrees_on() -> None:
    d = Driver()
    link = d.core.connect("c")
    d.send(link, w.CreateQueue(d.rid(), "q"))
    d.advance(5 * SECOND)
    publish = w.Publish(d.rid(), "q", b"m")
    d.send(link, publish)
    peek = w.Peek(d.rid(), "q")
    (message,) = d.send(link, peek)[peek.id].value
    assert message.published_at == T0 + d.mono


class Recording:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send(self, messages: Sequence[Message]) -> None:
        self.sent.extend(messages)


def _win_election(core: ServerCore, transport: Recording, now: Instant, wall: int = T0) -> None:
    """Campaign and collect node 2's pre-vote and vote (fabricated), carrying
    node 2's wall clock ``wall`` (0: none, as before vote responses carried it)."""
    core.host.node.campaign()
    for wanted in (MessageType.PRE_VOTE, MessageType.VOTE):
        run(core, now)
        (request,) = [m for m in transport.sent if m.type is wanted and m.dst == 2]
        transport.sent.clear()
        answer = (
            MessageType.PRE_VOTE_RESPONSE
            if wanted is MessageType.PRE_VOTE
            else MessageType.VOTE_RESPONSE
        )
        core.step([Message(answer, src=2, dst=1, term=request.term, wall=wall)], now)
    run(core, now)
    assert core.is_leader()


def run(core: ServerCore, now: Instant) -> None:
    while True:
        rd = core.begin(now)
        if rd is None:
            return
        core.sync(rd)
        core.finish(rd, now)


def test_a_proposal_replaced_by_the_same_nodes_later_one_is_unknown_not_lost() -> None:
    """Regression: a re-elected leader proposing at an index that held one of its own
    older proposals answered that older one ProposalLostError ("surely not carried
    out", resent by every client whatever it was). Another node may still hold the
    older entry and a later leader commit it: the answer must be "unknown"."""
    transport = Recording()
    now = Instant(0, T0)
    core = ServerCore(
        NodeConfig(node_id=1, peers={n: f"127.0.0.1:{7430 + n}" for n in (1, 2, 3)}),
        SimLogStore(),
        transport,
        random.Random(1),
        now,
    )
    _win_election(core, transport, now)  # term 2 (pre-vote, then vote); noop at 1
    term = core.term
    link = core.connect("admin")
    writes = [w.CreateQueue(n, f"q{n}") for n in (1, 2, 3)]
    for request in writes:  # one entry each, at 2, 3 and 4; none commits
        core.receive(link, [request], now)
        run(core, now)
    assert not link.replies
    # Node 2 leads a later term whose log ends at 2: node 1's 2..4 are cut back to 2.
    core.step(
        [
            Message(
                MessageType.APPEND,
                src=2,
                dst=1,
                term=term + 1,
                index=1,
                log_term=term,
                entries=(Entry(term + 1, 2, b""),),
            )
        ],
        now,
    )
    run(core, now)
    assert not core.is_leader()
    _win_election(core, transport, now)  # node 1 leads again; its noop goes at 3
    later = w.CreateQueue(9, "q9")
    core.receive(link, [later], now)  # proposed at 4, where its own q3 was
    run(core, now)
    answers = {reply.id: reply for reply in link.take_replies()}
    assert answers[3].error is not None
    assert answers[3].error.code == "OutcomeUnknownError", answers[3]


class FakeFollowers:
    """Nodes 2 and 3 as far as node 1 can tell: they acknowledge every append and
    answer heartbeats with their (correct) wall clock."""

    def __init__(self, core: ServerCore, transport: Recording) -> None:
        self.core = core
        self.transport = transport

    def run(self, now: Instant) -> None:
        core = self.core
        for _ in range(20):
            run(core, now)
            sent, self.transport.sent = self.transport.sent, []
            answers = []
            for m in sent:
                if m.type is MessageType.APPEND:
                    last = m.entries[-1].index if m.entries else m.index
                    answers.append(
                        Message(MessageType.APPEND_RESPONSE, m.dst, 1, m.term, index=last)
                    )
                elif m.type is MessageType.HEARTBEAT:
                    answers.append(
                        Message(
                            MessageType.HEARTBEAT_RESPONSE,
                            m.dst,
                            1,
                            m.term,
                            context=m.context,
                            wall=T0 + now.mono,
                        )
                    )
            if not answers:
                return
            core.step(answers, now)

    def heartbeat(self, now: Instant) -> None:
        for _ in range(self.core.config.heartbeat_tick):
            self.core.tick(now)
        self.run(now)


def test_a_step_of_the_leaders_clock_does_not_forget_keys() -> None:
    """Regression: commands were stamped with the leader's own wall clock, so a step of
    it by an hour aged every idempotency key by an hour at once: a retry after the
    jump, with the same key, was stored a second time."""
    transport = Recording()
    mono = 0
    now = Instant(mono, T0)
    core = ServerCore(
        NodeConfig(node_id=1, peers={n: f"127.0.0.1:{7430 + n}" for n in (1, 2, 3)}),
        SimLogStore(),
        transport,
        random.Random(1),
        now,
    )
    _win_election(core, transport, now)
    followers = FakeFollowers(core, transport)
    followers.heartbeat(now)
    link = core.connect("producer")
    dedup_ttl = 60 * SECOND
    options = {"dedup_ttl": dedup_ttl}
    core.receive(link, [w.CreateQueue(1, "q", options)], now)
    followers.run(now)
    core.receive(link, [w.Publish(2, "q", b"order-1", message_id="order-1")], now)
    followers.run(now)
    # A second later the leader's wall clock jumps an hour ahead; the followers' not.
    mono += SECOND
    jumped = Instant(mono, T0 + mono + 3600 * SECOND)
    followers.heartbeat(jumped)
    core.receive(link, [w.Publish(3, "q", b"order-1", message_id="order-1")], jumped)
    followers.run(jumped)
    answers = {reply.id: reply for reply in link.take_replies()}
    assert answers[2].ok and answers[3].ok, answers
    first, retry = answers[2].value, answers[3].value
    assert retry[2], f"the retry was stored twice: {first} then {retry}"
    assert retry[1] == first[1]


def _three_node_core(transport: Recording, now: Instant) -> ServerCore:
    return ServerCore(
        NodeConfig(node_id=1, peers={n: f"127.0.0.1:{7430 + n}" for n in (1, 2, 3)}),
        SimLogStore(),
        transport,
        random.Random(1),
        now,
    )


def test_a_new_leader_that_has_heard_no_clock_turns_writes_away_instead_of_stamping_0() -> None:
    """Regression (CI, tests/client/test_e2e.py, leader killed mid-stream): a new
    cluster's leader had heard no follower's clock before its first heartbeat
    round, so the queue and the first publishes were stamped 0. The next leader
    stamped real time: the broker's clock jumped 56 years, every producer was
    forgotten (``producer_ttl``), and the client's retries of 1,000 publishes
    that had landed were stored a second time."""
    transport = Recording()
    now = Instant(0, T0)
    core = _three_node_core(transport, now)
    _win_election(core, transport, now, wall=0)  # the vote carries no clock
    link = core.connect("producer")
    core.receive(link, [w.CreateQueue(1, "q")], now)
    run(core, now)
    replies = link.take_replies()
    assert [r.error.code if r.error else "ok" for r in replies] == ["OverloadedError"], replies
    assert replies[0].error is not None and "time" in replies[0].error.message
    # Nothing was proposed: the log holds only the leader's empty entry.
    assert core.host.storage.last_index() == 1
    # No Tick is stamped 0 either.
    for _ in range(core.config.heartbeat_tick * 3):
        core.tick(now)
    run(core, now)
    assert core.host.storage.last_index() == 1
    # Once a majority's clocks are heard, the same write goes through, stamped now.
    followers = FakeFollowers(core, transport)
    followers.heartbeat(now)
    again = core.connect("producer-again")
    core.receive(again, [w.CreateQueue(2, "q")], now)
    followers.run(now)
    (created,) = again.take_replies()
    assert created.ok, created
    assert core.broker.now == T0


def test_a_leader_elected_on_votes_that_carry_clocks_stamps_real_time_at_once() -> None:
    """The same scenario with the vote responses carrying the voter's clock (as they
    do now): the first writes are stamped with real time, and a retry after a
    leader's heartbeat round is a duplicate, not a second copy."""
    transport = Recording()
    now = Instant(0, T0)
    core = _three_node_core(transport, now)
    _win_election(core, transport, now)  # the vote carries node 2's clock
    followers = FakeFollowers(core, transport)
    link = core.connect("producer")
    core.receive(link, [w.CreateQueue(1, "q")], now)
    followers.run(now)
    first = w.Publish(2, "q", b"m1", producer="p", sequence=1)
    core.receive(link, [first], now)
    followers.run(now)
    assert core.broker.now == T0
    later = Instant(SECOND, T0 + SECOND)
    followers.heartbeat(later)
    retry = w.Publish(3, "q", b"m1", producer="p", sequence=1)
    core.receive(link, [retry], later)
    followers.run(later)
    answers = {reply.id: reply for reply in link.take_replies()}
    assert all(answers[i].ok for i in (1, 2, 3)), answers
    assert answers[3].value[2], f"the retry was stored twice: {answers[3].value}"
    assert answers[3].value[1] == answers[2].value[1]


def test_a_lease_held_for_hours_does_not_keep_the_log_from_being_compacted() -> None:
    """One message leased for twelve hours among many settled ones: the leader
    copies it forward (a Carry), and the log starts past where it was published."""
    d = Driver(snapshot_entries=30, retain_entries=5)
    link = d.core.connect("c")
    assert all(r.ok for r in d.send(link, w.CreateQueue(d.rid(), "q")).values())
    assert all(r.ok for r in d.send(link, w.Subscribe(d.rid(), "q", "g", "c")).values())
    [published] = d.send(link, w.Publish(d.rid(), "q", b"held for hours")).values()
    assert published.ok
    first_entry = d.core.applied
    twelve_hours = 12 * 3600 * SECOND
    [held] = d.send(link, w.Deliver(d.rid(), "q", "g", "c", 1, twelve_hours)).values()
    assert held.ok and held.value[0].body == b"held for hours"
    for n in range(150):
        d.send(link, w.Publish(d.rid(), "q", b"m%d" % n))
        [taken] = d.send(link, w.Deliver(d.rid(), "q", "g", "c", 1)).values()
        [delivery] = taken.value
        assert d.send(link, w.Ack(d.rid(), "q", "g", delivery.sequence, delivery.token))
        if n % 10 == 0:
            d.advance(1_000_000)  # the broker's tick, where the leader looks
            d.core.tick(d.now())
            d.run()
    storage = d.core.host.storage
    assert d.core.stats["messages_carried"] >= 1
    assert storage.first_index() > first_entry  # the log no longer reaches back
    peeked = d.send(link, w.Peek(d.rid(), "q", "g", 10)).values()
    [only] = next(iter(peeked)).value
    assert only.body == b"held for hours"  # read from where it was carried
    sequence = held.value[0].sequence
    [acked] = d.send(link, w.Ack(d.rid(), "q", "g", sequence, held.value[0].token)).values()
    assert acked.ok


def test_a_delivery_whose_body_this_node_no_longer_has_is_answered_unknown() -> None:
    """Cannot happen to the node that applied the delivery (its messages are live,
    so its log keeps them); if it ever did, the answer must not claim a message it
    cannot show: unknown, and the lease runs out and the message comes back."""
    d = Driver()
    link = d.core.connect("c")
    d.send(link, w.CreateQueue(d.rid(), "q"))
    d.send(link, w.Subscribe(d.rid(), "q", "g", "c"))
    d.send(link, w.Publish(d.rid(), "q", b"m"))
    reader = d.core.broker.reader

    def gone(index: int) -> bytes:
        raise CompactedError(f"entry {index} compacted")

    d.core.broker.reader = gone
    [reply] = d.send(link, w.Deliver(d.rid(), "q", "g", "c", 1, SECOND)).values()
    assert not reply.ok and reply.error is not None
    assert reply.error.code == "OutcomeUnknownError"
    d.core.broker.reader = reader
    d.advance(2 * SECOND)
    d.core.tick(d.now())
    d.run()
    [again] = d.send(link, w.Deliver(d.rid(), "q", "g", "c", 1)).values()
    assert again.ok and again.value[0].body == b"m" and again.value[0].attempt == 2


def test_status_shows_the_longest_loop_pause_of_each_recent_second() -> None:
    d = Driver()
    d.core.note_loop_lag(3_000, d.now())
    d.core.note_loop_lag(70_000, d.now())  # the same second: the longest counts
    d.advance(SECOND)
    d.core.note_loop_lag(2_000, d.now())
    status = d.core.status()
    assert status["loop_lag_ms"] == [2.0, 70.0]
    assert status["loop_lag_max_ms"] == 70.0
    for _ in range(100):
        d.advance(SECOND)
        d.core.note_loop_lag(1_000, d.now())
    assert len(d.core.status()["loop_lag_ms"]) == 60  # a minute's worth


def _last_entry_commands(d: Driver) -> list[object]:
    storage = d.core.host.storage
    last = storage.last_index()
    [entry] = storage.entries(last, last + 1, 1 << 30)
    command, _spans = decode_entry(entry.data)
    assert isinstance(command, Batch)
    return list(command.commands)


def _leased(d: Driver, link: ClientLink, count: int) -> list[w.DeliveryWire]:
    assert all(r.ok for r in d.send(link, w.CreateQueue(d.rid(), "q")).values())
    assert all(r.ok for r in d.send(link, w.Subscribe(d.rid(), "q", "g", "c")).values())
    d.send(link, *[w.Publish(d.rid(), "q", b"m%d" % n) for n in range(count)])
    [taken] = d.send(link, w.Deliver(d.rid(), "q", "g", "c", count)).values()
    assert taken.ok and len(taken.value) == count
    return list(taken.value)


def test_acks_that_arrive_together_become_one_command_each_answered_alone() -> None:
    d = Driver()
    link = d.core.connect("c")
    deliveries = _leased(d, link, 5)
    acks = [w.Ack(d.rid(), "q", "g", x.sequence, x.token) for x in deliveries[:4]]
    stale = w.Ack(d.rid(), "q", "g", deliveries[4].sequence, deliveries[4].token + 99)
    again = w.Ack(d.rid(), "q", "g", deliveries[0].sequence, deliveries[0].token)
    replies = d.send(link, acks[0], acks[1], stale, acks[2], acks[3], again)
    [command] = _last_entry_commands(d)
    assert isinstance(command, AckMany) and len(command.sequences) == 6
    assert all(replies[a.id].ok and replies[a.id].value is None for a in acks)
    assert replies[stale.id].error is not None
    assert replies[stale.id].error.code == "UnknownDeliveryError"
    # The same ack twice in one run: the second finds it settled, as it would alone.
    assert replies[again.id].error is not None
    assert replies[again.id].error.code == "AlreadySettledError"
    assert link.unanswered == 0


def test_a_run_of_acks_keeps_its_place_among_the_connections_other_writes() -> None:
    d = Driver()
    link = d.core.connect("c")
    first, second, third = _leased(d, link, 3)
    d.send(
        link,
        w.Ack(d.rid(), "q", "g", first.sequence, first.token),
        w.Nack(d.rid(), "q", "g", second.sequence, second.token),
        w.Ack(d.rid(), "q", "g", third.sequence, third.token),
        w.Ack(d.rid(), "q", "h", third.sequence, third.token),  # another group: another run
    )
    kinds = [type(c).__name__ for c in _last_entry_commands(d)]
    assert kinds == ["AckMany", "Nack", "AckMany", "AckMany"]


def test_a_bad_ack_in_a_run_is_refused_alone() -> None:
    d = Driver()
    link = d.core.connect("c")
    first, second = _leased(d, link, 2)
    bad_name = w.Ack(d.rid(), "q", "", first.sequence, first.token)
    negative = w.Ack(d.rid(), "q", "g", -1, first.token)
    huge = w.Ack(d.rid(), "q", "g", first.sequence, 2**64)
    good = [w.Ack(d.rid(), "q", "g", x.sequence, x.token) for x in (first, second)]
    replies = d.send(link, good[0], bad_name, negative, huge, good[1])
    for bad in (bad_name, negative, huge):
        error = replies[bad.id].error
        assert error is not None and error.code == "InvalidCommandError", error
    assert all(replies[a.id].ok for a in good)


def test_a_refusal_by_one_group_leaves_the_connections_writes_to_another_group_alone() -> None:
    """Many groups share a node's connections: a group this node does not lead turns
    the connection's writes to *its* queues away (and keeps doing so, so none of them
    overtakes the first), while the group it leads goes on accepting the connection's
    writes. Its Raft messages are addressed to its own group."""
    d = Driver()
    link = d.core.connect("c")
    assert all(r.ok for r in d.send(link, w.CreateQueue(d.rid(), "q")).values())
    transport = Recording()
    other = ServerCore(
        NodeConfig(node_id=1, peers={n: f"127.0.0.1:{7430 + n}" for n in (1, 2, 3)}),
        SimLogStore(),
        transport,
        random.Random(2),
        d.now(),
        group=1,
        group_count=2,
    )
    elsewhere = w.Publish(d.rid(), "elsewhere", b"m", producer="p", sequence=1)
    other.receive(link, [elsewhere], d.now())
    [refused] = link.take_replies()
    assert refused.error is not None and refused.error.code == "NotLeaderError"
    assert set(link.refusals) == {1}
    here = w.Publish(d.rid(), "q", b"m", producer="p", sequence=1)
    assert d.send(link, here)[here.id].ok
    again = w.Publish(d.rid(), "elsewhere", b"m", producer="p", sequence=2)
    other.receive(link, [again], d.now())
    [still] = link.take_replies()
    assert still.error is not None and still.error.code == "NotLeaderError"
    for _ in range(100):
        other.tick(d.now())
        d.advance(10_000)
    run(other, d.now())
    assert transport.sent and {m.group for m in transport.sent} == {1}


# -- broker ticks --------------------------------------------------------------------------


def _ticks_in_log(d: Driver) -> int:
    """Tick commands the log holds (alone or in a batch)."""
    storage = d.core.host.storage
    count = 0
    for entry in storage.entries(storage.first_index(), storage.last_index() + 1, 1 << 40):
        if not entry.data:
            continue
        command, _spans = decode_entry(entry.data)
        inner = command.commands if isinstance(command, Batch) else (command,)
        count += sum(isinstance(c, Tick) for c in inner)
    return count


def _tick_for(d: Driver, micros: int) -> None:
    for _ in range(micros // 10_000):
        d.advance(10_000)
        d.core.tick(d.now())
        d.run()


def test_an_idle_leader_proposes_a_tick_a_second_not_ten() -> None:
    d = Driver()
    before = _ticks_in_log(d)
    _tick_for(d, 5 * SECOND)
    assert 4 <= _ticks_in_log(d) - before <= 6


def test_a_timer_due_gets_its_tick_at_the_next_broker_tick() -> None:
    """A lease of 300 ms, then silence: the Tick that expires it comes within a
    broker tick of its deadline, not at the next once-a-second Tick."""
    d = Driver()
    link = d.core.connect("c")
    assert all(r.ok for r in d.send(link, w.CreateQueue(d.rid(), "q")).values())
    assert all(r.ok for r in d.send(link, w.Subscribe(d.rid(), "q", "g", "c")).values())
    d.send(link, w.Publish(d.rid(), "q", b"m"))
    _tick_for(d, SECOND)  # the once-a-second Tick has just been proposed
    [taken] = d.send(link, w.Deliver(d.rid(), "q", "g", "c", 1, lease=300_000)).values()
    assert taken.ok and len(taken.value) == 1
    leased_at = d.core.broker.now
    _tick_for(d, 420_000)
    assert d.core.broker.now >= leased_at + 300_000  # moved by a Tick, nothing else
    [again] = d.send(link, w.Deliver(d.rid(), "q", "g", "c", 1)).values()
    assert again.ok and len(again.value) == 1 and again.value[0].redelivery
