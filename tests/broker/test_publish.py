"""Publishing: receipts, idempotent producers and idempotency keys."""

from __future__ import annotations

from herald.broker import (
    DAY,
    HOUR,
    SECOND,
    Broker,
    Durability,
    Publish,
    Receipt,
)
from herald.errors import ProducerSequenceGapError, ProducerSequenceStaleError

from .helpers import Driver


def receipt(d: Driver, **kwargs: object) -> Receipt:
    kwargs.setdefault("body", b"m")
    body = kwargs.pop("body")
    return d.ok(Receipt, Publish, kwargs.pop("queue", "q"), body, **kwargs)


def test_receipt_is_replicated_never_more() -> None:
    d = Driver()
    d.queue()
    r = receipt(d)
    assert r == Receipt("q", 1, False, Durability.REPLICATED, 1)
    # Only the host, which knows its fsync discipline, may claim durable.
    assert r.with_durability(Durability.DURABLE).durability is Durability.DURABLE
    assert r.with_durability(Durability.ACCEPTED) is r
    assert Durability.DURABLE.at_least(Durability.REPLICATED)
    assert not Durability.ACCEPTED.at_least(Durability.REPLICATED)


def test_sequences_are_per_queue_and_messages_keep_their_publish_time() -> None:
    d = Driver()
    d.queue("a")
    d.queue("b")
    assert [d.publish("a"), d.publish("a"), d.publish("b")] == [1, 2, 1]
    assert d.broker.message("a", 2).publish_time == d.time


# -- idempotent producers -------------------------------------------------------------------------


def test_a_retry_returns_the_original_receipt_and_stores_nothing() -> None:
    d = Driver()
    d.queue()
    first = receipt(d, producer="p", producer_sequence=1)
    second = receipt(d, producer="p", producer_sequence=2)
    for _ in range(3):  # any number of retries, in any order
        assert receipt(d, producer="p", producer_sequence=2) == Receipt(
            "q", second.sequence, True, Durability.REPLICATED, second.incarnation
        )
        assert receipt(d, producer="p", producer_sequence=1).sequence == first.sequence
    stats = d.broker.stats("q")
    assert (stats.length, stats.counters.published, stats.counters.duplicates_by_producer) == (
        2,
        2,
        6,
    )


def test_a_producer_may_start_at_any_number_and_must_not_skip() -> None:
    d = Driver()
    d.queue()
    receipt(d, producer="p", producer_sequence=41)
    error = d.fails(
        ProducerSequenceGapError, Publish, "q", b"m", producer="p", producer_sequence=43
    )
    assert isinstance(error, ProducerSequenceGapError) and (error.expected, error.got) == (42, 43)
    receipt(d, producer="p", producer_sequence=42)
    receipt(d, producer="p", producer_sequence=43)


def test_only_the_last_window_of_receipts_is_remembered() -> None:
    d = Driver()
    d.queue(producer_window=3)
    sequences = [receipt(d, producer="p", producer_sequence=n).sequence for n in range(1, 6)]
    for n in (3, 4, 5):
        assert receipt(d, producer="p", producer_sequence=n).sequence == sequences[n - 1]
    error = d.fails(
        ProducerSequenceStaleError, Publish, "q", b"m", producer="p", producer_sequence=2
    )
    assert isinstance(error, ProducerSequenceStaleError) and error.oldest == 3
    assert d.broker.stats("q").length == 5


def test_producers_are_independent_per_producer_and_per_queue() -> None:
    d = Driver()
    d.queue("a")
    d.queue("b")
    assert receipt(d, queue="a", producer="p", producer_sequence=1).sequence == 1
    assert receipt(d, queue="a", producer="r", producer_sequence=1).sequence == 2
    assert receipt(d, queue="b", producer="p", producer_sequence=1).sequence == 1
    assert not receipt(d, queue="b", producer="p", producer_sequence=2).duplicate


