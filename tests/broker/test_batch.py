"""A Batch applies its commands in order, one result each, as separate entries would."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.broker import (
    Ack,
    Batch,
    BatchResult,
    Broker,
    CreateQueue,
    Deliver,
    Deliveries,
    Publish,
    Receipt,
    Subscribe,
    Tick,
    decode,
    encode,
    encode_batch,
)
from herald.errors import InvalidCommandError, MalformedCommandError, UnknownQueueError
from herald.raft import Entry


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
    broker = Broker()
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

    separate, batched = Broker(), Broker()
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
    assert list(batch_result.results) == results
    assert separate.snapshot() == batched.snapshot()


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
