"""The Outbox: publish exactly what your database committed, no more, no less.

Writing to your database and publishing a message are two systems: do the write
then crash before publishing, and the message is lost; publish then crash
before committing, and it announces something that never happened. The Outbox
puts the message into your database, as a row written in the same transaction
as your data, and a relay publishes pending rows afterwards:

    outbox = Outbox.sqlite("shop.db")
    with outbox.transaction() as tx:
        tx.execute("INSERT INTO orders (id, total) VALUES (?, ?)", (42, 99))
        tx.publish("orders", b'{"order": 42}')

    relay = OutboxRelay(outbox, client.publish)
    await relay.run()            # or relay.run_once() from your own loop

The relay publishes each row with the idempotency key ``outbox/<name>/<row id>``
and only then marks it sent. A relay that crashes between the two publishes
the row again on restart; the broker recognises the key and returns the
original receipt (``duplicate=True``), so no second copy exists. That holds as
long as the retry comes within the queue's ``dedup_ttl`` (24 hours by default)
of the first attempt: keep relays running, and alert on old pending rows
(:meth:`Outbox.oldest_pending_age`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from herald.errors import HeraldError, UsageError

from .database import Database, connect_postgres, connect_sqlite

__all__ = ["Outbox", "OutboxMessage", "OutboxRelay", "OutboxTransaction"]

#: ``publish(queue, body, headers=..., key=...)``, e.g. ``herald.Client.publish``.
Publisher = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    queue: str
    body: bytes
    headers: dict[str, str]
    created_at: float
    key: str


class OutboxTransaction:
    """Your transaction, with :meth:`publish` to add a message to the outbox."""

    __slots__ = ("_outbox", "added", "cursor")

    def __init__(self, outbox: Outbox, cursor: Any) -> None:
        self._outbox = outbox
        self.cursor = cursor
        self.added: list[int] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run a statement in the transaction (``?`` placeholders work in both dialects)."""
        return self.cursor.execute(self._outbox.database.sql(sql), params)

    def publish(self, queue: str, body: bytes, headers: Mapping[str, str] | None = None) -> int:
        """Queue a message for publishing once this transaction commits; returns its row id."""
        row = self._outbox._add(self.cursor, queue, body, headers or {})
        self.added.append(row)
        return row


