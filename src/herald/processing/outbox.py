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

Rows the broker refuses for good
--------------------------------

Each row is settled by its own publish (:mod:`herald.processing.relay` holds
the rules, without IO): confirmed rows are marked sent even when others in
their batch failed; rows failing transiently stay pending and are retried with
the same key; a row the broker will never take (an unknown queue, a message too
large for the queue, an invalid field) is *set aside*: ``set_aside_at``,
``set_aside_error`` and ``set_aside_reason`` say when and why, the relay counts
it (``relay.set_aside``) and logs a warning, and it is no longer picked up, so
the rows behind it go on. Alert on :meth:`Outbox.set_aside_count`; list the
rows with :meth:`Outbox.set_aside_rows`, fix the cause (create the queue, raise
its size limit) and :meth:`Outbox.requeue` them, or :meth:`Outbox.discard`
them. A requeued row keeps its key. Set-aside rows break their queue's order.

Tables created by older versions get the three columns added when an Outbox
opens them. Relays of an older version do not know the columns: they would
keep retrying set-aside rows, so upgrade every relay of an outbox.

Time comes from ``clock`` (``time.time`` by default, seconds): the simulator
passes its own, so a run does not depend on the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from herald.errors import HeraldError, UsageError

from .database import Database, connect_postgres, connect_sqlite
from .relay import RelayRound, RoundDecision, is_permanent_refusal, row_problem

__all__ = ["Outbox", "OutboxMessage", "OutboxRelay", "OutboxTransaction", "SetAsideMessage"]

log = logging.getLogger(__name__)

#: ``publish(queue, body, headers=..., key=...)``, e.g. ``herald.Client.publish``.
Publisher = Callable[..., Awaitable[Any]]

#: The broker's longest idempotency key, in characters.
_MAX_KEY: Final = 1024
#: Columns added after the first version, with their types: added to old tables.
_LATER_COLUMNS: Final = (
    ("set_aside_at", "DOUBLE PRECISION"),
    ("set_aside_error", "TEXT"),
    ("set_aside_reason", "TEXT"),
)
#: Row ids per statement (SQLite allowed 999 parameters before 3.32).
_CHUNK: Final = 500


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    queue: str
    body: bytes
    headers: dict[str, str]
    created_at: float
    key: str


@dataclass(frozen=True, slots=True)
class SetAsideMessage:
    """A row the broker refused for good: when (``set_aside_at``), and why
    (``error``: the error's class name; ``reason``: its message)."""

    message: OutboxMessage
    set_aside_at: float
    error: str
    reason: str

    @property
    def id(self) -> int:
        return self.message.id


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
        """Queue a message for publishing once this transaction commits; returns its row id.

        Raises UsageError for a message that could never be published: a queue
        name that is empty, longer than 255 characters or not printable; a
        header name that is empty or holds ``=`` or a newline; a header value
        with a newline.
        """
        row = self._outbox._add(self.cursor, queue, body, headers or {})
        self.added.append(row)
        return row


