"""The Outbox publishes what committed, once, even when its relay crashes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from herald.errors import ConnectionClosedError, UsageError
from herald.processing import Database, Outbox, OutboxRelay


@dataclass
class FakeReceipt:
    sequence: int
    duplicate: bool


@dataclass
class FakeBroker:
    """Publishes with idempotency keys, like the real broker's dedup index."""

    stored: list[tuple[str, bytes, dict[str, str], str]] = field(default_factory=list)
    keys: dict[str, int] = field(default_factory=dict)
    fail_after: int | None = None  # raise on the publish after this many

    async def publish(
        self, queue: str, body: bytes, *, headers: dict[str, str], key: str
    ) -> FakeReceipt:
        if self.fail_after is not None:
            if self.fail_after == 0:
                raise ConnectionClosedError("the connection dropped")
            self.fail_after -= 1
        if key in self.keys:
            return FakeReceipt(self.keys[key], True)
        self.stored.append((queue, body, headers, key))
        self.keys[key] = len(self.stored)
        return FakeReceipt(len(self.stored), False)


def order_table(database: Database) -> None:
    database.execute_script(["CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)"])


def test_a_message_is_published_only_if_its_transaction_commits(database: Database) -> None:
    order_table(database)
    outbox = Outbox(database)
    with outbox.transaction() as tx:
        tx.execute("INSERT INTO orders (id, total) VALUES (?, ?)", (1, 99))
        tx.publish("orders", b"order 1", {"kind": "created"})
    with pytest.raises(RuntimeError), outbox.transaction() as tx:
        tx.execute("INSERT INTO orders (id, total) VALUES (?, ?)", (2, 5))
        tx.publish("orders", b"order 2")
        raise RuntimeError("the business logic failed")
    pending = outbox.pending()
    assert [(m.queue, m.body, m.headers) for m in pending] == [
        ("orders", b"order 1", {"kind": "created"})
    ]
    assert pending[0].key == f"outbox/default/{pending[0].id}"


def test_the_relay_publishes_in_order_and_marks_sent(database: Database) -> None:
    outbox = Outbox(database)
    with outbox.transaction() as tx:
        for number in range(5):
            tx.publish("q", b"m%d" % number)
    broker = FakeBroker()
    relay = OutboxRelay(outbox, broker.publish, batch=2)

    async def drain() -> int:
        total = 0
        while sent := await relay.run_once():
            total += sent
        return total

    assert asyncio.run(drain()) == 5
    assert [body for _, body, _, _ in broker.stored] == [b"m%d" % n for n in range(5)]
    assert outbox.pending() == []
    assert outbox.oldest_pending_age() is None


def test_a_relay_that_crashes_mid_batch_creates_no_duplicates(database: Database) -> None:
    outbox = Outbox(database)
    with outbox.transaction() as tx:
        for number in range(4):
            tx.publish("q", b"m%d" % number)
    broker = FakeBroker(fail_after=2)  # two publishes land, then the connection drops
    relay = OutboxRelay(outbox, broker.publish, batch=10)
    with pytest.raises(ConnectionClosedError):
        asyncio.run(relay.run_once())
    assert len(outbox.pending()) == 4  # nothing marked: the relay does not know
    broker.fail_after = None
    restarted = OutboxRelay(outbox, broker.publish, batch=10)
    assert asyncio.run(restarted.run_once()) == 4
    assert [body for _, body, _, _ in broker.stored] == [b"m0", b"m1", b"m2", b"m3"]
    assert restarted.duplicates == 2  # the two that had landed were recognised


def test_run_until_stopped(database: Database) -> None:
    outbox = Outbox(database)
    broker = FakeBroker()

    async def main() -> None:
        stop = asyncio.Event()
        relay = OutboxRelay(outbox, broker.publish, interval=0.01)
        task = asyncio.create_task(relay.run(stop))
        with outbox.transaction() as tx:
            tx.publish("q", b"late")
        for _ in range(100):
            if broker.stored:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await task

    asyncio.run(main())
    assert [body for _, body, _, _ in broker.stored] == [b"late"]


def test_sent_rows_can_be_purged(database: Database) -> None:
    outbox = Outbox(database)
    with outbox.transaction() as tx:
        tx.publish("q", b"x")
    asyncio.run(OutboxRelay(outbox, FakeBroker().publish).run_once())
    assert outbox.purge_sent(older_than=3600) == 0
    assert outbox.purge_sent(older_than=-1) == 1


def test_bad_messages_are_refused(database: Database) -> None:
    outbox = Outbox(database)
    with pytest.raises(UsageError), outbox.transaction() as tx:
        tx.publish("", b"x")
    with pytest.raises(UsageError), outbox.transaction() as tx:
        tx.publish("q", b"x", {"a=b": "c"})
    assert outbox.pending() == []