def test_an_idle_producer_is_forgotten_after_its_ttl() -> None:
    d = Driver()
    d.queue(producer_ttl=HOUR)
    receipt(d, producer="idle", producer_sequence=7)
    d.advance(HOUR // 2)
    receipt(d, producer="busy", producer_sequence=1)
    d.advance(HOUR // 2)
    # "idle" is gone: its old number is new again (the documented price of expiry).
    assert d.broker.stats("q").producers == 1
    assert not receipt(d, producer="idle", producer_sequence=7).duplicate
    # "busy" was heard from half an hour ago: still remembered.
    assert receipt(d, producer="busy", producer_sequence=1).duplicate


def test_activity_keeps_a_producer_alive() -> None:
    d = Driver()
    d.queue(producer_ttl=HOUR)
    for n in range(1, 6):
        receipt(d, producer="p", producer_sequence=n)
        d.advance(HOUR - SECOND)
    assert receipt(d, producer="p", producer_sequence=5).duplicate


def test_producer_state_survives_a_snapshot() -> None:
    d = Driver()
    d.queue()
    receipt(d, producer="p", producer_sequence=1)
    restored = Driver(Broker())
    restored.broker.restore(d.broker.snapshot(), d.index)
    restored.time = d.time
    assert restored.ok(Receipt, Publish, "q", b"m", producer="p", producer_sequence=1).duplicate


# -- idempotency keys -----------------------------------------------------------------------------


def test_a_repeated_message_id_returns_the_original_receipt() -> None:
    d = Driver()
    d.queue()
    original = receipt(d, message_id="order-17")
    again = receipt(d, body=b"different body", message_id="order-17")
    assert again == Receipt(
        "q", original.sequence, True, Durability.REPLICATED, original.incarnation
    )
    assert d.broker.message("q", original.sequence).body == b"m"
    assert d.broker.stats("q").counters.duplicates_by_key == 1


def test_keys_outlive_the_message_but_not_their_ttl() -> None:
    d = Driver()
    d.queue(dedup_ttl=10 * SECOND)
    d.subscribe()
    receipt(d, message_id="k")
    [delivery] = d.deliver()
    d.ack(delivery)
    d.advance(10 * SECOND - 1)
    assert receipt(d, message_id="k").duplicate  # consumed, still remembered
    d.advance(1)
    assert d.broker.stats("q").idempotency_keys == 0  # compacted at its deadline
    assert not receipt(d, message_id="k").duplicate


def test_the_default_ttl_is_a_day_and_keys_may_live_forever() -> None:
    d = Driver()
    d.queue("day")
    d.queue("forever", dedup_ttl=None)
    receipt(d, queue="day", message_id="k")
    receipt(d, queue="forever", message_id="k")
    d.advance(DAY - 1)
    assert receipt(d, queue="day", message_id="k").duplicate
    d.advance(1)
    assert not receipt(d, queue="day", message_id="k").duplicate
    d.advance(365 * DAY)
    assert receipt(d, queue="forever", message_id="k").duplicate


def test_keys_expire_in_order_many_at_once() -> None:
    d = Driver()
    d.queue(dedup_ttl=SECOND)
    for n in range(50):
        receipt(d, message_id=f"k{n}")
        d.time += 10_000  # 10 ms apart
    d.advance(SECOND - 250_000)  # the first 25 or so have aged out
    remaining = d.broker.stats("q").idempotency_keys
    assert 0 < remaining < 50
    assert not receipt(d, message_id="k0").duplicate
    assert receipt(d, message_id="k49").duplicate


def test_a_key_duplicate_consumes_the_producer_number() -> None:
    d = Driver()
    d.queue()
    first = receipt(d, message_id="k", producer="p", producer_sequence=1)
    # A different producer number carrying the same key: a duplicate by key...
    second = receipt(d, message_id="k", producer="p", producer_sequence=2)
    assert second.duplicate and second.sequence == first.sequence
    # ...and number 2 is now a remembered retry, 3 the next one.
    assert receipt(d, producer="p", producer_sequence=2).sequence == first.sequence
    assert not receipt(d, producer="p", producer_sequence=3).duplicate
    counters = d.broker.stats("q").counters
    assert (counters.duplicates_by_key, counters.duplicates_by_producer) == (1, 1)


def test_keys_are_per_queue() -> None:
    d = Driver()
    d.queue("a")
    d.queue("b")
    receipt(d, queue="a", message_id="k")
    assert not receipt(d, queue="b", message_id="k").duplicate
