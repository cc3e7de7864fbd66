"""Queue administration, limits, queries, and the typed error for every bad input."""

from __future__ import annotations

import pytest

from herald.broker import (
    MIB,
    SECOND,
    Ack,
    CreateQueue,
    DeleteGroup,
    DeleteQueue,
    Deliver,
    DeliveryMode,
    Extend,
    Heartbeat,
    Leave,
    Nack,
    Publish,
    PurgeQueue,
    QueueCreated,
    QueueDeleted,
    QueueOptions,
    QueuePurged,
    Receipt,
    Redrive,
    Reject,
    Subscribe,
)
from herald.errors import (
    AlreadySettledError,
    InvalidCommandError,
    InvalidOptionsError,
    MessageTooLargeError,
    QueueExistsError,
    QueueFullError,
    UnknownConsumerError,
    UnknownGroupError,
    UnknownMessageError,
    UnknownQueueError,
)

from .helpers import Driver


def test_create_is_idempotent_with_the_same_options() -> None:
    d = Driver()
    assert d.do(CreateQueue, "q") == QueueCreated("q", True)
    assert d.do(CreateQueue, "q") == QueueCreated("q", False)
    d.fails(QueueExistsError, CreateQueue, "q", QueueOptions(max_length=3))
    assert d.broker.list_queues() == ("q",)


def test_list_queues_is_sorted_and_options_are_kept() -> None:
    d = Driver()
    d.queue("b")
    d.queue("a", max_deliveries=2)
    assert d.broker.list_queues() == ("a", "b")
    assert d.broker.queue_options("a").max_deliveries == 2
    with pytest.raises(UnknownQueueError):
        d.broker.queue_options("zz")


def test_delete_forgets_everything() -> None:
    d = Driver()
    d.queue(dedup_ttl=SECOND)
    d.publish(message_id="k")
    d.subscribe()
    d.deliver()
    assert d.do(DeleteQueue, "q") == QueueDeleted("q", 1)
    assert d.broker.list_queues() == ()
    d.fails(UnknownQueueError, DeleteQueue, "q")
    # A namesake starts from scratch: no messages, no keys, sequences from 1.
    d.queue()
    assert d.publish(message_id="k") == 1
    # Timers of the old queue (its key index, its lease, its consumer's session)
    # never touch the new one.
    d.advance(120 * SECOND)
    stats = d.broker.stats("q")
    assert (stats.idempotency_keys, stats.length, stats.counters.expired) == (1, 1, 0)


def test_receipts_and_deliveries_carry_the_queue_incarnation() -> None:
    d = Driver()
    d.queue()
    d.subscribe("c1")
    d.subscribe("c2", group="h", mode=DeliveryMode.AT_MOST_ONCE)
    first = d.ok(Receipt, Publish, "q", b"old", producer="p", producer_sequence=1)
    [leased] = d.deliver("c1")
    [settled] = d.deliver("c2", group="h")
    assert leased.incarnation == settled.incarnation == first.incarnation
    d.do(DeleteQueue, "q")
    d.queue()
    d.subscribe("c1")
    d.subscribe("c2", group="h", mode=DeliveryMode.AT_MOST_ONCE)
    # The namesake numbers from 1 again; the incarnation tells the two apart.
    second = d.ok(Receipt, Publish, "q", b"new", producer="p", producer_sequence=1)
    assert second.sequence == first.sequence == 1
    assert second.incarnation > first.incarnation
    retry = d.ok(Receipt, Publish, "q", b"new", producer="p", producer_sequence=1)
    assert retry.duplicate and retry.incarnation == second.incarnation
    [leased] = d.deliver("c1")
    [settled] = d.deliver("c2", group="h")
    assert leased.incarnation == settled.incarnation == second.incarnation


def test_purge_drops_messages_and_kills_leases_but_keeps_keys() -> None:
    d = Driver()
    d.queue()
    d.subscribe()
    d.publish(message_id="k1")
    d.publish()
    [held] = d.deliver()
    assert d.do(PurgeQueue, "q") == QueuePurged("q", 2, 0)
    stats = d.broker.stats("q")
    assert (stats.length, stats.bytes, stats.counters.purged) == (0, 0, 2)
    assert stats.groups[0].in_flight == stats.groups[0].backlog == 0
    d.fails(AlreadySettledError, Ack, "q", "g", held.sequence, held.token)
    receipt = d.do(Publish, "q", b"again", message_id="k1")
    assert getattr(receipt, "duplicate", None) is True
    assert d.deliver() == []


def test_purge_can_drop_dead_letters_too() -> None:
    d = Driver()
    d.queue(max_deliveries=1)
    d.subscribe()
    d.publish()
    [first] = d.deliver()
    d.do(Reject, "q", "g", first.sequence, first.token)
    assert d.do(PurgeQueue, "q") == QueuePurged("q", 0, 0)
    assert len(d.broker.dead_letters("q")) == 1
    assert d.do(PurgeQueue, "q", True) == QueuePurged("q", 0, 1)
    assert d.broker.dead_letters("q") == ()


def test_message_size_limit_counts_body_and_headers() -> None:
    d = Driver()
    d.queue(max_message_bytes=10)
    d.publish(body=b"x" * 10)
    d.publish(body=b"x" * 6, headers=(("ab", "cd"),))
    error = d.fails(MessageTooLargeError, Publish, "q", b"x" * 7, (("ab", "cd"),))
    assert isinstance(error, MessageTooLargeError) and (error.size, error.limit) == (11, 10)


def test_default_message_limit_is_one_mebibyte() -> None:
    d = Driver()
    d.queue()
    d.publish(body=b"x" * MIB)
    d.fails(MessageTooLargeError, Publish, "q", b"x" * (MIB + 1))