class Outbox:
    """Messages waiting to be published, in the producer's own database."""

    def __init__(
        self,
        database: Database,
        *,
        name: str = "default",
        table: str = "herald_outbox",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not table.replace("_", "").isalnum():
            raise UsageError(f"table name {table!r} must be letters, digits and underscores")
        if not name or len(f"outbox/{name}/{2**63}") > _MAX_KEY:
            raise UsageError(f"an outbox name must be 1..{_MAX_KEY - 27} characters")
        self.database = database
        self.name = name
        self.table = table
        self.clock = clock
        with database.transaction() as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {table} ("
                f" id {database.serial},"
                " name TEXT NOT NULL,"
                " queue TEXT NOT NULL,"
                f" body {database.blob} NOT NULL,"
                " headers TEXT NOT NULL,"
                " created_at DOUBLE PRECISION NOT NULL,"
                " sent_at DOUBLE PRECISION,"
                " set_aside_at DOUBLE PRECISION,"
                " set_aside_error TEXT,"
                " set_aside_reason TEXT)"
            )
            cursor.execute(
                f"CREATE INDEX IF NOT EXISTS {table}_pending ON {table} (name, sent_at, id)"
            )
            self._add_missing_columns(cursor)

    def _add_missing_columns(self, cursor: Any) -> None:
        # A table created by an older version lacks the later columns. In the
        # transaction that created the table: SQLite's BEGIN IMMEDIATE serialises
        # two processes opening it at once; PostgreSQL's IF NOT EXISTS covers
        # them. Only missing columns are altered, so a role that may write the
        # table but does not own it can open an upgraded one.
        if self.database.dialect == "sqlite":
            cursor.execute(f"PRAGMA table_info({self.table})")
            present = {str(row[1]) for row in cursor.fetchall()}
        else:
            cursor.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) "
                "AND attnum > 0 AND NOT attisdropped",
                (self.table,),
            )
            present = {str(row[0]) for row in cursor.fetchall()}
        exists = "" if self.database.dialect == "sqlite" else "IF NOT EXISTS "
        for column, kind in _LATER_COLUMNS:
            if column not in present:
                cursor.execute(f"ALTER TABLE {self.table} ADD COLUMN {exists}{column} {kind}")

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
        problem = row_problem(queue, headers)
        if problem is not None:
            raise UsageError(problem)
        encoded = "\n".join(f"{name}={value}" for name, value in sorted(headers.items()))
        sql = self.database.sql(
            f"INSERT INTO {self.table} (name, queue, body, headers, created_at) "
            "VALUES (?, ?, ?, ?, ?)"
        )
        if self.database.dialect == "postgres":
            cursor.execute(sql + " RETURNING id", (self.name, queue, body, encoded, self.clock()))
            row = cursor.fetchone()
            return int(row[0])
        cursor.execute(sql, (self.name, queue, body, encoded, self.clock()))
        return int(cursor.lastrowid)

    # -- relaying -----------------------------------------------------------------------

    def pending(self, limit: int = 100) -> list[OutboxMessage]:
        """The oldest unsent messages that are not set aside, in the order they were written."""
        with self.database.transaction() as cursor:
            cursor.execute(
                self.database.sql(
                    f"SELECT id, queue, body, headers, created_at FROM {self.table} "
                    "WHERE name = ? AND sent_at IS NULL AND set_aside_at IS NULL "
                    "ORDER BY id LIMIT ?"
                ),
                (self.name, limit),
            )
            rows = cursor.fetchall()
        return [self._message(row) for row in rows]

    def _message(self, row: Sequence[Any]) -> OutboxMessage:
        return OutboxMessage(
            int(row[0]),
            row[1],
            bytes(row[2]),
            _decode_headers(row[3]),
            float(row[4]),
            self.key(int(row[0])),
        )

    def mark_sent(self, rows: Sequence[int]) -> None:
        """Record rows as sent (the broker confirmed them)."""
        if rows:
            with self.database.transaction() as cursor:
                self._mark_sent(cursor, rows, self.clock())

    def _mark_sent(self, cursor: Any, rows: Sequence[int], now: float) -> None:
        for chunk in _chunks(rows):
            marks = ", ".join("?" for _ in chunk)
            cursor.execute(
                self.database.sql(
                    f"UPDATE {self.table} SET sent_at = ? WHERE name = ? AND id IN ({marks})"
                ),
                (now, self.name, *chunk),
            )

    def record(self, decision: RoundDecision) -> None:
        """Record one relay round in one transaction: its sent rows as sent, its
        set-aside rows with when and why (a row already sent stays sent)."""
        if not decision.sent and not decision.set_aside:
            return
        now = self.clock()
        with self.database.transaction() as cursor:
            self._mark_sent(cursor, decision.sent, now)
            for entry in decision.set_aside:
                cursor.execute(
                    self.database.sql(
                        f"UPDATE {self.table} SET set_aside_at = ?, set_aside_error = ?, "
                        "set_aside_reason = ? WHERE name = ? AND id = ? AND sent_at IS NULL"
                    ),
                    (now, entry.error, entry.reason, self.name, entry.row),
                )

    def oldest_pending_age(self) -> float | None:
        """Seconds since the oldest unsent message was written (None: nothing pending).
        Set-aside rows do not count: see :meth:`set_aside_count`."""
        with self.database.transaction() as cursor:
            cursor.execute(
                self.database.sql(
                    f"SELECT MIN(created_at) FROM {self.table} "
                    "WHERE name = ? AND sent_at IS NULL AND set_aside_at IS NULL"
                ),
                (self.name,),
            )
            row = cursor.fetchone()
        return None if row is None or row[0] is None else self.clock() - float(row[0])

    # -- rows set aside -----------------------------------------------------------------

    def set_aside_count(self) -> int:
        """How many rows are set aside (refused for good, waiting for an operator)."""
        with self.database.transaction() as cursor:
            cursor.execute(
                self.database.sql(
                    f"SELECT COUNT(*) FROM {self.table} "
                    "WHERE name = ? AND sent_at IS NULL AND set_aside_at IS NOT NULL"
                ),
                (self.name,),
            )
            row = cursor.fetchone()
        return int(row[0])

    def set_aside_rows(self, limit: int = 100) -> list[SetAsideMessage]:
        """The oldest rows set aside, in the order they were written, with when and why."""
        with self.database.transaction() as cursor:
            cursor.execute(
                self.database.sql(
                    f"SELECT id, queue, body, headers, created_at, set_aside_at, "
                    f"set_aside_error, set_aside_reason FROM {self.table} "
                    "WHERE name = ? AND sent_at IS NULL AND set_aside_at IS NOT NULL "
                    "ORDER BY id LIMIT ?"
                ),
                (self.name, limit),
            )
            rows = cursor.fetchall()
        return [
            SetAsideMessage(self._message(row), float(row[5]), str(row[6]), str(row[7]))
            for row in rows
        ]

    def requeue(self, rows: Sequence[int]) -> int:
        """Put set-aside rows back among the pending (once their cause is fixed);
        they are published with the same key. Returns how many were set aside."""
        return self._settle_set_aside(
            rows,
            f"UPDATE {self.table} SET set_aside_at = NULL, set_aside_error = NULL, "
            "set_aside_reason = NULL",
        )

    def discard(self, rows: Sequence[int]) -> int:
        """Delete set-aside rows that will never be published; returns how many."""
        return self._settle_set_aside(rows, f"DELETE FROM {self.table}")

    def _settle_set_aside(self, rows: Sequence[int], statement: str) -> int:
        changed = 0
        with self.database.transaction() as cursor:
            for chunk in _chunks(rows):
                marks = ", ".join("?" for _ in chunk)
                cursor.execute(
                    self.database.sql(
                        f"{statement} WHERE name = ? AND sent_at IS NULL "
                        f"AND set_aside_at IS NOT NULL AND id IN ({marks})"
                    ),
                    (self.name, *chunk),
                )
                changed += int(cursor.rowcount)
        return changed

    def purge_sent(self, older_than: float) -> int:
        """Delete rows sent more than ``older_than`` seconds ago; returns how many."""
        with self.database.transaction() as cursor:
            cursor.execute(
                self.database.sql(
                    f"DELETE FROM {self.table} WHERE name = ? AND sent_at IS NOT NULL "
                    "AND sent_at < ?"
                ),
                (self.name, self.clock() - older_than),
            )
            return int(cursor.rowcount)

    def close(self) -> None:
        self.database.close()


