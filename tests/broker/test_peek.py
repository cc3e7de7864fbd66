"""Peek: a look at a queue's messages that leases nothing, counts nothing, changes nothing."""

from __future__ import annotations

import pytest

from herald.broker import (
    PEEK_LIMIT,
    SECOND,
    Ack,
    DeleteGroup,
    Nack,
    Peeked,
    Publish,
    Redrive,
    Reject,
)
from herald.errors import UnknownGroupError, UnknownQueueError

from .helpers import Driver


def shown(peeked: tuple[Peeked, ...]) -> list[tuple[int, str, int]]:
    return [(p.sequence, p.state, p.attempts) for p in peeked]


def busy_group() -> Driver:
    """Messages 1..6 in group g: 1 ready, 2 delayed, 3 leased, 4..6 backlog."""
    d = Driver()
    d.queue(max_deliveries=10)
    d.subscribe()
    for n in range(1, 7):
        d.publish(body=b"m%d" % n)
    one, two, _three = d.deliver(n=3)
    d.do(Nack, "q", "g", one.sequence, one.token)
    d.do(Nack, "q", "g", two.sequence, two.token, 60 * SECOND)
    return d


def test_a_group_shows_its_unsettled_messages_in_order_with_their_state() -> None:
    d = busy_group()
    peeked = d.broker.peek("q", "g", 10)
    assert shown(peeked) == [
        (1, "ready", 1),
        (2, "delayed", 1),
        (3, "leased", 1),
        (4, "backlog", 0),
        (5, "backlog", 0),
        (6, "backlog", 0),
    ]
    assert [p.message.body for p in peeked] == [b"m1", b"m2", b"m3", b"m4", b"m5", b"m6"]
    assert {(p.queue, p.group, p.incarnation) for p in peeked} == {("q", "g", 1)}
    # A redelivery counts: attempts 2, leased.
    [again] = d.deliver()
    assert again.sequence == 1
    assert shown(d.broker.peek("q", "g", 1)) == [(1, "leased", 2)]


def test_settled_messages_are_not_shown_but_the_queue_still_retains_for_others() -> None:
    d = busy_group()
    d.subscribe("c2", group="h")
    [first] = d.deliver("c2", group="h")
    d.do(Ack, "q", "h", first.sequence, first.token)
    assert [p.sequence for p in d.broker.peek("q", "h", 0)] == [2, 3, 4, 5, 6]
    # Without a group: everything retained, once, in order, attempts 0.
    assert shown(d.broker.peek("q", None, 0)) == [(n, "retained", 0) for n in range(1, 7)]


def test_redriven_messages_keep_sequence_order() -> None:
    d = Driver()
    d.queue()
    d.subscribe()
    for _ in range(4):
        d.publish()
    first, second = d.deliver(n=2)
    for delivery in (second, first):
        d.do(Reject, "q", "g", delivery.sequence, delivery.token)
    d.do(Redrive, "q", "g", (2, 1))  # re-inserted, highest first
    assert shown(d.broker.peek("q", "g", 0)) == [
        (1, "ready", 1),
        (2, "ready", 1),
        (3, "backlog", 0),
        (4, "backlog", 0),
    ]
    assert [p.sequence for p in d.broker.peek("q", None, 0)] == [1, 2, 3, 4]
    # With no group left the queue retains everything, in insertion order 3, 4, 2, 1.
    d.do(DeleteGroup, "q", "g")
    assert shown(d.broker.peek("q", None, 3)) == [(n, "retained", 0) for n in (1, 2, 3)]


def test_limit_bounds_the_result_and_zero_means_the_maximum() -> None:
    d = Driver()
    d.queue()
    d.subscribe()
    for _ in range(PEEK_LIMIT + 5):
        d.do(Publish, "q", b"m")
    assert [p.sequence for p in d.broker.peek("q", "g", 2)] == [1, 2]
    assert [p.sequence for p in d.broker.peek("q", None, 3)] == [1, 2, 3]
    for limit in (0, -1):
        assert len(d.broker.peek("q", "g", limit)) == PEEK_LIMIT
        assert len(d.broker.peek("q", None, limit)) == PEEK_LIMIT
    assert len(d.broker.peek("q", "g", PEEK_LIMIT + 10)) == PEEK_LIMIT + 5


def test_peek_changes_nothing() -> None:
    d = busy_group()
    before = d.broker.snapshot()
    stats = d.broker.stats("q")
    for group in ("g", None):
        for limit in (0, 1, 3, 100):
            d.broker.peek("q", group, limit)
    assert d.broker.snapshot() == before
    assert d.broker.stats("q") == stats
    # Deliveries go on as if nobody had looked: the ready message first, attempt 2.
    [delivery] = d.deliver()
    assert delivery.sequence == 1 and delivery.attempt == 2


def test_unknown_queue_and_group_are_refused() -> None:
    d = busy_group()
    with pytest.raises(UnknownQueueError):
        d.broker.peek("nope", None, 1)
    with pytest.raises(UnknownQueueError):
        d.broker.peek("nope", "g", 1)
    with pytest.raises(UnknownGroupError):
        d.broker.peek("q", "nope", 1)
