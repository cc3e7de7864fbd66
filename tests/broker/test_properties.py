"""Properties over random command sequences (hypothesis).

- Replicas that apply the same log return the same results and take
  byte-identical snapshots, whether they applied it all or restored a snapshot
  taken anywhere in the middle and applied the rest.
- A refused command changes nothing but the clock: the state after it equals
  the state after a Tick with the same timestamp -- except that a producer's
  publish refused once its queue was found (not as a gap or a stale number)
  uses up its number: then only that producer's record differs, and a retry,
  even on a replica restored from a snapshot, is answered with an equal error.
- An AckMany leaves the state its acks would, applied one by one at its time,
  and each ack's outcome is the one its own Ack would have had.
- A replica applying with ``answered=False`` (a follower: nobody reads its
  results) ends in the same state.
- The structural invariants hold after every command; attempt numbers of a
  message never go backwards; nothing acked is delivered again; peek shows the
  first unsettled (or retained) messages in sequence order.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herald.broker import (
    SECOND,
    Ack,
    Acked,
    AckedMany,
    AckMany,
    Broker,
    Command,
    CreateQueue,
    DeleteGroup,
    DeleteQueue,
    Deliver,
    Deliveries,
    DeliveryMode,
    Extend,
    Heartbeat,
    Leave,
    Nack,
    Publish,
    PurgeQueue,
    QueueOptions,
    Redrive,
    Reject,
    Subscribe,
    Tick,
    encode,
)
from herald.errors import (
    BrokerError,
    ProducerSequenceGapError,
    ProducerSequenceStaleError,
    UnknownQueueError,
)
from herald.raft import Entry

from .helpers import without_producers

QUEUES = ("a", "b")
GROUPS = ("g", "h")
CONSUMERS = ("c1", "c2", "c3")
STEPS = (0, 0, 0, 1_000, 100_000, SECOND, SECOND, 3 * SECOND, 10 * SECOND, -5 * SECOND)

small_options = st.builds(
    QueueOptions,
    max_message_bytes=st.sampled_from([1024, 1024, 2]),
    max_length=st.sampled_from([None, 4]),
    max_deliveries=st.integers(1, 3),
    dedup_ttl=st.sampled_from([None, 5 * SECOND]),
    lease_duration=st.just(2 * SECOND),
    producer_window=st.integers(1, 3),
    producer_ttl=st.sampled_from([None, 8 * SECOND]),
)


class Scenario:
    """Draws plausible commands: mostly about things that exist, sometimes not."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.time = 1_000
        self.leases: list[tuple[str, str, int, int]] = []
        self.producer_numbers: dict[tuple[str, str], int] = {}
        # Start with both queues and a few consumers, so most commands mean something.
        self.prelude: list[Command] = [
            CreateQueue(q, data.draw(small_options), time=1) for q in QUEUES
        ]
        for q, g, c in (("a", "g", "c1"), ("a", "g", "c2"), ("a", "h", "c3"), ("b", "g", "c1")):
            self.prelude.append(Subscribe(q, g, c, time=1))

    def draw(self, strategy: st.SearchStrategy[object]) -> object:
        return self.data.draw(strategy)

    def command(self) -> Command:
        if self.prelude:
            return self.prelude.pop(0)
        draw = self.data.draw
        self.time = max(0, self.time + draw(st.sampled_from(STEPS)))
        t = self.time
        q = draw(st.sampled_from(QUEUES))
        g = draw(st.sampled_from(GROUPS))
        c = draw(st.sampled_from(CONSUMERS))
        kind = draw(
            st.sampled_from(
                ["create"]
                + ["publish"] * 8
                + ["subscribe"] * 3
                + ["deliver"] * 8
                + ["settle"] * 10
                + ["tick"] * 3
                + ["heartbeat", "leave", "redrive", "redrive"]
                + ["purge", "delete", "delete_group"] * (self.data.draw(st.integers(0, 9)) == 0)
            )
        )
        if kind == "create":
            return CreateQueue(q, draw(small_options), time=t)
        if kind == "publish":
            producer = draw(st.sampled_from([None, "p1", "p2"]))
            number = 0
            if producer is not None:
                last = self.producer_numbers.get((q, producer), 0)
                number = max(1, last + draw(st.sampled_from([1, 1, 1, 0, -1, -3, 2])))
                self.producer_numbers[(q, producer)] = max(last, number)
            return Publish(
                q,
                draw(st.binary(max_size=3)),
                message_id=draw(st.sampled_from([None, None, "k1", "k2", "k3"])),
                producer=producer,
                producer_sequence=number,
                time=t,
            )
        if kind == "subscribe":
            mode = draw(st.sampled_from(DeliveryMode))
            timeout = draw(st.sampled_from([5 * SECOND, 30 * SECOND]))
            return Subscribe(q, g, c, mode, timeout, time=t)
        if kind == "deliver":
            lease = draw(st.sampled_from([0, SECOND, 4 * SECOND]))
            return Deliver(q, g, c, draw(st.integers(1, 3)), lease, time=t)
        if kind == "settle":
            if self.leases and draw(st.integers(0, 4)):
                q, g, sequence, token = draw(st.sampled_from(self.leases[-6:]))
            else:
                sequence, token = draw(st.integers(0, 6)), draw(st.integers(0, 12))
            action = draw(st.sampled_from(["ack", "ack", "acks", "nack", "extend", "reject"]))
            if action == "acks":
                pairs = [(sequence, token)]
                for q2, g2, s2, t2 in self.leases[-6:]:
                    if (q2, g2) == (q, g) and draw(st.booleans()):
                        pairs.append((s2, t2))
                pairs += draw(
                    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 12)), max_size=2)
                )
                order = draw(st.permutations(pairs))
                return AckMany(q, g, tuple(p[0] for p in order), tuple(p[1] for p in order), time=t)
            if action == "ack":
                return Ack(q, g, sequence, token, time=t)
            if action == "nack":
                return Nack(q, g, sequence, token, draw(st.sampled_from([0, SECOND])), time=t)
            if action == "extend":
                return Extend(q, g, sequence, token, 3 * SECOND, time=t)
            return Reject(q, g, sequence, token, time=t)
        if kind == "heartbeat":
            return Heartbeat(q, g, c, time=t)
        if kind == "leave":
            return Leave(q, g, c, time=t)
        if kind == "purge":
            return PurgeQueue(q, draw(st.booleans()), time=t)
        if kind == "delete":
            return DeleteQueue(q, time=t)
        if kind == "redrive":
            return Redrive(q, g, draw(st.sampled_from([(), (1,), (2, 1)])), time=t)
        if kind == "delete_group":
            return DeleteGroup(q, g, time=t)
        return Tick(time=t)

    def observe(self, result: object) -> None:
        if isinstance(result, Deliveries):
            for delivery in result.deliveries:
                self.leases.append(
                    (delivery.queue, delivery.group, delivery.sequence, delivery.token)
                )


