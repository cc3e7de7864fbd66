"""Carry: long-lived messages copied forward so the log before them can be compacted."""

from __future__ import annotations

import pytest

from herald.broker import (
    SECOND,
    Batch,
    Broker,
    Carried,
    Carry,
    MovedForward,
    Publish,
    Reject,
    Tick,
    decode,
    encode,
)
from herald.errors import InvalidCommandError, MalformedCommandError

from .helpers import Driver


def carry_of(d: Driver, *keys: tuple[str, str, int]) -> Carry:
    """A Carry of (queue, group, sequence) as a leader would build it from its log."""
    items = []
    for queue, group, sequence in keys:
        state = d.broker._state.queues[queue]
        if group:
            ref = state.dead_letters[(group, sequence)].stored
        else:
            ref = d.broker._ref(state, sequence)
        publish = d.read(ref.index)[ref.offset : ref.offset + ref.length]
        items.append(Carried(queue, state.incarnation, group, sequence, publish))
    return Carry(tuple(items), time=d.time)


def test_a_carry_round_trips_through_the_codec_and_cannot_be_batched() -> None:
    carry = Carry(
        (
            Carried("q", 1, "", 7, encode(Publish("q", b"x", time=1))),
            Carried("q", 1, "g", 9, encode(Publish("q", b"y", time=2))),
        ),
        time=5,
    )
    assert decode(encode(carry)) == carry
    with pytest.raises(InvalidCommandError):
        Batch((carry,), time=5)
    with pytest.raises(InvalidCommandError):
        Carry((), time=1)
    with pytest.raises(MalformedCommandError):
        decode(encode(carry)[:-3])


def test_a_long_lived_message_moves_to_the_carry_and_reads_the_same() -> None:
    d = Driver()
    d.queue()
    d.subscribe()
    first = d.publish(body=b"long-lived", headers=(("k", "v"),), message_id="m1")
    [held] = d.deliver("c1", n=1, lease=10 * SECOND)
    for n in range(20):
        d.publish(body=bytes([n]))
        [later] = d.deliver("c1")
        d.ack(later)
    before = d.broker.message("q", first)
    old_pin = d.broker.pin()
    assert old_pin <= d.index - 40  # the first message holds the log back
    result = d.run(carry_of(d, ("q", "", first)))
    assert result == MovedForward(1)
    assert d.broker.pin() == d.index  # now the carry's entry
    assert d.broker.message("q", first) == before
    d.ack(held)  # the lease still works: only where its body is changed
    assert d.broker.stats("q").length == 0


def test_a_dead_letter_moves_too() -> None:
    d = Driver()
    d.queue()
    d.subscribe()
    sequence = d.publish(body=b"poison")
    [delivery] = d.deliver("c1")
    d.do(Reject, "q", "g", sequence, delivery.token)
    d.publish(body=b"later")
    letter = d.broker.dead_letter("q", "g", sequence)
    assert d.run(carry_of(d, ("q", "g", sequence))) == MovedForward(1)
    moved = d.broker.dead_letter("q", "g", sequence)
    assert moved.message == letter.message
    assert moved.stored.index == d.index


def test_what_changed_meanwhile_is_left_alone() -> None:
    d = Driver()
    d.queue()
    d.subscribe()
    a, b, c = (d.publish(body=bytes([n])) for n in range(3))
    carry = carry_of(d, ("q", "", a), ("q", "", b), ("q", "", c))
    [da] = d.deliver("c1")
    d.ack(da)  # a settled after the leader looked
    wrong = carry.items[2]
    forged = Carried(
        wrong.queue, wrong.incarnation, "", wrong.sequence, encode(Publish("q", b"??", time=1))
    )
    other = Carried("q", 99, "", b, carry.items[1].publish)  # another incarnation
    result = d.run(Carry((carry.items[0], carry.items[1], forged, other), time=d.time))
    assert result == MovedForward(1)  # only b: a is gone, the forgery's size differs
    assert d.broker._state.queues["q"].messages.record(b)[0] == d.index
    assert d.broker._state.queues["q"].messages.record(c)[0] < d.index


def test_replicas_that_apply_a_carry_agree_byte_for_byte() -> None:
    d = Driver()
    d.queue()
    d.subscribe()
    old = d.publish(body=b"old")
    d.deliver("c1", lease=60 * SECOND)
    d.publish(body=b"new")
    checkpoint = d.broker.snapshot()
    at = d.index
    d.run(carry_of(d, ("q", "", old)))
    d.do(Tick)
    replica = Broker()
    replica.restore(checkpoint, at)
    again = Driver(replica, log=dict(d.entries))
    for index in range(at + 1, d.index + 1):
        again.index = index - 1
        again.run(decode(d.entries[index]))
    assert replica.snapshot() == d.broker.snapshot()


def test_candidates_are_refused_when_the_old_part_of_the_log_is_mostly_live() -> None:
    d = Driver()
    d.queue()
    d.subscribe()
    for n in range(10):
        d.publish(body=bytes(100) + bytes([n]))
    before = d.index + 1
    assert d.broker.carry_candidates(before, 100, 10_000) is not None
    assert len(d.broker.carry_candidates(before, 100, 10_000) or []) == 10
    assert d.broker.carry_candidates(before, 9, 10_000) is None  # too many
    assert d.broker.carry_candidates(before, 100, 500) is None  # too many bytes
    assert d.broker.carry_candidates(3, 100, 10_000) == []  # nothing that old
