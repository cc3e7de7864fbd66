"""Deliveries: leases, fencing tokens, redelivery with reasons, modes, groups, order."""

from __future__ import annotations

from herald.broker import (
    SECOND,
    Ack,
    Acked,
    DeleteGroup,
    Deliver,
    DeliveryMode,
    Extend,
    Extended,
    Heartbeat,
    Leave,
    Left,
    Nack,
    Nacked,
    RedeliveryReason,
    Reject,
    Rejected,
    Session,
    Subscribe,
)
from herald.errors import (
    AlreadySettledError,
    StaleLeaseError,
    UnknownConsumerError,
    UnknownDeliveryError,
)

from .helpers import Driver, sequences

AMO = DeliveryMode.AT_MOST_ONCE


def setup(messages: int = 3, **options: int) -> Driver:
    d = Driver()
    d.queue(**options)
    d.subscribe("c1")
    d.subscribe("c2")
    for n in range(messages):
        d.publish(body=f"m{n + 1}".encode())
    return d


def test_a_delivery_is_a_lease() -> None:
    d = setup(1)
    [delivery] = d.deliver(lease=5 * SECOND)
    assert delivery.attempt == 1 and not delivery.redelivery and delivery.reason is None
    assert delivery.deadline == d.time + 5 * SECOND
    assert delivery.token > 0 and delivery.mode is DeliveryMode.AT_LEAST_ONCE
    assert delivery.message.body == b"m1"
    assert d.ack(delivery) == Acked("q", "g", 1)
    stats = d.broker.stats("q")
    assert (stats.length, stats.counters.acked, stats.counters.delivered) == (0, 1, 1)


def test_the_queue_default_lease_applies() -> None:
    d = setup(1, lease_duration=7 * SECOND)
    [delivery] = d.deliver()
    assert delivery.deadline == d.time + 7 * SECOND


def test_first_deliveries_are_fifo_and_competing_consumers_share() -> None:
    d = setup(5)
    assert sequences(d.deliver("c1", n=2)) == [1, 2]
    assert sequences(d.deliver("c2", n=2)) == [3, 4]
    assert sequences(d.deliver("c1", n=5)) == [5]
    assert d.deliver("c2") == []


def test_tokens_are_unique_and_increasing() -> None:
    d = setup(4)
    tokens = [x.token for x in d.deliver("c1", n=2) + d.deliver("c2", n=2)]
    assert tokens == sorted(set(tokens))


def test_an_expired_lease_is_redelivered_with_attempt_plus_one() -> None:
    d = setup(1)
    [first] = d.deliver("c1", lease=SECOND)
    d.advance(SECOND - 1)
    assert d.deliver("c2") == []  # not yet
    d.advance(1)
    [second] = d.deliver("c2")
    assert (second.sequence, second.attempt, second.redelivery) == (1, 2, True)
    assert second.reason is RedeliveryReason.EXPIRED
    # The first holder is fenced off: its token is stale.
    d.fails(StaleLeaseError, Ack, "q", "g", 1, first.token)
    d.fails(StaleLeaseError, Nack, "q", "g", 1, first.token)
    d.fails(StaleLeaseError, Extend, "q", "g", 1, first.token)
    d.fails(StaleLeaseError, Reject, "q", "g", 1, first.token)
    assert d.ack(second) == Acked("q", "g", 1)
    counters = d.broker.stats("q").counters
    assert (counters.expired, counters.redelivered_expired, counters.delivered) == (1, 1, 2)


def test_a_lease_that_expired_is_stale_even_before_redelivery() -> None:
    d = setup(1)
    [first] = d.deliver(lease=SECOND)
    d.time += SECOND
    # The ack arrives after the deadline: the clock advance expires the lease first.
    d.fails(StaleLeaseError, Ack, "q", "g", 1, first.token)


def test_redeliveries_come_first_lowest_sequence_first() -> None:
    d = setup(4)
    held = d.deliver("c1", n=3)
    d.do(Nack, "q", "g", held[2].sequence, held[2].token)
    d.do(Nack, "q", "g", held[0].sequence, held[0].token)
    again = d.deliver("c2", n=3)
    assert sequences(again) == [1, 3, 4]
    assert [x.redelivery for x in again] == [True, True, False]
    assert again[0].reason is RedeliveryReason.NACKED


def test_nack_with_delay() -> None:
    d = setup(1)
    [first] = d.deliver()
    result = d.do(Nack, "q", "g", 1, first.token, 3 * SECOND)
    assert result == Nacked("q", "g", 1, d.time + 3 * SECOND, False)
    d.advance(3 * SECOND - 1)
    assert d.deliver() == []
    d.advance(1)
    [second] = d.deliver()
    assert second.attempt == 2 and second.reason is RedeliveryReason.NACKED