def consumes_its_number(command: Command, result: BrokerError) -> bool:
    unrecorded = (UnknownQueueError, ProducerSequenceGapError, ProducerSequenceStaleError)
    return (
        isinstance(command, Publish)
        and command.producer is not None
        and not isinstance(result, unrecorded)
    )


def check_peek(broker: Broker) -> None:
    """Peek shows the first unsettled (or retained) messages, as the state holds them."""
    for name, queue in broker._state.queues.items():
        limit = 3
        retained = sorted(queue.messages.sequences())[:limit]
        assert [p.sequence for p in broker.peek(name, None, limit)] == retained
        for group in queue.groups.values():
            unsettled = sorted([*group.backlog, *group.pending])[:limit]
            assert [p.sequence for p in broker.peek(name, group.name, limit)] == unsettled


def clone(broker: Broker) -> Broker:
    twin = Broker()
    twin.restore(broker.snapshot(), broker.applied_index)
    return twin


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_replicas_agree_and_refusals_change_nothing(data: st.DataObject) -> None:
    scenario = Scenario(data)
    steps = data.draw(st.integers(10, 120), label="steps")
    restore_at = data.draw(st.integers(0, steps), label="restore_at")
    leader = Broker()
    late: Broker | None = None
    log: list[Entry] = []
    attempts: dict[tuple[str, str, int], int] = {}
    acked: set[tuple[str, str, int]] = set()
    incarnation: dict[str, int] = {}
    for index in range(1, steps + 1):
        command = scenario.command()
        entry = Entry(1, index, encode(command))
        log.append(entry)
        twin = clone(leader)
        result = leader.apply(entry)
        leader.check_invariants()
        scenario.observe(result)
        if isinstance(result, BrokerError):
            twin.apply(Entry(1, index, encode(Tick(time=command.time))))
            if consumes_its_number(command, result):
                assert without_producers(twin) == without_producers(leader), (command, result)
                assert clone(leader).apply(entry) == result, "a retry got another answer"
            else:
                assert twin.snapshot() == leader.snapshot(), (command, result)
        if isinstance(command, AckMany):
            one_by_one = twin if not isinstance(result, BrokerError) else clone(twin)
            outcomes = [
                one_by_one.execute(Ack(command.queue, command.group, s, t, time=command.time))
                for s, t in zip(command.sequences, command.tokens, strict=True)
            ]
            if isinstance(result, AckedMany):
                assert one_by_one.snapshot() == leader.snapshot()
                assert len(result.outcomes) == len(outcomes)
                for alone, together in zip(outcomes, result.outcomes, strict=True):
                    assert (alone if isinstance(alone, BrokerError) else None) == together
            else:  # the queue or group is unknown: every ack alike
                assert all(type(o) is type(result) for o in outcomes)
        if late is not None:
            assert late.apply(entry) == result
        elif index == restore_at:
            late = clone(leader)

        # Honest delivery, per queue incarnation (a deleted queue's namesake starts over).
        if isinstance(command, (CreateQueue, DeleteQueue)) and not isinstance(result, BrokerError):
            incarnation[command.queue] = incarnation.get(command.queue, 0) + 1
            acked = {k for k in acked if k[0] != command.queue}
            attempts = {k: v for k, v in attempts.items() if k[0] != command.queue}
        if isinstance(command, PurgeQueue) and not isinstance(result, BrokerError):
            acked = {k for k in acked if k[0] != command.queue}
        if isinstance(command, DeleteGroup) and not isinstance(result, BrokerError):
            # A namesake group starts over at the oldest retained message.
            acked = {k for k in acked if k[:2] != (command.queue, command.group)}
            attempts = {
                k: v for k, v in attempts.items() if k[:2] != (command.queue, command.group)
            }
        if isinstance(result, Deliveries):
            for delivery in result.deliveries:
                key = (delivery.queue, delivery.group, delivery.sequence)
                assert key not in acked, "an acked message was delivered again"
                assert delivery.attempt > attempts.get(key, 0), "attempts went backwards"
                attempts[key] = delivery.attempt
        if isinstance(result, Acked):
            acked.add((result.queue, result.group, result.sequence))
        if isinstance(result, AckedMany):
            assert isinstance(command, AckMany)
            for sequence, outcome in zip(command.sequences, result.outcomes, strict=True):
                if outcome is None:
                    acked.add((result.queue, result.group, sequence))
        check_peek(leader)

    follower = Broker()
    for entry in log:
        follower.apply(entry, answered=False)
    assert follower.snapshot() == leader.snapshot()
    if late is not None:
        assert late.snapshot() == leader.snapshot()
    assert clone(leader).snapshot() == leader.snapshot()
