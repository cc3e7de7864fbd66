"""The Outbox publishes what committed, once, even when its relay crashes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from herald.errors import (
    ConnectionClosedError,
    InvalidCommandError,
    InvalidOptionsError,
    MalformedCommandError,
    MessageTooLargeError,
    NotLeaderError,
    OutcomeUnknownError,
    OverloadedError,
    QueueFullError,
    RequestTimeoutError,
    UnknownQueueError,
    UsageError,
)
from herald.processing import (
    Database,
    Outbox,
    OutboxMessage,
    OutboxRelay,
    RelayRound,
    is_permanent_refusal,
)


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
    #: Bodies refused with the error the factory makes, on every attempt.
    refuse: dict[bytes, Callable[[], BaseException]] = field(default_factory=dict)
    #: Bodies stored, whose reply is then lost (the connection drops): outcome unknown.
    lose_reply: set[bytes] = field(default_factory=set)
    #: Every key a publish was attempted with, in order.
    attempts: list[str] = field(default_factory=list)

    async def publish(
        self, queue: str, body: bytes, *, headers: dict[str, str], key: str
    ) -> FakeReceipt:
        self.attempts.append(key)
        if self.fail_after is not None:
            if self.fail_after == 0:
                raise ConnectionClosedError("the connection dropped")
            self.fail_after -= 1
        if body in self.refuse:
            raise self.refuse[body]()
        if body in self.lose_reply:
            self.lose_reply.discard(body)
            self.stored.append((queue, body, headers, key))
            self.keys[key] = len(self.stored)
            raise ConnectionClosedError("the connection dropped before the reply")
        if key in self.keys:
            return FakeReceipt(self.keys[key], True)
        self.stored.append((queue, body, headers, key))
        self.keys[key] = len(self.stored)
        return FakeReceipt(len(self.stored), False)


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def order_table(database: Database) -> None:
    database.execute_script(["CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)"])


def write(outbox: Outbox, *bodies: bytes, queue: str = "q") -> list[int]:
    with outbox.transaction() as tx:
        return [tx.publish(queue, body) for body in bodies]


def too_large() -> BaseException:
    return MessageTooLargeError("q", 5000, 4096)


async def drain(relay: OutboxRelay) -> int:
    total = 0
    while sent := await relay.run_once():
        total += sent
    return total


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


def test_confirmed_rows_are_marked_sent_even_when_others_in_their_batch_fail(
    database: Database,
) -> None:
    outbox = Outbox(database)
    write(outbox, b"m0", b"m1", b"m2", b"m3")
    broker = FakeBroker(fail_after=2)  # two publishes land, then the connection drops
    relay = OutboxRelay(outbox, broker.publish, batch=10)
    with pytest.raises(ConnectionClosedError):
        asyncio.run(relay.run_once())
    assert [m.body for m in outbox.pending()] == [b"m2", b"m3"]
    assert (relay.published, relay.failures, relay.set_aside) == (2, 2, 0)
    broker.fail_after = None
    restarted = OutboxRelay(outbox, broker.publish, batch=10)
    assert asyncio.run(restarted.run_once()) == 2
    assert [body for _, body, _, _ in broker.stored] == [b"m0", b"m1", b"m2", b"m3"]
    assert restarted.duplicates == 0


def test_a_lost_reply_is_retried_with_the_same_key_and_stored_once(database: Database) -> None:
    """The broker stored the row but the relay never heard: the row stays pending,
    the retry carries the same key, the broker recognises it."""
    outbox = Outbox(database)
    (row,) = write(outbox, b"m0")
    broker = FakeBroker(lose_reply={b"m0"})
    relay = OutboxRelay(outbox, broker.publish)
    with pytest.raises(ConnectionClosedError):
        asyncio.run(relay.run_once())
    assert [m.id for m in outbox.pending()] == [row]
    assert asyncio.run(relay.run_once()) == 1
    assert broker.attempts == [outbox.key(row)] * 2
    assert len(broker.stored) == 1
    assert relay.duplicates == 1


@pytest.mark.parametrize(
    "error",
    [
        lambda: QueueFullError("q", "length", 10),
        lambda: OverloadedError("shedding load"),
        lambda: RequestTimeoutError("no reply"),
        lambda: ConnectionClosedError("dropped"),
        lambda: NotLeaderError(2, 7),
        lambda: OutcomeUnknownError("lost leadership"),
        TimeoutError,
        lambda: MalformedCommandError("an entry that does not decode"),
        lambda: UsageError("the client is not started"),
    ],
    ids=lambda make: type(make()).__name__,
)
def test_transient_failures_keep_the_row_pending_and_retry_it_with_the_same_key(
    database: Database, error: Callable[[], BaseException]
) -> None:
    outbox = Outbox(database)
    first, flaky, last = write(outbox, b"m0", b"flaky", b"m2")
    broker = FakeBroker(refuse={b"flaky": error})
    relay = OutboxRelay(outbox, broker.publish)
    for _ in range(3):
        with pytest.raises(type(error())):
            asyncio.run(relay.run_once())
    assert [m.id for m in outbox.pending()] == [flaky]
    assert outbox.set_aside_count() == 0
    assert (relay.published, relay.failures, relay.set_aside) == (2, 3, 0)
    del broker.refuse[b"flaky"]
    assert asyncio.run(relay.run_once()) == 1
    assert broker.attempts.count(outbox.key(flaky)) == 4
    assert [key for *_, key in broker.stored] == [outbox.key(r) for r in (first, last, flaky)]
    assert outbox.pending() == []


@pytest.mark.parametrize(
    "error",
    [
        lambda: UnknownQueueError("q"),
        lambda: MessageTooLargeError("q", 5000, 4096),
        lambda: InvalidCommandError("message id or headers too long for the codec"),
        lambda: InvalidOptionsError("a subclass of InvalidCommandError"),
    ],
    ids=lambda make: type(make()).__name__,
)
def test_a_row_the_broker_always_refuses_is_set_aside_and_the_rest_go_on(
    database: Database, error: Callable[[], BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: one row refused for good in the middle of a batch used to block
    every later row for ever."""
    clock = FakeClock()
    outbox = Outbox(database, clock=clock)
    rows = write(outbox, b"m0", b"m1", b"bad", b"m3", b"m4")
    bad = rows[2]
    broker = FakeBroker(refuse={b"bad": error})
    relay = OutboxRelay(outbox, broker.publish, batch=10)
    with caplog.at_level(logging.WARNING, logger="herald.processing.outbox"):
        assert asyncio.run(relay.run_once()) == 4  # no error raised: nothing to retry
    assert [body for _, body, _, _ in broker.stored] == [b"m0", b"m1", b"m3", b"m4"]
    assert (relay.published, relay.set_aside, relay.failures) == (4, 1, 0)
    # Visible: counted, listed with when and why, logged once.
    assert outbox.pending() == []
    assert outbox.oldest_pending_age() is None
    assert outbox.set_aside_count() == 1
    (aside,) = outbox.set_aside_rows()
    assert (aside.id, aside.message.body, aside.message.key) == (bad, b"bad", outbox.key(bad))
    assert (aside.set_aside_at, aside.error, aside.reason) == (
        clock.now,
        type(error()).__name__,
        str(error()),
    )
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"row {bad}" in warnings[0].getMessage()
    # Later rounds go on and never pick the bad row up again.
    write(outbox, b"m5", b"m6")
    with caplog.at_level(logging.WARNING, logger="herald.processing.outbox"):
        assert asyncio.run(drain(relay)) == 2
    assert broker.attempts.count(outbox.key(bad)) == 1
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert outbox.set_aside_count() == 1