class OutboxRelay:
    """Publishes pending outbox rows, oldest first, each with its row's idempotency key.

    Counters: ``published`` (rows marked sent), ``duplicates`` (of those, retries
    the broker recognised: a relay restarted mid-batch), ``set_aside`` (rows
    refused for good) and ``failures`` (publishes that failed transiently; their
    rows stay pending). ``is_permanent`` decides which publish errors set a row
    aside (default: :func:`herald.processing.relay.is_permanent_refusal`).
    """

    def __init__(
        self,
        outbox: Outbox,
        publish: Publisher,
        *,
        batch: int = 100,
        interval: float = 0.05,
        is_permanent: Callable[[BaseException], bool] = is_permanent_refusal,
    ) -> None:
        self.outbox = outbox
        self.publish = publish
        self.batch = batch
        self.interval = interval
        self.is_permanent = is_permanent
        self.published = 0
        self.duplicates = 0  # retries the broker recognised (a relay restarted mid-batch)
        self.set_aside = 0
        self.failures = 0
        self._failing = False

    async def run_once(self) -> int:
        """Publish up to ``batch`` pending rows; returns how many were marked sent.

        Rows are published concurrently and each is settled by its own outcome:
        confirmed rows are marked sent, rows refused for good are set aside
        (counted and logged), the others stay pending. If any publish failed
        transiently, the first such error is raised once the rest is recorded:
        the next call publishes those rows again with the same keys.
        """
        decision = await self._round()
        if decision.errors:
            raise decision.errors[0]
        return len(decision.sent)

    async def _round(self) -> RoundDecision:
        messages = await asyncio.to_thread(self.outbox.pending, self.batch)
        if not messages:
            return RoundDecision()
        round_ = RelayRound(messages, is_permanent=self.is_permanent)
        rows: list[int] = []
        publishes: list[Awaitable[Any]] = []
        for message in round_.to_publish:
            try:
                publishes.append(
                    self.publish(
                        message.queue, message.body, headers=message.headers, key=message.key
                    )
                )
            except Exception as error:  # refused at once (herald.Client checks arguments)
                round_.failed(message.id, error)
            else:
                rows.append(message.id)
        outcomes = await asyncio.gather(*publishes, return_exceptions=True)
        for row, outcome in zip(rows, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                round_.failed(row, outcome)
            else:
                round_.confirmed(row, duplicate=bool(getattr(outcome, "duplicate", False)))
        decision = round_.decide()
        await asyncio.to_thread(self.outbox.record, decision)
        self.published += len(decision.sent)
        self.duplicates += decision.duplicates
        self.set_aside += len(decision.set_aside)
        self.failures += len(decision.errors)
        for entry in decision.set_aside:
            log.warning(
                "outbox %r: row %d (queue %r, key %r) set aside, it will not be retried: "
                "%s: %s; fix the cause, then Outbox.requeue([%d])",
                self.outbox.name,
                entry.row,
                entry.message.queue,
                entry.message.key,
                entry.error,
                entry.reason,
                entry.row,
            )
        return decision

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Relay until ``stop`` is set; retries after errors (Herald's, and OSError:
        timeouts, refused connections) with a short pause, logging the first of a run."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                decision = await self._round()
                if decision.errors:
                    raise decision.errors[0]
            except (HeraldError, OSError) as error:
                if not self._failing:
                    log.warning(
                        "outbox %r: publishing failed, retrying with the same keys: %s: %s",
                        self.outbox.name,
                        type(error).__name__,
                        error,
                    )
                self._failing = True
                await asyncio.sleep(self.interval * 4)
                continue
            if self._failing:
                log.info("outbox %r: publishing again", self.outbox.name)
                self._failing = False
            if not decision.progress:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.interval)


def _chunks(rows: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(rows), _CHUNK):
        yield rows[start : start + _CHUNK]


def _decode_headers(text: str) -> dict[str, str]:
    if not text:
        return {}
    return dict(line.split("=", 1) for line in text.split("\n"))
