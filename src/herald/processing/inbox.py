"""The Inbox: effectively-once processing on the consumer's side.

Delivery is at least once: a consumer that crashes between doing its work and
acknowledging it gets the message again. The Inbox makes the *effect* happen
once anyway. It records the message's identity in your database in the same
transaction as your side effect, so the two commit together or not at all. A
redelivered message finds its record and is skipped; you acknowledge it
either way.

    inbox = Inbox.sqlite("shop.db")
    async for delivery in client.consume("orders", "billing"):
        with inbox.transaction(delivery) as tx:
            if not tx.duplicate:
                tx.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (10, 1))
        await delivery.ack()

or, as a handler that only runs the first time:

    inbox.process(delivery, lambda tx: tx.execute("UPDATE ..."))

Identity
--------

A message is known by its queue and its idempotency key (``message_id``) when
it has one (the Outbox always sets one): ``queue/message_id``. A key names the
message, so it is the same across incarnations of the queue. Without a key, a
message is known by its queue, the queue's *incarnation* and its broker
sequence number: ``queue#incarnation#sequence``. An idempotent producer never
stores a retry twice, so the sequence number is stable across redeliveries;
the incarnation tells apart two queues of the same name (a queue deleted and
created again numbers its messages from 1 again, under a new incarnation), so
new messages are not mistaken for the old queue's.

Incarnation 0 means "not known": a server that does not report incarnations
sends 0, and a delivery object without an ``incarnation`` attribute counts as
0. Such messages keep the key they always had, ``queue#sequence``, and with it
the old weakness: after a queue is deleted and created again, its new messages
without a key match the old queue's records (until those are purged) and are
skipped.

Upgrading: records written by versions before incarnations (``queue#sequence``)
do not match the keys of deliveries that carry an incarnation. A message
without a key that was processed before the upgrade and is *redelivered* after
it (processed, then the consumer stopped before its ack landed) is processed
again, once. Messages with a key are not affected. To avoid it, stop consumers
cleanly (every processed delivery acknowledged) before upgrading. The old
records are not consulted on purpose: they do not say which incarnation they
belong to, and honouring them would skip the new messages of a queue recreated
within ``retention`` of the upgrade -- the very loss this key prevents.

Retention
---------

Records older than ``retention`` are purged (``purge()``, also done every
``purge_every`` transactions). A record must outlive every way the same message
can come back: redelivery (up to ``max_deliveries`` leases, plus nack delays
and dead-letter redrives), and a producer retrying a publish with the same key
after the broker forgot the key (the broker's ``dedup_ttl``, 24 hours by
default). So keep ``retention`` above the queue's ``dedup_ttl`` plus the
longest redelivery horizon you allow: the default, 7 days, covers the broker's
defaults with room to spare. Purging earlier turns effectively-once back into
at-least-once for anything older.

Time comes from ``clock`` (``time.time`` by default, seconds): the simulator
passes its own, so a run does not depend on the wall clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from herald.errors import UsageError

from .database import Database, connect_postgres, connect_sqlite

__all__ = ["Inbox", "InboxTransaction", "MessageLike", "Processed", "message_key"]

T = TypeVar("T")
DAY = 86_400.0


class MessageLike(Protocol):
    """What the Inbox reads from a delivery (``herald.Delivery`` has all of it)."""

    @property
    def queue(self) -> str: ...

    @property
    def sequence(self) -> int: ...

    @property
    def message_id(self) -> str | None: ...

    @property
    def incarnation(self) -> int:
        """The queue's incarnation (0: not known; read as 0 when the attribute is missing)."""
        ...


def message_key(message: MessageLike | str) -> str:
    """The identity the Inbox records: ``queue/message_id`` for a message with a key,
    else ``queue#incarnation#sequence`` (``queue#sequence`` for incarnation 0).

    A string is taken as the key itself. Raises UsageError for an empty string
    or an incarnation that is not a non-negative integer.
    """
    if isinstance(message, str):
        if not message:
            raise UsageError("a message key must not be empty")
        return message
    if message.message_id:
        return f"{message.queue}/{message.message_id}"
    # Objects written before incarnations existed lack the attribute: they key as before.
    incarnation = getattr(message, "incarnation", 0)
    if not isinstance(incarnation, int) or isinstance(incarnation, bool) or incarnation < 0:
        raise UsageError(f"a delivery's incarnation must be an int >= 0, not {incarnation!r}")
    if incarnation == 0:
        return f"{message.queue}#{message.sequence}"
    return f"{message.queue}#{incarnation}#{message.sequence}"