def test_a_set_aside_row_can_be_requeued_once_fixed(database: Database) -> None:
    outbox = Outbox(database)
    good, bad = write(outbox, b"good", b"bad")
    broker = FakeBroker(refuse={b"bad": lambda: UnknownQueueError("q")})
    relay = OutboxRelay(outbox, broker.publish)
    assert asyncio.run(relay.run_once()) == 1
    assert outbox.requeue([good]) == 0  # sent, not set aside: left alone
    del broker.refuse[b"bad"]  # the operator created the queue
    assert outbox.requeue([bad, 999_999]) == 1
    assert outbox.set_aside_count() == 0
    assert [m.id for m in outbox.pending()] == [bad]
    assert asyncio.run(relay.run_once()) == 1
    assert broker.stored[-1][3] == outbox.key(bad)  # the same key as before
    assert outbox.set_aside_rows() == []


def test_a_set_aside_row_can_be_discarded(database: Database) -> None:
    outbox = Outbox(database)
    good, bad = write(outbox, b"good", b"bad")
    relay = OutboxRelay(outbox, FakeBroker(refuse={b"bad": too_large}).publish)
    asyncio.run(relay.run_once())
    assert outbox.discard([good]) == 0
    assert outbox.discard([bad]) == 1
    assert outbox.set_aside_count() == 0
    assert outbox.purge_sent(older_than=-1) == 1  # the good row; the bad one is gone


