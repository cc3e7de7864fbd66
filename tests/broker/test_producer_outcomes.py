"""A producer number names one publish: its first application decides the outcome,
stored or refused, and a retry gets exactly that outcome back."""

from __future__ import annotations

from dataclasses import replace

from herald.broker import HOUR, KIB, Broker, Publish, Receipt
from herald.errors import (
    BrokerError,
    MessageTooLargeError,
    ProducerSequenceGapError,
    ProducerSequenceStaleError,
    QueueFullError,
    UnknownQueueError,
)

from .helpers import Driver, LeavesRefusedNumbersFree

TOO_LARGE = b"x" * (KIB + 1)


def publish(d: Driver, number: int, body: bytes = b"m", **kwargs: object) -> object:
    return d.do(Publish, "q", body, producer="p", producer_sequence=number, **kwargs)


def test_the_reported_pipeline_refused_then_stored() -> None:
    # The client pipelined a too-large body as 1, then m2 as 2 and m3 as 3.
    d = Driver()
    d.queue(max_message_bytes=KIB)
    refused = d.refuses_publish(
        MessageTooLargeError, "q", TOO_LARGE, producer="p", producer_sequence=1
    )
    m2 = publish(d, 2, b"m2")
    m3 = publish(d, 3, b"m3")
    assert isinstance(m2, Receipt) and isinstance(m3, Receipt)
    assert not m2.duplicate and not m3.duplicate
    # Retries of each number get exactly their first answer, in any order.
    for _ in range(2):
        again = publish(d, 1, TOO_LARGE)
        assert again == refused and again is not refused
        assert isinstance(again, MessageTooLargeError)
        assert (again.queue, again.size, again.limit) == ("q", KIB + 1, KIB)
        assert publish(d, 3, b"m3") == Receipt("q", m3.sequence, True, m3.durability, 1)
        assert publish(d, 2, b"m2") == Receipt("q", m2.sequence, True, m2.durability, 1)
    # m4 is the next number: stored under its own receipt.
    m4 = publish(d, 4, b"m4")
    assert isinstance(m4, Receipt) and not m4.duplicate and m4.sequence == m3.sequence + 1
    assert d.broker.message("q", m4.sequence).body == b"m4"
    stats = d.broker.stats("q")
    assert (stats.length, stats.counters.published, stats.counters.duplicates_by_producer) == (
        3,
        3,
        6,
    )


def test_a_full_queue_refusal_consumes_the_number_for_good() -> None:
    d = Driver()
    d.queue(max_length=1)
    d.subscribe()
    publish(d, 1)
    full = d.refuses_publish(QueueFullError, "q", b"m", producer="p", producer_sequence=2)
    [delivery] = d.deliver()
    d.ack(delivery)  # room again, but number 2 was answered already
    assert publish(d, 2) == full
    assert d.broker.stats("q").length == 0
    receipt = publish(d, 3)
    assert isinstance(receipt, Receipt) and not receipt.duplicate


def test_a_refusal_creates_an_unknown_producer_and_then_gaps_are_gaps() -> None:
    d = Driver()
    d.queue(max_message_bytes=KIB)
    d.refuses_publish(MessageTooLargeError, "q", TOO_LARGE, producer="p", producer_sequence=41)
    assert d.broker.stats("q").producers == 1
    error = d.fails(
        ProducerSequenceGapError, Publish, "q", b"m", producer="p", producer_sequence=43
    )
    assert isinstance(error, ProducerSequenceGapError) and error.expected == 42


def test_an_unknown_queue_records_nothing() -> None:
    d = Driver()
    d.fails(UnknownQueueError, Publish, "nope", b"m", producer="p", producer_sequence=1)
    d.queue("nope")
    # The number was not consumed: it is this producer's first now.
    receipt = d.do(Publish, "nope", b"m", producer="p", producer_sequence=1)
    assert isinstance(receipt, Receipt) and not receipt.duplicate


def test_a_retried_refusal_is_equal_after_a_snapshot() -> None:
    d = Driver()
    d.queue(max_message_bytes=KIB, max_length=1)
    publish(d, 1)
    too_large = d.refuses_publish(
        MessageTooLargeError, "q", TOO_LARGE, producer="p", producer_sequence=2
    )
    full = d.refuses_publish(QueueFullError, "q", b"m", producer="p", producer_sequence=3)
    restored = Broker()
    restored.restore(d.broker.snapshot(), d.index)
    assert restored.snapshot() == d.broker.snapshot()
    again = Driver(restored)
    again.time = d.time
    for original, number in ((too_large, 2), (full, 3)):
        answer = publish(again, number)
        assert answer == original and type(answer) is type(original)
        assert isinstance(answer, BrokerError)
        assert str(answer) == str(original) and vars(answer) == vars(original)
    # Both replicas answered the same retries: still byte-identical.
    publish(d, 2)
    publish(d, 3)
    assert restored.snapshot() == d.broker.snapshot()


def test_the_window_counts_refusals_and_older_numbers_are_stale() -> None:
    d = Driver()
    d.queue(max_message_bytes=KIB, producer_window=3)
    outcomes = []
    for number in range(1, 6):
        body = TOO_LARGE if number % 2 == 0 else b"m"
        outcomes.append(publish(d, number, body))
    # Remembered: 3, 4, 5 (one refusal among them); 1 and 2 are beyond the window.
    for number in (3, 4, 5):
        first, again = outcomes[number - 1], publish(d, number)
        if isinstance(first, Receipt):
            assert again == replace(first, duplicate=True)
        else:
            assert again == first
    for number in (1, 2):
        stale = d.fails(
            ProducerSequenceStaleError, Publish, "q", b"m", producer="p", producer_sequence=number
        )
        assert isinstance(stale, ProducerSequenceStaleError) and stale.oldest == 3
    assert d.broker.stats("q").length == 3


def test_producers_created_by_refusals_expire_with_the_ttl() -> None:
    d = Driver()
    d.queue(max_message_bytes=KIB, producer_ttl=HOUR)
    refused = publish(d, 7, TOO_LARGE)
    d.advance(HOUR // 2)
    assert publish(d, 7) == refused  # a retry answered from the window is use...
    d.advance(HOUR - 1)
    assert d.broker.stats("q").producers == 1  # ...so it is still remembered
    d.advance(1)
    assert d.broker.stats("q").producers == 0
    # Forgotten: the old number is new again (the documented price of expiry).
    receipt = publish(d, 7)
    assert isinstance(receipt, Receipt) and not receipt.duplicate


def test_the_planted_bug_hook_leaves_refused_numbers_free() -> None:
    # The simulator's planted-bug tests rely on this override restoring the old bug.
    d = Driver(LeavesRefusedNumbersFree())
    d.queue(max_message_bytes=KIB)
    assert isinstance(publish(d, 1, TOO_LARGE), MessageTooLargeError)
    assert d.broker.stats("q").producers == 0  # no trace of number 1
    for number in (2, 3):
        receipt = publish(d, number)
        assert isinstance(receipt, Receipt) and not receipt.duplicate
    # The retry of 1 can no longer get its refusal back.
    assert isinstance(publish(d, 1, TOO_LARGE), ProducerSequenceStaleError)
