"""Snapshots: the whole state round-trips, garbage is refused, and the host can use them."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.broker import (
    MIB,
    SECOND,
    Ack,
    Broker,
    Command,
    CreateQueue,
    Deliver,
    Deliveries,
    DeliveryMode,
    Nack,
    Publish,
    Reject,
    Subscribe,
    Tick,
    encode,
)
from herald.broker.snapshot import MAGIC, VERSION
from herald.errors import (
    BrokerSnapshotError,
    MessageTooLargeError,
    QueueFullError,
)
from herald.node.host import NodeHost
from herald.raft import Config, Message
from herald.sim.storage import SimLogStore

from .helpers import Driver


def rich_state() -> Driver:
    """A state with a bit of everything in it."""
    d = Driver()
    d.queue(dedup_ttl=None, producer_ttl=None, max_deliveries=2)
    d.queue("other", max_length=10)
    d.subscribe("c1")
    d.subscribe("c2", group="h", mode=DeliveryMode.AT_MOST_ONCE)
    for n in range(6):
        d.publish(
            body=bytes([n]) * n,
            headers=(("n", str(n)), ("é", "ü")),
            message_id=f"k{n}" if n % 2 else None,
            producer="p" if n < 4 else None,
            producer_sequence=n + 1 if n < 4 else 0,
        )
    d.publish("other", b"x", message_id="k")
    # Refused publishes of a producer are remembered too (MessageTooLargeError, QueueFullError).
    d.refuses_publish(
        MessageTooLargeError, "q", b"x" * (MIB + 1), producer="p", producer_sequence=5
    )
    for _ in range(9):
        d.publish("other", b"y")
    d.refuses_publish(QueueFullError, "other", b"z", producer="r", producer_sequence=3)
    held = d.deliver("c1", n=4, lease=5 * SECOND)
    d.ack(held[0])
    d.do(Nack, "q", "g", held[1].sequence, held[1].token, 10 * SECOND)
    d.do(Reject, "q", "g", held[2].sequence, held[2].token)
    d.deliver("c2", group="h", n=2)
    d.advance(SECOND)
    return d


def test_round_trip_of_a_rich_state() -> None:
    d = rich_state()
    blob = d.broker.snapshot()
    assert blob.startswith(MAGIC)
    restored = Broker()
    restored.restore(blob, 42)
    assert restored.applied_index == 42 and restored.now == d.broker.now
    assert restored.snapshot() == blob
    for name in ("q", "other"):
        assert restored.stats(name) == d.broker.stats(name)
    assert restored.dead_letters("q") == d.broker.dead_letters("q")
    # The restored replica behaves identically from here on.
    twin = Driver(restored)
    twin.time = d.time
    for driver in (d, twin):
        driver.advance(20 * SECOND)
        driver.deliver("c1", n=5)
    assert twin.broker.snapshot() == d.broker.snapshot()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:-1],
        lambda b: b + b"\0",
        lambda b: b"XXXXXXXX" + b[8:],
        lambda b: b[:8] + b"\x04\0\0\0" + b[12:],
        lambda b: b[: len(b) // 2],
        lambda b: b"",
    ],
)
def test_garbage_is_refused_and_the_state_kept(mutate: object) -> None:
    d = rich_state()
    before = d.broker.snapshot()
    with pytest.raises(BrokerSnapshotError):
        d.broker.restore(mutate(before), 1)  # type: ignore[operator]
    assert d.broker.snapshot() == before


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_damaged_snapshots_restore_exactly_or_raise_the_typed_error(data: st.DataObject) -> None:
    blob = bytearray(SNAPSHOT)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] = data.draw(st.integers(0, 255))
    broker = Broker()
    try:
        broker.restore(bytes(blob), 1)
    except BrokerSnapshotError:
        return
    broker.check_invariants()
    if blob[8:12] == b"\x01\0\0\0":
        return  # read as the older version, so written anew as the current one
    assert broker.snapshot() == bytes(blob)  # if it loaded, it is canonical


SNAPSHOT = rich_state().broker.snapshot()


def test_refusals_round_trip_as_equal_errors() -> None:
    d = rich_state()
    restored = Broker()
    restored.restore(d.broker.snapshot(), d.index)
    replica = Driver(restored, log=dict(d.entries))
    for queue, producer, number in (("q", "p", 5), ("other", "r", 3)):
        command = Publish(queue, b"", producer=producer, producer_sequence=number, time=d.time)
        original, again = d.run(command), replica.run(command)
        assert isinstance(original, (MessageTooLargeError, QueueFullError))
        assert again == original and vars(again) == vars(original)
    assert restored.snapshot() == d.broker.snapshot()


def test_snapshot_refusals_of_an_unknown_error_class_are_refused() -> None:
    blob = rich_state().broker.snapshot()
    assert b"QueueFullError" in blob
    with pytest.raises(BrokerSnapshotError):
        Broker().restore(blob.replace(b"QueueFullError", b"QueueFullErrox"), 1)


# Written by version 1, which kept every message body in the state.
VERSION_1_SNAPSHOT = bytes.fromhex(
    "4842524b534e4150010000008813000000000000020000000000000003000000000000000100000001000000"
    "7100001000000000000000000000000000000000000000000005000000000000000060d71d1400000080c3c9"
    "010000000002000000000000000060d71d140000000100000000000000040000000000000003000000000000"
    "0000000000000000000000000000000000010000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000030000000100000000000000d0070000000000"
    "00ffffffff0100000070010000006100000000010000000200000000000000b80b000000000000010000006b"
    "0100000070010000006200000000010000000300000000000000a00f000000000000ffffffff010000007001"
    "00000063000000000100000001000000010000006b0200000000000000b86bd71d1400000001000000010000"
    "00700300000000000000a00f0000000000000200000002000000000000000300000000000000010000000100"
    "0000670100000000000000010000000000000002000000020000000000000003000000000000000100000001"
    "00000000000000010000000000000001010000000000000008d7c90100000000010000006300000000000000"
    "0000010000000100000001000000000000000100000063881300000000000008d7c90100000000060000006c"
    "65617365640100000001000000630080c3c901000000008813000000000000020000000000000000000000"
)


@pytest.mark.parametrize("version", [1, 2])
def test_snapshots_that_kept_bodies_are_refused_with_the_reason(version: int) -> None:
    assert VERSION == 3 and VERSION_1_SNAPSHOT[8] == 1
    blob = VERSION_1_SNAPSHOT[:8] + bytes([version]) + VERSION_1_SNAPSHOT[9:]
    broker = Broker()
    with pytest.raises(BrokerSnapshotError, match="kept message bodies in memory"):
        broker.restore(blob, 6)
    assert broker.snapshot() == Broker().snapshot()  # the state is kept


def test_stale_timers_are_swept() -> None:
    d = Driver()
    d.queue()
    d.subscribe()
    for _ in range(60):
        for n in range(100):
            d.do(Publish, "q", bytes([n % 256]))
        result = d.do(Deliver, "q", "g", "c1", 100)
        assert isinstance(result, Deliveries)
        for delivery in result.deliveries:
            d.do(Ack, "q", "g", delivery.sequence, delivery.token)
    # 6000 acked leases left 6000 stale timers behind; most have been swept.
    assert len(d.broker._state.timers) < 5000
    assert d.broker.stats("q").counters.acked == 6000


# -- under the node host ----------------------------------------------------------------------


class NoTransport:
    def send(self, messages: Sequence[Message]) -> None:
        pass


def host(store: SimLogStore, broker: Broker) -> NodeHost:
    return NodeHost(
        Config(id=1, voters=(1,)),
        store,
        NoTransport(),
        broker,
        random.Random(1),
        snapshot_entries=20,
        retain_entries=5,
    )


def reading(node: NodeHost) -> Broker:
    """The host's broker, reading bodies from the host's log (as ServerCore sets it up)."""
    broker = node.state_machine
    assert isinstance(broker, Broker)
    broker.reader = lambda index: node.node.raft.log.slice(index, index + 1, 1 << 62)[0].data
    return broker


def run(node: NodeHost, *commands: Command) -> None:
    for command in commands:
        node.propose(encode(command))
        node.process_all()


def test_a_node_host_checkpoints_the_broker_and_keeps_the_entries_its_messages_are_in() -> None:
    store = SimLogStore()
    node = host(store, Broker())
    broker = reading(node)
    node.node.campaign()
    node.process_all()
    run(
        node,
        CreateQueue("q", time=1),
        Subscribe("q", "g", "c", DeliveryMode.AT_MOST_ONCE, time=2),
        *(Publish("q", bytes([n]), message_id=f"k{n}", time=3 + n) for n in range(50)),
    )
    # Checkpoints were taken, but the log still holds every message's entry.
    assert store.load().checkpoint is not None
    assert node.storage.first_index() <= broker.pin() <= 4
    assert node.storage.snapshot_meta.index < broker.pin()
    before = broker.snapshot()

    restarted = host(store, Broker())
    restarted_broker = reading(restarted)
    assert restarted.node.raft.log.applied > 20  # from the checkpoint, not from the start
    restarted.node.campaign()
    restarted.process_all()
    assert restarted_broker.snapshot() == before  # checkpoint restored, tail re-applied
    assert restarted_broker.message("q", 1).body == b"\x00"  # read from the log
    run(restarted, Publish("q", b"again", message_id="k7", time=100))
    assert restarted_broker.stats("q").counters.duplicates_by_key == 1

    # Once every message is settled, the next checkpoint is where the log starts.
    run(restarted, Deliver("q", "g", "c", 100, time=101))
    run(restarted, *(Tick(time=102 + n) for n in range(25)))
    assert restarted_broker.stats("q").length == 0
    assert restarted.storage.snapshot_meta.index > 50
    assert restarted.storage.first_index() > 40


class _Backlog:
    """A broker fed commands as log entries 1, 2, 3, ...: queue "q" with group "g"
    (consumer "c1") and ``count`` messages published; calling it applies one more."""

    def __init__(self, count: int) -> None:
        from herald.broker import Broker, CreateQueue, Publish, Subscribe

        self.broker = Broker()
        self.index = 0
        self(CreateQueue("q", time=1))
        self(Subscribe("q", "g", "c1", time=2))
        for n in range(count):
            self(Publish("q", b"m%d" % n, time=3 + n))

    def __call__(self, command: object) -> object:
        from herald.broker import encode as encode_command
        from herald.raft import Entry

        self.index += 1
        return self.broker.apply(Entry(1, self.index, encode_command(command)))  # type: ignore[arg-type]


def test_a_checkpoint_stays_what_it_was_while_the_broker_goes_on() -> None:
    """A checkpoint's buffers view the index's own arrays (no copy on the event
    loop) and are written later by another thread: publishing, delivering,
    acking and a new group after it must not change a byte of it (the index
    copies a chunk before its first change: copy on write)."""
    from herald.broker import Ack, Broker, Deliver, Deliveries, Publish, Subscribe

    apply = _Backlog(3 * 4096 + 17)
    broker = apply.broker
    parts = broker.checkpoint()
    assert any(isinstance(part, memoryview) for part in parts), "the index was copied"
    expected = broker.snapshot()
    assert b"".join(parts) == expected
    now = 100_000
    for _ in range(5):  # settles the first chunk, and part of the second
        result = apply(Deliver("q", "g", "c1", 1000, time=now))
        assert isinstance(result, Deliveries)
        for delivery in result.deliveries:
            apply(Ack("q", "g", delivery.sequence, delivery.token, time=now))
    apply(Subscribe("q", "h", "c2", time=now))  # every message gains a reference
    for n in range(100):
        apply(Publish("q", b"later%d" % n, time=now + n))
    assert broker.snapshot() != expected
    assert b"".join(parts) == expected, "a change reached a checkpoint's buffers"
    restored = Broker()
    restored.restore(b"".join(parts), 3 * 4096 + 19)
    assert restored.snapshot() == expected


def test_a_checkpoint_reuses_what_it_wrote_for_unchanged_chunks_and_only_for_those() -> None:
    """A chunk nothing touched since the last checkpoint hands the next one the
    same buffers (a backlog of millions costs a checkpoint almost nothing); a
    chunk that changed in any way -- a publish, an ack, a new reference -- is
    written afresh, so every checkpoint equals the snapshot of its moment."""
    from herald.broker import Ack, Broker, Deliver, Deliveries, Publish, Subscribe

    apply = _Backlog(4 * 4096 + 5)
    broker = apply.broker
    messages = broker._state.queues["q"].messages
    first = list(messages.checkpoint_parts())
    assert b"".join(broker.checkpoint()) == broker.snapshot()
    again = list(messages.checkpoint_parts())
    assert all(a is b for a, b in zip(first, again, strict=True)), "unchanged, yet written anew"

    now = 100_000
    result = apply(Deliver("q", "g", "c1", 10, time=now))  # leases in chunk 0: no change
    assert isinstance(result, Deliveries)
    apply(Ack("q", "g", result.deliveries[3].sequence, result.deliveries[3].token, time=now))
    apply(Publish("q", b"late", time=now))  # the last chunk
    taken = [b"".join(broker.checkpoint()), broker.snapshot()]
    assert taken[0] == taken[1]
    after = list(messages.checkpoint_parts())
    reused = [a is b for a, b in zip(first, after, strict=True)]
    assert reused == [False, True, True, True, False]  # the acked chunk and the last one
    apply(Subscribe("q", "h", "c2", time=now))  # every message gains a reference
    assert b"".join(broker.checkpoint()) == broker.snapshot()
    assert not any(a is b for a, b in zip(after, messages.checkpoint_parts(), strict=False))
    restored = Broker()
    restored.restore(taken[0], apply.index)
    restored.restore(b"".join(broker.checkpoint()), apply.index)
    assert restored.snapshot() == broker.snapshot()
