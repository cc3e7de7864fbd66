"""Time comes only from the log; a failover (or a restore) changes nothing that matters."""

from __future__ import annotations

from herald.broker import (
    SECOND,
    Ack,
    Broker,
    Deliver,
    Deliveries,
    Heartbeat,
    Publish,
    RedeliveryReason,
    Tick,
    Ticked,
)
from herald.errors import AlreadySettledError, StaleLeaseError
from herald.raft import Entry

from .helpers import Driver


def test_the_clock_never_goes_backwards() -> None:
    d = Driver()
    d.queue()
    d.time = 50 * SECOND
    assert d.do(Tick) == Ticked(50 * SECOND)
    assert d.do(Tick, time=10 * SECOND) == Ticked(50 * SECOND)
    d.publish(time=20 * SECOND)
    assert d.broker.message("q", 1).publish_time == 50 * SECOND


def test_a_leader_with_a_slow_clock_cannot_expire_a_lease_early() -> None:
    d = Driver()
    d.time = 100 * SECOND
    d.queue()
    d.subscribe("c1")
    d.subscribe("c2")
    d.publish()
    [held] = d.deliver("c1", lease=10 * SECOND)  # deadline 110 s on the state clock
    # A new leader whose clock is 30 s behind proposes for a while.
    for t in range(70, 110, 5):
        assert d.deliver("c2", time=t * SECOND) == []
    assert d.ack(held) is not None
    assert d.broker.stats("q").counters.acked == 1


def test_a_leader_with_a_fast_clock_expires_leases_by_its_timestamps() -> None:
    # The state machine trusts the leader's timestamps: a leader far ahead expires
    # leases early in real time. What it cannot do is break the guarantees: the
    # redelivery is counted, honest, and the old token is fenced off.
    d = Driver()
    d.queue()
    d.subscribe("c1")
    d.publish()
    [held] = d.deliver("c1", lease=10 * SECOND)
    [again] = d.deliver("c1", time=d.time + 11 * SECOND)
    assert again.attempt == 2 and again.reason is RedeliveryReason.EXPIRED
    d.fails(StaleLeaseError, Ack, "q", "g", 1, held.token, time=d.time)


def test_replicas_and_a_restored_replica_agree_byte_for_byte() -> None:
    leader = Driver()
    leader.queue(max_deliveries=3, dedup_ttl=30 * SECOND)
    leader.subscribe("c1", session_timeout=20 * SECOND)
    leader.subscribe("c2", session_timeout=20 * SECOND)
    for n in range(6):
        leader.publish(body=bytes([n]), message_id=f"m{n}", producer="p", producer_sequence=n + 1)
    held = leader.deliver("c1", n=3, lease=5 * SECOND)
    leader.ack(held[0])
    middle = len(leader.log)
    checkpoint = leader.broker.snapshot()
    leader.advance(6 * SECOND)
    again = leader.deliver("c2", n=10, lease=5 * SECOND)
    leader.ack(again[0])
    leader.advance(40 * SECOND)  # keys age out, c1's session too
    leader.publish(message_id="m0")

    follower = Broker()
    for index, data in enumerate(leader.log, start=1):
        follower.apply(_entry(index, data))
    restored = Broker()
    restored.restore(checkpoint, middle)
    for index, data in enumerate(leader.log[middle:], start=middle + 1):
        restored.apply(_entry(index, data))
    assert follower.snapshot() == leader.broker.snapshot() == restored.snapshot()


def test_failover_keeps_acks_attempts_and_confirmed_messages() -> None:
    """A leader leases, a consumer acks, the leader dies; its successor (a replica
    of the same committed log) never redelivers the acked message, continues the
    attempt numbers, and loses nothing confirmed."""
    old = Driver()
    old.queue(max_deliveries=3)
    old.subscribe("c1")
    confirmed = [old.publish(body=bytes([n]), message_id=f"m{n}") for n in range(4)]
    [a, b] = old.deliver("c1", n=2, lease=5 * SECOND)
    old.ack(a)
    # The new leader's replica applied the same committed log (here: via a snapshot).
    new = Driver(Broker())
    new.broker.restore(old.broker.snapshot(), old.index)
    new.time = old.time - 2 * SECOND  # and its clock is behind
    new.advance(10 * SECOND)  # b's lease expires on the new leader's clock
    seen: list[tuple[int, int]] = []
    while True:
        result = new.do(Deliver, "q", "g", "c1", 10, 5 * SECOND)
        assert isinstance(result, Deliveries)
        if not result.deliveries:
            break
        for delivery in result.deliveries:
            seen.append((delivery.sequence, delivery.attempt))
            new.ack(delivery)
    assert a.sequence not in [s for s, _ in seen]  # acked: never delivered again
    assert (b.sequence, 2) in seen  # attempt numbers continue
    assert sorted({s for s, _ in seen} | {a.sequence}) == confirmed  # nothing lost
    new.fails(AlreadySettledError, Ack, "q", "g", a.sequence, a.token)
    # A retry of a confirmed publish on the new leader is still a duplicate.
    receipt = new.do(Publish, "q", b"\x00", message_id="m0")
    assert getattr(receipt, "duplicate", False)


def _entry(index: int, data: bytes) -> Entry:
    return Entry(1, index, data)


def test_timers_act_in_the_order_of_their_true_due_times() -> None:
    # c1's session timer was armed for 10 s, but a heartbeat moved its expiry to
    # 15 s; c2's lease ends at 12 s. One command jumping to 20 s must process the
    # lease first, exactly as a replica restored after the heartbeat (whose only
    # session timer is at 15 s) would: the dead letters are in that order.
    d = Driver()
    d.time = 0
    d.queue(max_deliveries=1)
    d.subscribe("c1", session_timeout=10 * SECOND)
    d.subscribe("c2", session_timeout=60 * SECOND)
    d.publish()
    d.publish()
    d.deliver("c1", lease=60 * SECOND)
    d.time = 5 * SECOND
    d.do(Heartbeat, "q", "g", "c1")
    d.deliver("c2", lease=7 * SECOND)  # ends at 12 s
    restored = Broker()
    restored.restore(d.broker.snapshot(), d.index)
    d.advance(15 * SECOND)
    restored.execute(Tick(time=d.time))
    assert [x.sequence for x in d.broker.dead_letters("q")] == [2, 1]
    assert restored.snapshot() == d.broker.snapshot()