class Outbox:
    """Messages waiting to be published, in the producer's own database."""

    def __init__(
        self, database: Database, *, name: str = "default", table: str = "herald_outbox"
    ) -> None:
        if not table.replace("_", "").isalnum():
            raise UsageError(f"table name {table!r} must be letters, digits and underscores")
        self.database = database
        self.name = name
        self.table = table
        database.execute_script(
            [
                f"CREATE TABLE IF NOT EXISTS {table} ("
                f" id {database.serial},"
                " name TEXT NOT NULL,"
                " queue TEXT NOT NULL,"
                f" body {database.blob} NOT NULL,"
                " headers TEXT NOT NULL,"
                " created_at DOUBLE PRECISION NOT NULL,"
                " sent_at DOUBLE PRECISION)",
                f"CREATE INDEX IF NOT EXISTS {table}_pending ON {table} (name, sent_at, id)",
            ]
        )

    @classmethod
    def sqlite(cls, path: str, **options: Any) -> Outbox:
        return cls(connect_sqlite(path), **options)

    @classmethod
    def postgres(cls, dsn: str, **options: Any) -> Outbox:
        return cls(connect_postgres(dsn), **options)

    def key(self, row: int) -> str:
        """The idempotency key the relay publishes row ``row`` with."""
        return f"outbox/{self.name}/{row}"

    # -- writing (inside your transaction) ----------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[OutboxTransaction]:
        """Your transaction: business writes and outbox messages commit together."""
        with self.database.transaction() as cursor:
            yield OutboxTransaction(self, cursor)

    def _add(self, cursor: Any, queue: str, body: bytes, headers: Mapping[str, str]) -> int:
        if not queue:
            raise UsageError("an outbox message needs a queue")
        encoded = "\n".join(f"{name}={value}" for name, value in sorted(headers.items()))
        if any("\n" in name + value or "=" in name for name, value in headers.items()):
            raise UsageError("header names may not contain '=' or newlines, values no newlines")
        sql = self.database.sql(
            f"INSERT INTO {self.table} (name, queue, body, headers, created_at) "
            "VALUES (?, ?, ?, ?, ?)"
        )
        if self.database.dialect == "postgres":
            cursor.execute(sql + " RETURNING id", (self.name, queue, body, encoded, time.time()))
            row = cursor.fetchone()
            return int(row[0])
        cursor.execute(sql, (self.name, queue, body, encoded, time.time()))
        return int(cursor.lastrowid)

    # -- relaying -----------------------------------------------------------------------

    def pending(self, limit: int = 100) -> list[OutboxMessage]:
        """The oldest unsent messages, in the order they were written."""
        with self.database.transaction() as cursor:
            cursor.execute(
                self.database.sql(
                    f"SELECT id, queue, body, headers, created_at FROM {self.table} "
                    "WHERE name = ? AND sent_at IS NULL ORDER BY id LIMIT ?"
                ),
                (self.name, limit),
            )
            rows = cursor.fetchall()
        return [
            OutboxMessage(
                int(row[0]),
                row[1],
                bytes(row[2]),
                _decode_headers(row[3]),
                float(row[4]),
                self.key(int(row[0])),
            )
            for row in rows
        ]

    def mark_sent(self, rows: Sequence[int]) -> None:
        if not rows:
            return
        marks = ", ".join("?" for _ in rows)
        with self.database.transaction() as cursor:
            cursor.execute(
                self.database.sql(
                    f"UPDATE {self.table} SET sent_at = ? WHERE name = ? AND id IN ({marks})"
                ),
                (time.time(), self.name, *rows),
            )

    def oldest_pending_age(self) -> float | None:
        """Seconds since the oldest unsent message was written (None: nothing pending)."""
        with self.database.transaction() as cursor:
            cursor.execute(
                self.database.sql(
                    f"SELECT MIN(created_at) FROM {self.table} WHERE name = ? AND sent_at IS NULL"
                ),
                (self.name,),
            )
            row = cursor.fetchone()
        return None if row is None or row[0] is None else time.time() - float(row[0])

    def purge_sent(self, older_than: float) -> int:
        """Delete rows sent more than ``older_than`` seconds ago; returns how many."""
        with self.database.transaction() as cursor:
            cursor.execute(
                self.database.sql(
                    f"DELETE FROM {self.table} WHERE name = ? AND sent_at IS NOT NULL "
                    "AND sent_at < ?"
                ),
                (self.name, time.time() - older_than),
            )
            return int(cursor.rowcount)

    def close(self) -> None:
        self.database.close()


class OutboxRelay:
    """Publishes pending outbox rows, oldest first, each with its row's idempotency key."""

    def __init__(
        self, outbox: Outbox, publish: Publisher, *, batch: int = 100, interval: float = 0.05
    ) -> None:
        self.outbox = outbox
        self.publish = publish
        self.batch = batch
        self.interval = interval
        self.published = 0
        self.duplicates = 0  # retries the broker recognised (a relay restarted mid-batch)

    async def run_once(self) -> int:
        """Publish up to ``batch`` pending rows; returns how many were published.

        Rows are published concurrently and marked sent once all are confirmed.
        If publishing fails, nothing of the batch is marked and the error is
        raised: the next call publishes the rows again with the same keys.
        """
        messages = await asyncio.to_thread(self.outbox.pending, self.batch)
        if not messages:
            return 0
        receipts = await asyncio.gather(
            *(
                self.publish(message.queue, message.body, headers=message.headers, key=message.key)
                for message in messages
            )
        )
        self.duplicates += sum(bool(getattr(receipt, "duplicate", False)) for receipt in receipts)
        await asyncio.to_thread(self.outbox.mark_sent, [message.id for message in messages])
        self.published += len(messages)
        return len(messages)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Relay until ``stop`` is set; retries after errors with a short pause."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                sent = await self.run_once()
            except HeraldError:
                sent = 0
                await asyncio.sleep(self.interval * 4)
            if sent == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.interval)


def _decode_headers(text: str) -> dict[str, str]:
    if not text:
        return {}
    return dict(line.split("=", 1) for line in text.split("\n"))