@dataclass(slots=True)
class InboxTransaction:
    """Your transaction, plus whether the message was processed before."""

    cursor: Any
    duplicate: bool
    key: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run a statement in the transaction (``?`` placeholders work in both dialects)."""
        return self.cursor.execute(_to_dialect(self.cursor, sql), params)


@dataclass(frozen=True, slots=True)
class Processed(Generic[T]):
    """The outcome of :meth:`Inbox.process`: whether the handler ran, and what it returned."""

    ran: bool
    result: T | None = None

    @property
    def duplicate(self) -> bool:
        return not self.ran


class Inbox:
    """The processed-message record of one consumer, in the consumer's own database."""

    def __init__(
        self,
        database: Database,
        *,
        name: str = "default",
        retention: float = 7 * DAY,
        purge_every: int = 10_000,
        table: str = "herald_inbox",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not table.replace("_", "").isalnum():
            raise UsageError(f"table name {table!r} must be letters, digits and underscores")
        if retention <= 0:
            raise UsageError("retention must be positive")
        self.database = database
        self.name = name
        self.retention = retention
        self.purge_every = purge_every
        self.table = table
        self.clock = clock
        self._since_purge = 0
        database.execute_script(
            [
                f"CREATE TABLE IF NOT EXISTS {table} ("
                " name TEXT NOT NULL,"
                " key TEXT NOT NULL,"
                " processed_at DOUBLE PRECISION NOT NULL,"
                " PRIMARY KEY (name, key))",
                f"CREATE INDEX IF NOT EXISTS {table}_processed_at ON {table} (processed_at)",
            ]
        )
        if database.dialect == "sqlite":
            self._insert = (
                f"INSERT OR IGNORE INTO {table} (name, key, processed_at) VALUES (?, ?, ?)"
            )
        else:
            self._insert = (
                f"INSERT INTO {table} (name, key, processed_at) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING"
            )

    @classmethod
    def sqlite(cls, path: str, **options: Any) -> Inbox:
        """An Inbox in the SQLite database at ``path`` (created if missing)."""
        return cls(connect_sqlite(path), **options)

    @classmethod
    def postgres(cls, dsn: str, **options: Any) -> Inbox:
        """An Inbox in the PostgreSQL database ``dsn`` (needs psycopg)."""
        return cls(connect_postgres(dsn), **options)

    # -- processing -------------------------------------------------------------------

    @contextmanager
    def transaction(self, message: MessageLike | str) -> Iterator[InboxTransaction]:
        """Open a transaction that records ``message`` as processed.

        ``tx.duplicate`` is True when it was processed before: do nothing then.
        The record and your statements commit together when the block ends; an
        exception rolls both back (the message will come again).
        """
        key = message_key(message)
        with self.database.transaction() as cursor:
            cursor.execute(self._insert, (self.name, key, self.clock()))
            yield InboxTransaction(cursor, duplicate=cursor.rowcount == 0, key=key)
        self._maybe_purge()

    def process(
        self, message: MessageLike | str, handler: Callable[[InboxTransaction], T]
    ) -> Processed[T]:
        """Run ``handler(tx)`` in the transaction that records ``message``, unless it
        was processed before. Acknowledge the delivery after this returns, either way."""
        with self.transaction(message) as tx:
            if tx.duplicate:
                return Processed(False)
            return Processed(True, handler(tx))

    async def aprocess(
        self, message: MessageLike | str, handler: Callable[[InboxTransaction], T]
    ) -> Processed[T]:
        """:meth:`process` in a worker thread, for asyncio consumers."""
        return await asyncio.to_thread(self.process, message, handler)

    def seen(self, message: MessageLike | str) -> bool:
        """Whether ``message`` was processed (and its record not yet purged)."""
        with self.database.transaction() as cursor:
            cursor.execute(
                self.database.sql(f"SELECT 1 FROM {self.table} WHERE name = ? AND key = ?"),
                (self.name, message_key(message)),
            )
            return cursor.fetchone() is not None

    # -- retention --------------------------------------------------------------------

    def purge(self, older_than: float | None = None) -> int:
        """Delete records processed more than ``older_than`` seconds ago (default:
        ``retention``); returns how many."""
        horizon = self.clock() - (self.retention if older_than is None else older_than)
        with self.database.transaction() as cursor:
            cursor.execute(
                self.database.sql(f"DELETE FROM {self.table} WHERE name = ? AND processed_at < ?"),
                (self.name, horizon),
            )
            return int(cursor.rowcount)

    def _maybe_purge(self) -> None:
        self._since_purge += 1
        if self._since_purge >= self.purge_every:
            self._since_purge = 0
            self.purge()

    def close(self) -> None:
        self.database.close()


def _to_dialect(cursor: Any, sql: str) -> str:
    # sqlite3 cursors take "?", psycopg cursors "%s".
    if type(cursor).__module__.startswith("sqlite3"):
        return sql
    return sql.replace("?", "%s")
