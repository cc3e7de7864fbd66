"""Hypothesis strategies for broker commands."""

from __future__ import annotations

from hypothesis import strategies as st

from herald.broker import (
    SECOND,
    Ack,
    AckMany,
    Command,
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
    QueueOptions,
    Redrive,
    Reject,
    Subscribe,
    Tick,
)

names = st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "S")), min_size=1, max_size=12
)
times = st.integers(0, 2**64 - 1)
u64 = st.integers(0, 2**64 - 1)
durations = st.integers(1, 12 * 3600 * SECOND)

options = st.builds(
    QueueOptions,
    max_message_bytes=st.integers(1, 64 * 1024 * 1024),
    max_length=st.none() | st.integers(1, 2**40),
    max_bytes=st.none() | st.integers(1, 2**40),
    max_deliveries=st.integers(1, 1000),
    dedup_ttl=st.none() | st.integers(1, 2**62),
    lease_duration=durations,
    producer_window=st.integers(1, 1000),
    producer_ttl=st.none() | st.integers(1, 2**62),
)

headers = st.lists(st.tuples(names, st.text(max_size=8)), max_size=3, unique_by=lambda p: p[0]).map(
    tuple
)


@st.composite
def publishes(draw: st.DrawFn) -> Publish:
    producer = draw(st.none() | names)
    return Publish(
        draw(names),
        draw(st.binary(max_size=64)),
        draw(headers),
        draw(st.none() | st.text(min_size=1, max_size=20)),
        producer,
        0 if producer is None else draw(st.integers(1, 2**64 - 1)),
        time=draw(times),
    )


def _lease(cls: type[Command]) -> st.SearchStrategy[Command]:
    return st.builds(cls, names, names, u64, u64, time=times)


@st.composite
def ack_manys(draw: st.DrawFn) -> AckMany:
    pairs = draw(st.lists(st.tuples(u64, u64), min_size=1, max_size=8))
    return AckMany(
        draw(names),
        draw(names),
        tuple(p[0] for p in pairs),
        tuple(p[1] for p in pairs),
        time=draw(times),
    )


any_command: st.SearchStrategy[Command] = st.one_of(
    st.builds(Tick, time=times),
    st.builds(CreateQueue, names, options, time=times),
    st.builds(DeleteQueue, names, time=times),
    st.builds(PurgeQueue, names, st.booleans(), time=times),
    publishes(),
    st.builds(Subscribe, names, names, names, st.sampled_from(DeliveryMode), durations, time=times),
    st.builds(Heartbeat, names, names, names, time=times),
    st.builds(Leave, names, names, names, time=times),
    st.builds(
        Deliver,
        names,
        names,
        names,
        st.integers(1, 1000),
        st.integers(0, 12 * 3600 * SECOND),
        time=times,
    ),
    _lease(Ack),
    ack_manys(),
    _lease(Reject),
    st.builds(Nack, names, names, u64, u64, st.integers(0, 3600 * SECOND), time=times),
    st.builds(Extend, names, names, u64, u64, durations, time=times),
    st.builds(Redrive, names, names, st.lists(u64, max_size=4, unique=True).map(tuple), time=times),
    st.builds(DeleteGroup, names, names, time=times),
)
