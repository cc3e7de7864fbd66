"""A Batch applies its commands in order, one result each, as separate entries would
(each at its own time: the batch's own time moves nothing)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.broker import (
    SECOND,
    Ack,
    Acked,
    Batch,
    BatchResult,
    Broker,
    Command,
    CreateQueue,
    Deliver,
    Deliveries,
    Delivery,
    Publish,
    QueueOptions,
    Receipt,
    Subscribe,
    Tick,
    decode,
    encode,
    encode_batch,
)
from herald.errors import (
    InvalidCommandError,
    MalformedCommandError,
    StaleLeaseError,
    UnknownQueueError,
)
from herald.raft import Entry

from .helpers import AdvancesTheClockToTheBatchTime, LoggedBroker, without_positions


def _without_refs(results: object) -> list[object]:
    """Results with each delivery's place in the log replaced by its message."""
    out: list[object] = []
    for result in results:  # type: ignore[attr-defined]
        if isinstance(result, Deliveries):
            out.append([(d.message, d.attempt, d.token, d.deadline) for d in result.deliveries])
        else:
            out.append(result)
    return out


def setup() -> list[object]:
    return [
        CreateQueue("q", time=1),
        Subscribe("q", "g", "c", time=2),
    ]


def test_batch_round_trips_through_the_codec() -> None:
    batch = Batch(
        (Publish("q", b"a", producer="p", producer_sequence=1, time=5), Tick(time=6)), time=7
    )
    assert decode(encode(batch)) == batch
    assert encode_batch([encode(c) for c in batch.commands], 7) == encode(batch)


def test_batch_results_are_in_order_and_refusals_stay_local() -> None:
    broker = LoggedBroker()
    for index, command in enumerate(setup(), start=1):
        broker.apply(Entry(1, index, encode(command)))  # type: ignore[arg-type]
    batch = Batch(
        (
            Publish("q", b"a", time=10),
            Publish("missing", b"x", time=10),
            Publish("q", b"b", time=10),
            Deliver("q", "g", "c", 10, time=11),
        ),
        time=11,
    )
    result = broker.apply(Entry(1, 3, encode(batch)))
    assert isinstance(result, BatchResult)
    first, refused, second, delivered = result.results
    assert isinstance(first, Receipt) and first.sequence == 1
    assert isinstance(refused, UnknownQueueError)
    assert isinstance(second, Receipt) and second.sequence == 2
    assert isinstance(delivered, Deliveries)
    assert [d.message.body for d in delivered.deliveries] == [b"a", b"b"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["pub", "deliver", "ack", "tick", "bad"]), min_size=1, max_size=12))
def test_a_batch_leaves_the_same_state_as_separate_entries(kinds: list[str]) -> None:
    def commands() -> list[object]:
        out: list[object] = []
        for position, kind in enumerate(kinds):
            time = 100 + position
            if kind == "pub":
                out.append(Publish("q", b"m%d" % position, time=time))
            elif kind == "deliver":
                out.append(Deliver("q", "g", "c", 2, time=time))
            elif kind == "ack":
                out.append(Ack("q", "g", 1, 1, time=time))
            elif kind == "tick":
                out.append(Tick(time=time))
            else:
                out.append(Publish("nope", b"x", time=time))
        return out

    separate, batched = LoggedBroker(), LoggedBroker()
    for index, command in enumerate(setup(), start=1):
        separate.apply(Entry(1, index, encode(command)))  # type: ignore[arg-type]
        batched.apply(Entry(1, index, encode(command)))  # type: ignore[arg-type]
    results = [
        separate.apply(Entry(1, 10 + i, encode(c)))  # type: ignore[arg-type]
        for i, c in enumerate(commands())
    ]
    batch_result = batched.apply(
        Entry(1, 10, encode(Batch(tuple(commands()), time=100)))  # type: ignore[arg-type]
    )
    assert isinstance(batch_result, BatchResult)
    assert _without_refs(batch_result.results) == _without_refs(results)
    # The same state, but for where in the log each message is.
    assert without_positions(separate) == without_positions(batched)


def test_batches_do_not_nest_and_must_not_be_empty() -> None:
    with pytest.raises(InvalidCommandError):
        Batch((), time=1)
    with pytest.raises(InvalidCommandError):
        Batch((Batch((Tick(time=1),), time=1),), time=1)
    inner = encode(Batch((Tick(time=1),), time=1))
    with pytest.raises(InvalidCommandError):
        encode_batch([inner], 1)


@pytest.mark.parametrize("cut", [1, 5, 12, 20])
def test_truncated_batches_are_malformed(cut: int) -> None:
    data = encode(Batch((Tick(time=1), Publish("q", b"abc", time=2)), time=3))
    with pytest.raises(MalformedCommandError):
        decode(data[:-cut])
    broker = Broker()
    assert isinstance(broker.apply(Entry(1, 1, data[:-cut])), MalformedCommandError)


# -- time: a batch is not a moment --------------------------------------------------------------

LEASE = SECOND


def leased(broker: Broker) -> Delivery:
    """A queue with one message leased at t=100 until 100 + LEASE."""
    commands: list[Command] = [
        CreateQueue("q", QueueOptions(lease_duration=LEASE), time=1),
        Subscribe("q", "g", "c", time=1),
        Publish("q", b"m", time=50),
        Deliver("q", "g", "c", time=100),
    ]
    result: object = None
    for index, command in enumerate(commands, start=1):
        result = broker.apply(Entry(1, index, encode(command)))
    assert isinstance(result, Deliveries)
    [delivery] = result.deliveries
    assert delivery.deadline == 100 + LEASE
    return delivery


def late_batch(delivery: Delivery) -> Batch:
    # The ack arrived before the deadline; the leader proposed the batch after it.
    ack = Ack("q", "g", delivery.sequence, delivery.token, time=delivery.deadline - 1)
    return Batch((ack, Tick(time=delivery.deadline - 1)), time=delivery.deadline + 10)


def test_an_ack_in_time_is_in_time_even_in_a_batch_proposed_late() -> None:
    broker = Broker()
    delivery = leased(broker)
    result = broker.apply(Entry(1, 5, encode(late_batch(delivery))))
    assert isinstance(result, BatchResult)
    assert isinstance(result.results[0], Acked)
    # The batch's own time moved nothing: the clock is the inner commands' latest.
    assert broker.now == delivery.deadline - 1
    assert broker.stats("q").counters.expired == 0


def test_a_batch_fires_no_timer_by_itself() -> None:
    broker = Broker()
    delivery = leased(broker)
    batch = Batch((Tick(time=200),), time=delivery.deadline + SECOND)
    broker.apply(Entry(1, 5, encode(batch)))
    assert broker.now == 200
    assert broker.stats("q").groups[0].in_flight == 1  # the lease is still held


def test_the_planted_bug_hook_advances_to_the_batch_time() -> None:
    # The simulator's planted-bug tests rely on this override restoring the old bug.
    broker = AdvancesTheClockToTheBatchTime()
    delivery = leased(broker)
    result = broker.apply(Entry(1, 5, encode(late_batch(delivery))))
    assert isinstance(result, BatchResult)
    assert isinstance(result.results[0], StaleLeaseError)