def test_extend_moves_the_deadline() -> None:
    d = setup(1)
    [delivery] = d.deliver(lease=SECOND)
    d.advance(SECOND // 2)
    assert d.do(Extend, "q", "g", 1, delivery.token, 2 * SECOND) == Extended(
        "q", "g", 1, delivery.token, d.time + 2 * SECOND
    )
    d.advance(SECOND)  # past the original deadline
    assert d.deliver("c2") == []
    assert d.ack(delivery) == Acked("q", "g", 1)


def test_an_extended_lease_expires_at_its_new_deadline() -> None:
    d = setup(1)
    [delivery] = d.deliver(lease=SECOND)
    d.do(Extend, "q", "g", 1, delivery.token, 3 * SECOND)
    d.advance(3 * SECOND)
    [again] = d.deliver("c2")
    assert again.reason is RedeliveryReason.EXPIRED
    assert d.broker.stats("q").counters.expired == 1


def test_settled_unknown_and_stale_tokens_get_distinct_errors() -> None:
    d = setup(3)
    [one, two] = d.deliver(n=2)
    d.ack(one)
    d.fails(AlreadySettledError, Ack, "q", "g", 1, one.token)  # ack after ack
    d.fails(AlreadySettledError, Nack, "q", "g", 1, one.token)  # nack after ack
    d.fails(AlreadySettledError, Extend, "q", "g", 1, one.token)
    d.fails(UnknownDeliveryError, Ack, "q", "g", 2, one.token)  # not this message's token
    d.fails(UnknownDeliveryError, Ack, "q", "g", 3, two.token)  # never delivered
    d.fails(UnknownDeliveryError, Ack, "q", "g", 2, 999)  # never issued
    d.fails(UnknownDeliveryError, Ack, "q", "g", 2, 0)
    d.fails(UnknownDeliveryError, Ack, "q", "g", 99, two.token)  # no such message
    d.do(Nack, "q", "g", 2, two.token)
    d.fails(StaleLeaseError, Ack, "q", "g", 2, two.token)  # nacked: lease over


def test_reject_moves_to_dead_letters_at_once() -> None:
    d = setup(1)
    [delivery] = d.deliver()
    assert d.do(Reject, "q", "g", 1, delivery.token) == Rejected("q", "g", 1)
    [letter] = d.broker.dead_letters("q")
    assert letter.reason.value == "rejected" and letter.attempts == 1
    assert letter.history[0].outcome == "rejected"
    assert d.broker.stats("q").length == 0


def test_max_deliveries_moves_to_dead_letters_with_history() -> None:
    d = setup(1, max_deliveries=3)
    attempts = []
    for _ in range(3):
        [delivery] = d.deliver(lease=SECOND)
        attempts.append(delivery.attempt)
        d.advance(SECOND)
    assert attempts == [1, 2, 3]
    assert d.deliver() == []
    [letter] = d.broker.dead_letters("q", "g")
    assert letter.reason.value == "max_deliveries" and letter.attempts == 3
    assert [h.outcome for h in letter.history] == ["expired"] * 3
    assert [h.attempt for h in letter.history] == [1, 2, 3]
    counters = d.broker.stats("q").counters
    assert (counters.dead_lettered, counters.expired, counters.redelivered_expired) == (1, 3, 2)


def test_a_nack_of_the_last_attempt_dead_letters() -> None:
    d = setup(1, max_deliveries=1)
    [delivery] = d.deliver()
    assert d.do(Nack, "q", "g", 1, delivery.token, SECOND) == Nacked("q", "g", 1, 0, True)
    assert len(d.broker.dead_letters("q")) == 1


def test_leave_gives_leases_back_as_consumer_gone() -> None:
    d = setup(2)
    held = d.deliver("c1", n=2)
    assert d.do(Leave, "q", "g", "c1") == Left("q", "g", "c1", 2)
    again = d.deliver("c2", n=2)
    assert sequences(again) == [1, 2]
    assert {x.reason for x in again} == {RedeliveryReason.CONSUMER_GONE}
    d.fails(StaleLeaseError, Ack, "q", "g", 1, held[0].token)
    d.fails(UnknownConsumerError, Deliver, "q", "g", "c1")
    assert d.broker.stats("q").counters.redelivered_consumer_gone == 2


def test_a_silent_consumer_expires_and_its_leases_come_back() -> None:
    d = Driver()
    d.queue()
    d.subscribe("c1", session_timeout=10 * SECOND)
    d.subscribe("c2", session_timeout=100 * SECOND)
    d.publish()
    [held] = d.deliver("c1", lease=60 * SECOND)
    d.advance(9 * SECOND)
    assert isinstance(d.do(Heartbeat, "q", "g", "c1"), Session)  # alive: the timer re-arms
    d.advance(9 * SECOND)
    assert d.deliver("c2") == []
    d.advance(SECOND)  # 10 s since the heartbeat
    assert d.broker.stats("q").groups[0].consumers == ("c2",)
    [again] = d.deliver("c2")
    assert again.reason is RedeliveryReason.CONSUMER_GONE
    d.fails(StaleLeaseError, Ack, "q", "g", 1, held.token)


def test_acting_on_a_lease_counts_as_a_heartbeat() -> None:
    d = Driver()
    d.queue()
    d.subscribe("c1", session_timeout=10 * SECOND)
    for _ in range(5):
        d.publish()
        [delivery] = d.deliver("c1", lease=SECOND)
        d.advance(SECOND // 2)
        d.ack(delivery)
        d.advance(8 * SECOND)
    assert d.broker.stats("q").groups[0].consumers == ("c1",)


def test_resubscribing_with_a_new_timeout_takes_effect() -> None:
    d = Driver()
    d.queue()
    d.subscribe("c1", session_timeout=100 * SECOND)
    d.subscribe("c1", session_timeout=5 * SECOND)
    d.advance(5 * SECOND)
    assert d.broker.stats("q").groups[0].consumers == ()


def test_at_most_once_settles_in_the_delivering_step() -> None:
    d = Driver()
    d.queue()
    d.subscribe("amo", mode=AMO)
    d.subscribe("alo")
    d.publish()
    d.publish()
    [delivery] = d.deliver("amo")
    assert (delivery.token, delivery.deadline, delivery.mode) == (0, 0, AMO)
    assert d.broker.stats("q").length == 1  # gone the moment it was delivered
    d.fails(UnknownDeliveryError, Ack, "q", "g", delivery.sequence, delivery.token)
    # A crash of the consumer loses it; nothing ever delivers it again.
    d.do(Leave, "q", "g", "amo")
    d.advance(50 * SECOND)
    assert sequences(d.deliver("alo", n=10)) == [2]


def test_at_most_once_consumers_never_take_redeliveries() -> None:
    d = Driver()
    d.queue()
    d.subscribe("alo")
    d.subscribe("amo", mode=AMO)
    d.publish()
    d.publish()
    [held] = d.deliver("alo")
    d.do(Nack, "q", "g", held.sequence, held.token)
    assert sequences(d.deliver("amo", n=10)) == [2]  # not the nacked message 1
    [again] = d.deliver("alo")
    assert again.sequence == 1 and again.redelivery


def test_every_group_gets_every_message() -> None:
    d = Driver()
    d.queue()
    d.subscribe("a", group="audit")
    d.subscribe("w", group="work")
    for _ in range(3):
        d.publish()
    for delivery in d.deliver("a", group="audit", n=3):
        d.ack(delivery)
    assert d.broker.stats("q").length == 3  # "work" has not settled them
    for delivery in d.deliver("w", group="work", n=3):
        d.ack(delivery)
    assert d.broker.stats("q").length == 0


def test_a_new_group_starts_at_the_oldest_retained_message() -> None:
    d = Driver()
    d.queue()
    d.publish()
    d.publish()
    d.subscribe("a", group="first")
    d.ack(d.deliver("a", group="first")[0])  # message 1 is settled by all: gone
    d.publish()
    d.subscribe("b", group="second")
    assert sequences(d.deliver("b", group="second", n=10)) == [2, 3]
    assert sequences(d.deliver("a", group="first", n=10)) == [2, 3]


def test_a_queue_without_groups_retains_and_deleting_the_last_group_keeps_messages() -> None:
    d = Driver()
    d.queue()
    d.publish()
    d.subscribe("a", group="only")
    d.publish()
    [delivery] = d.deliver("a", group="only")
    d.do(DeleteGroup, "q", "only")
    assert d.broker.stats("q").length == 2  # no group left: retained
    d.subscribe("b", group="next")
    assert sequences(d.deliver("b", group="next", n=10)) == [1, 2]
    assert delivery.sequence == 1


def test_deleting_a_group_releases_its_hold() -> None:
    d = Driver()
    d.queue()
    d.subscribe("a", group="fast")
    d.subscribe("b", group="slow")
    d.publish()
    d.ack(d.deliver("a", group="fast")[0])
    assert d.broker.stats("q").length == 1
    d.do(DeleteGroup, "q", "slow")
    assert d.broker.stats("q").length == 0


def test_subscribe_switches_mode() -> None:
    d = Driver()
    d.queue()
    d.subscribe("c")
    d.publish()
    d.publish()
    [leased] = d.deliver("c")
    d.ok(Session, Subscribe, "q", "g", "c", AMO, 60 * SECOND)
    [settled] = d.deliver("c")
    assert settled.mode is AMO and settled.sequence == 2
    assert d.ack(leased) == Acked("q", "g", 1)  # the earlier lease still holds


def test_deliver_counts_as_activity_and_batches_respect_the_limit() -> None:
    d = setup(10)
    assert len(d.deliver(n=4)) == 4
    assert d.broker.stats("q").groups[0].in_flight == 4
    assert d.broker.stats("q").groups[0].backlog == 6