def test_run_goes_on_past_a_set_aside_row(database: Database) -> None:
    outbox = Outbox(database)
    write(outbox, *(b"bad%d" % n for n in range(3)), b"good")
    broker = FakeBroker(refuse={b"bad%d" % n: too_large for n in range(3)})

    async def main() -> OutboxRelay:
        stop = asyncio.Event()
        relay = OutboxRelay(outbox, broker.publish, batch=2, interval=0.01)
        task = asyncio.create_task(relay.run(stop))
        for _ in range(200):
            if broker.stored:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await task
        return relay

    relay = asyncio.run(main())
    assert [body for _, body, _, _ in broker.stored] == [b"good"]
    assert relay.set_aside == 3 and outbox.set_aside_count() == 3


def test_rows_an_older_version_wrote_that_no_broker_takes_are_set_aside_unpublished(
    database: Database,
) -> None:
    outbox = Outbox(database)
    with database.transaction() as cursor:
        cursor.execute(
            database.sql(
                "INSERT INTO herald_outbox (name, queue, body, headers, created_at) "
                "VALUES (?, ?, ?, ?, ?)"
            ),
            ("default", "bad\nname", b"x", "=empty name", 1.0),
        )
    (good,) = write(outbox, b"good")
    broker = FakeBroker()
    relay = OutboxRelay(outbox, broker.publish)
    assert asyncio.run(relay.run_once()) == 1
    assert broker.attempts == [outbox.key(good)]
    (aside,) = outbox.set_aside_rows()
    assert aside.error == "UsageError" and "queue name" in aside.reason


OLD_SCHEMA = (
    "CREATE TABLE herald_outbox ("
    " id {serial},"
    " name TEXT NOT NULL,"
    " queue TEXT NOT NULL,"
    " body {blob} NOT NULL,"
    " headers TEXT NOT NULL,"
    " created_at DOUBLE PRECISION NOT NULL,"
    " sent_at DOUBLE PRECISION)"
)


def test_a_table_of_an_older_version_gets_the_new_columns(database: Database) -> None:
    database.execute_script(
        [
            OLD_SCHEMA.format(serial=database.serial, blob=database.blob),
            "CREATE INDEX herald_outbox_pending ON herald_outbox (name, sent_at, id)",
        ]
    )
    with database.transaction() as cursor:
        cursor.execute(
            database.sql(
                "INSERT INTO herald_outbox (name, queue, body, headers, created_at) "
                "VALUES (?, ?, ?, ?, ?)"
            ),
            ("default", "q", b"old bad", "", 1.0),
        )
    outbox = Outbox(database)
    Outbox(database)  # opening it again changes nothing
    with database.transaction() as cursor:
        cursor.execute("SELECT set_aside_at, set_aside_error, set_aside_reason FROM herald_outbox")
        assert cursor.fetchall() == [(None, None, None)]
    write(outbox, b"new")
    broker = FakeBroker(refuse={b"old bad": too_large})
    assert asyncio.run(OutboxRelay(outbox, broker.publish).run_once()) == 1
    assert [m.message.body for m in outbox.set_aside_rows()] == [b"old bad"]


