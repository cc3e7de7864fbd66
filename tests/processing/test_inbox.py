"""The Inbox records "done" in the same transaction as the effect."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import pytest

from herald.errors import UsageError
from herald.processing import Database, Inbox, InboxTransaction, message_key


@dataclass(frozen=True)
class FakeDelivery:
    queue: str
    sequence: int
    message_id: str | None = None
    incarnation: int = 1


@dataclass(frozen=True)
class OldDelivery:
    """A delivery object from before incarnations: no ``incarnation`` attribute."""

    queue: str
    sequence: int
    message_id: str | None = None


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_accounts(database: Database) -> None:
    database.execute_script(
        ["CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)"]
    )
    with database.transaction() as cursor:
        cursor.execute(database.sql("INSERT INTO accounts (id, balance) VALUES (?, ?)"), (1, 0))


def balance(database: Database) -> int:
    with database.transaction() as cursor:
        cursor.execute(database.sql("SELECT balance FROM accounts WHERE id = ?"), (1,))
        return int(cursor.fetchone()[0])


def add_ten(tx: InboxTransaction) -> str:
    tx.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (10, 1))
    return "done"


def test_a_redelivered_message_has_its_effect_once(database: Database) -> None:
    make_accounts(database)
    inbox = Inbox(database)
    delivery = FakeDelivery("orders", 7)
    first = inbox.process(delivery, add_ten)
    again = inbox.process(delivery, add_ten)
    assert first.ran and first.result == "done"
    assert again.duplicate and again.result is None
    assert balance(database) == 10
    assert inbox.seen(delivery)


def test_the_context_manager_says_duplicate(database: Database) -> None:
    make_accounts(database)
    inbox = Inbox(database)
    for expected in (False, True, True):
        with inbox.transaction(FakeDelivery("q", 1, "key-1")) as tx:
            assert tx.duplicate is expected
            if not tx.duplicate:
                add_ten(tx)
    assert balance(database) == 10


def test_a_failed_effect_is_not_recorded(database: Database) -> None:
    """A crash (here: an exception) before commit rolls back effect and record alike:
    the redelivery runs the effect for the first and only time."""
    make_accounts(database)
    inbox = Inbox(database)
    delivery = FakeDelivery("orders", 9)

    def crash(tx: InboxTransaction) -> None:
        add_ten(tx)
        raise RuntimeError("power cut between the effect and the commit")

    with pytest.raises(RuntimeError):
        inbox.process(delivery, crash)
    assert balance(database) == 0
    assert not inbox.seen(delivery)
    assert inbox.process(delivery, add_ten).ran
    assert balance(database) == 10


def test_two_consumers_racing_on_one_message_apply_it_once(
    database: Database, second_connection: Database
) -> None:
    make_accounts(database)
    first, second = Inbox(database), Inbox(second_connection)
    delivery = FakeDelivery("orders", 3)
    results: list[bool] = []
    start = threading.Barrier(2)

    def consume(inbox: Inbox) -> None:
        start.wait()

        def slow(tx: InboxTransaction) -> None:
            add_ten(tx)
            time.sleep(0.05)

        results.append(inbox.process(delivery, slow).ran)

    threads = [threading.Thread(target=consume, args=(inbox,)) for inbox in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, True]
    assert balance(database) == 10


def test_identity_prefers_the_idempotency_key() -> None:
    assert message_key(FakeDelivery("q", 5)) == "q#1#5"
    assert message_key(FakeDelivery("q", 5, "abc")) == "q/abc"
    # The same key under a different sequence (a second stored copy) is one message.
    assert message_key(FakeDelivery("q", 6, "abc")) == "q/abc"
    # ... and under another incarnation of the queue: a key names the message.
    assert message_key(FakeDelivery("q", 6, "abc", incarnation=2)) == "q/abc"
    assert message_key("custom") == "custom"
    with pytest.raises(UsageError):
        message_key("")


def test_identity_without_a_key_includes_the_incarnation() -> None:
    assert message_key(FakeDelivery("q", 5, incarnation=7)) == "q#7#5"
    # Incarnation 0 (a server that does not report it) and objects without the
    # attribute key as before incarnations existed.
    assert message_key(FakeDelivery("q", 5, incarnation=0)) == "q#5"
    assert message_key(OldDelivery("q", 5)) == "q#5"  # type: ignore[arg-type]
    for bad in (-1, "3", True):
        with pytest.raises(UsageError):
            message_key(FakeDelivery("q", 5, incarnation=bad))  # type: ignore[arg-type]


def test_a_recreated_queue_s_messages_are_not_taken_for_the_old_ones(database: Database) -> None:
    """Regression: a queue deleted and created again numbers from 1 again; its new
    messages (same name, same sequence, new incarnation) must run their effect."""
    make_accounts(database)
    inbox = Inbox(database)
    assert inbox.process(FakeDelivery("orders", 1, incarnation=4), add_ten).ran
    recreated = FakeDelivery("orders", 1, incarnation=9)
    assert not inbox.seen(recreated)
    assert inbox.process(recreated, add_ten).ran
    assert balance(database) == 20
    # Redeliveries within each incarnation are still recognised.
    assert inbox.process(FakeDelivery("orders", 1, incarnation=4), add_ten).duplicate
    assert inbox.process(recreated, add_ten).duplicate
    assert balance(database) == 20


def test_a_message_with_a_key_is_one_message_across_incarnations(database: Database) -> None:
    make_accounts(database)
    inbox = Inbox(database)
    assert inbox.process(FakeDelivery("orders", 1, "order-42", incarnation=4), add_ten).ran
    assert inbox.process(FakeDelivery("orders", 3, "order-42", incarnation=5), add_ten).duplicate
    assert balance(database) == 10


def test_records_of_older_versions(database: Database) -> None:
    """A record written before incarnations (``queue#sequence``) still matches
    deliveries without an incarnation, and (documented) not those with one."""
    make_accounts(database)
    inbox = Inbox(database)
    with database.transaction() as cursor:
        cursor.execute(
            database.sql("INSERT INTO herald_inbox (name, key, processed_at) VALUES (?, ?, ?)"),
            ("default", "orders#7", time.time()),
        )
    assert inbox.process(OldDelivery("orders", 7), add_ten).duplicate  # type: ignore[arg-type]
    assert inbox.process(FakeDelivery("orders", 7, incarnation=0), add_ten).duplicate
    assert inbox.process(FakeDelivery("orders", 7, incarnation=3), add_ten).ran
    assert balance(database) == 10


def test_inboxes_with_different_names_are_independent(database: Database) -> None:
    make_accounts(database)
    billing, shipping = Inbox(database, name="billing"), Inbox(database, name="shipping")
    delivery = FakeDelivery("orders", 1)
    assert billing.process(delivery, add_ten).ran
    assert shipping.process(delivery, add_ten).ran
    assert balance(database) == 20


def test_retention_purges_old_records(database: Database) -> None:
    inbox = Inbox(database, retention=3600)
    inbox.process(FakeDelivery("q", 1), lambda tx: None)
    assert inbox.purge() == 0
    assert inbox.purge(older_than=-1) == 1
    assert not inbox.seen(FakeDelivery("q", 1))


def test_purge_runs_by_itself_every_so_often(database: Database) -> None:
    clock = FakeClock()
    inbox = Inbox(database, retention=10, purge_every=3, clock=clock)
    for sequence in range(3):
        inbox.process(FakeDelivery("q", sequence), lambda tx: None)
        clock.now += 6
    # The third transaction purged what was processed more than 10 s before it.
    assert not inbox.seen(FakeDelivery("q", 0))
    assert inbox.seen(FakeDelivery("q", 1))


def test_the_clock_is_injected(database: Database) -> None:
    clock = FakeClock(5_000.0)
    inbox = Inbox(database, retention=100, clock=clock)
    inbox.process(FakeDelivery("q", 1), lambda tx: None)
    with database.transaction() as cursor:
        cursor.execute("SELECT processed_at FROM herald_inbox")
        assert float(cursor.fetchone()[0]) == 5_000.0
    clock.now += 100
    assert inbox.purge() == 0  # exactly ``retention`` old: kept
    clock.now += 1
    assert inbox.purge() == 1


def test_async_processing(database: Database) -> None:
    make_accounts(database)
    inbox = Inbox(database)

    async def main() -> list[bool]:
        return [(await inbox.aprocess(FakeDelivery("q", 1), add_ten)).ran for _ in range(2)]

    assert asyncio.run(main()) == [True, False]
    assert balance(database) == 10


@pytest.mark.parametrize("table", ["bad-name", "x; DROP TABLE y"])
def test_table_names_are_checked(database: Database, table: str) -> None:
    with pytest.raises(UsageError):
        Inbox(database, table=table)