def test_max_length_and_max_bytes() -> None:
    d = Driver()
    d.queue("short", max_length=2)
    d.queue("small", max_bytes=5)
    d.publish("short")
    d.publish("short")
    error = d.fails(QueueFullError, Publish, "short", b"m")
    assert isinstance(error, QueueFullError) and error.limit == "length"
    d.publish("small", b"abc")
    d.publish("small", b"ab")
    error = d.fails(QueueFullError, Publish, "small", b"a")
    assert isinstance(error, QueueFullError) and error.limit == "bytes"
    # Consuming makes room again.
    d.subscribe(queue="short")
    for delivery in d.deliver(queue="short", n=2):
        d.ack(delivery)
    d.publish("short")


def test_a_duplicate_is_answered_even_when_the_queue_is_full() -> None:
    d = Driver()
    d.queue(max_length=1)
    d.publish(message_id="k")
    receipt = d.do(Publish, "q", b"m", message_id="k")
    assert getattr(receipt, "duplicate", None) is True


def test_stats_and_inspection() -> None:
    d = Driver()
    d.queue()
    d.publish(body=b"hello", headers=(("h", "v"),), message_id="id-1")
    message = d.broker.message("q", 1)
    assert (message.body, message.header("h"), message.message_id) == (b"hello", "v", "id-1")
    assert message.header("missing") is None
    with pytest.raises(UnknownMessageError):
        d.broker.message("q", 2)
    stats = d.broker.stats("q")
    assert (stats.length, stats.bytes, stats.idempotency_keys, stats.next_sequence) == (1, 7, 1, 2)
    with pytest.raises(UnknownQueueError):
        d.broker.stats("nope")


@pytest.mark.parametrize(
    ("command", "args"),
    [
        (Publish, ("nope", b"m")),
        (PurgeQueue, ("nope",)),
        (DeleteQueue, ("nope",)),
        (Subscribe, ("nope", "g", "c")),
        (Heartbeat, ("nope", "g", "c")),
        (Leave, ("nope", "g", "c")),
        (Deliver, ("nope", "g", "c")),
        (Ack, ("nope", "g", 1, 1)),
        (Nack, ("nope", "g", 1, 1)),
        (Extend, ("nope", "g", 1, 1)),
        (Reject, ("nope", "g", 1, 1)),
        (Redrive, ("nope", "g")),
        (DeleteGroup, ("nope", "g")),
    ],
)
def test_every_command_on_an_unknown_queue_is_refused(command: type, args: tuple) -> None:
    d = Driver()
    d.queue()
    d.fails(UnknownQueueError, command, *args)


@pytest.mark.parametrize(
    ("command", "args"),
    [
        (Heartbeat, ("q", "nope", "c")),
        (Leave, ("q", "nope", "c")),
        (Deliver, ("q", "nope", "c")),
        (Ack, ("q", "nope", 1, 1)),
        (Nack, ("q", "nope", 1, 1)),
        (Extend, ("q", "nope", 1, 1)),
        (Reject, ("q", "nope", 1, 1)),
        (Redrive, ("q", "nope")),
        (DeleteGroup, ("q", "nope")),
    ],
)
def test_every_command_on_an_unknown_group_is_refused(command: type, args: tuple) -> None:
    d = Driver()
    d.queue()
    d.subscribe(group="g")
    d.fails(UnknownGroupError, command, *args)


@pytest.mark.parametrize("command", [Heartbeat, Leave, Deliver])
def test_an_unknown_consumer_is_refused(command: type) -> None:
    d = Driver()
    d.queue()
    d.subscribe("c1")
    d.fails(UnknownConsumerError, command, "q", "g", "c2")


@pytest.mark.parametrize(
    "options",
    [
        {"max_message_bytes": 0},
        {"max_message_bytes": 65 * MIB},
        {"max_length": 0},
        {"max_bytes": -1},
        {"max_deliveries": 0},
        {"dedup_ttl": 0},
        {"lease_duration": 0},
        {"producer_window": 0},
        {"producer_ttl": 0},
    ],
)
def test_invalid_options_are_refused_on_construction(options: dict[str, int]) -> None:
    with pytest.raises(InvalidOptionsError):
        QueueOptions(**options)


@pytest.mark.parametrize(
    ("command", "args", "kwargs"),
    [
        (CreateQueue, ("",), {}),
        (CreateQueue, ("x" * 256,), {}),
        (CreateQueue, ("new\nline",), {}),
        (Publish, ("q", b"m"), {"producer_sequence": 3}),
        (Publish, ("q", b"m"), {"producer": "p"}),
        (Publish, ("q", b"m"), {"message_id": ""}),
        (Publish, ("q", b"m", (("a", "1"), ("a", "2"))), {}),
        (Publish, ("q", b"m", (("", "1"),)), {}),
        (Deliver, ("q", "g", "c", 0), {}),
        (Deliver, ("q", "g", "c", 1001), {}),
        (Deliver, ("q", "g", "c", 1, -1), {}),
        (Nack, ("q", "g", 1, 1, -5), {}),
        (Extend, ("q", "g", 1, 1, 0), {}),
        (Subscribe, ("q", "g", "c"), {"session_timeout": 0}),
        (Redrive, ("q", "g", (1, 1)), {}),
        (Ack, ("q", "g", -1, 1), {}),
    ],
)
def test_invalid_commands_are_refused_on_construction(
    command: type, args: tuple, kwargs: dict
) -> None:
    with pytest.raises(InvalidCommandError):
        command(*args, time=1, **kwargs)
    with pytest.raises(InvalidCommandError):
        Publish("q", b"m", time=-1)