def test_the_clock_is_injected(database: Database) -> None:
    clock = FakeClock(5_000.0)
    outbox = Outbox(database, clock=clock)
    write(outbox, b"m0")
    assert outbox.pending()[0].created_at == 5_000.0
    clock.now += 30
    assert outbox.oldest_pending_age() == 30.0
    asyncio.run(OutboxRelay(outbox, FakeBroker().publish).run_once())
    clock.now += 10
    assert outbox.purge_sent(older_than=10) == 0  # sent exactly 10 s ago: kept
    clock.now += 1
    assert outbox.purge_sent(older_than=10) == 1


# -- the sans-IO round, without a database or an event loop ------------------------------


def message(row: int, queue: str = "q", headers: dict[str, str] | None = None) -> OutboxMessage:
    return OutboxMessage(row, queue, b"m%d" % row, headers or {}, 0.0, f"outbox/t/{row}")


def test_a_round_settles_each_row_by_its_own_outcome() -> None:
    round_ = RelayRound([message(1), message(2), message(3), message(4), message(5, "")])
    assert [m.id for m in round_.to_publish] == [1, 2, 3, 4]
    round_.confirmed(1)
    round_.failed(2, MessageTooLargeError("q", 9, 8))
    overloaded = OverloadedError("later")
    round_.failed(3, overloaded)
    round_.confirmed(4, duplicate=True)
    decision = round_.decide()
    assert decision.sent == (1, 4) and decision.duplicates == 1
    assert [(s.row, s.error) for s in decision.set_aside] == [
        (2, "MessageTooLargeError"),
        (5, "UsageError"),
    ]
    assert decision.pending == (3,) and decision.errors == (overloaded,)
    assert decision.progress


def test_a_row_without_an_outcome_stays_pending() -> None:
    decision = RelayRound([message(1), message(2)]).decide()
    assert decision.pending == (1, 2) and decision.errors == () and not decision.progress


def test_a_round_refuses_misuse() -> None:
    with pytest.raises(UsageError):
        RelayRound([message(1), message(1)])
    round_ = RelayRound([message(1), message(2, "")])
    round_.confirmed(1)
    with pytest.raises(UsageError):
        round_.confirmed(1)  # twice
    with pytest.raises(UsageError):
        round_.failed(2, OverloadedError("x"))  # set aside before publishing
    with pytest.raises(UsageError):
        round_.confirmed(3)  # not in the round


def test_a_round_takes_its_own_idea_of_permanent() -> None:
    round_ = RelayRound([message(1)], is_permanent=lambda error: isinstance(error, KeyError))
    round_.failed(1, KeyError("no such exchange"))
    assert [s.reason for s in round_.decide().set_aside] == ["'no such exchange'"]
    assert is_permanent_refusal(UnknownQueueError("q"))
    assert not is_permanent_refusal(MalformedCommandError("x"))
    assert not is_permanent_refusal(UsageError("x"))


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


@pytest.mark.parametrize(
    ("queue", "headers"),
    [
        ("", {}),
        ("q" * 256, {}),
        ("new\nline", {}),
        ("q", {"a=b": "c"}),
        ("q", {"": "c"}),
        ("q", {"a": "c\nd"}),
    ],
)
def test_bad_messages_are_refused(database: Database, queue: str, headers: dict[str, str]) -> None:
    outbox = Outbox(database)
    with pytest.raises(UsageError), outbox.transaction() as tx:
        tx.publish(queue, b"x", headers)
    assert outbox.pending() == []


def test_outbox_names_must_fit_in_a_key(database: Database) -> None:
    for name in ("", "n" * 1000):
        with pytest.raises(UsageError):
            Outbox(database, name=name)


def test_a_client_that_refuses_at_once_sets_nothing_aside(database: Database) -> None:
    """herald.Client.publish raises UsageError at the call when it is not started:
    the caller's bug, not the row's, so every row waits."""
    outbox = Outbox(database)
    write(outbox, b"m0", b"m1")

    def closed_client(queue: str, body: bytes, *, headers: dict[str, str], key: str) -> None:
        raise UsageError("the client is not started: use Client.connect or async with")

    relay = OutboxRelay(outbox, closed_client)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        asyncio.run(relay.run_once())
    assert len(outbox.pending()) == 2 and outbox.set_aside_count() == 0
    assert relay.failures == 2
