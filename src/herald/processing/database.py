"""The user's own database, as the Inbox and the Outbox need it: SQLite or PostgreSQL.

Both tools keep their records in *your* database so that they commit in the
same transaction as your data: that is the whole trick of effectively-once
processing. This module hides the two dialects' differences (placeholders,
"insert unless present", the bytes type) behind a small :class:`Database`;
you hand it a DB-API connection you already have, or a path / DSN to open one.

SQLite runs in WAL mode (readers do not block the writer); a connection is
used by one thread at a time (the tools serialise access with a lock).
PostgreSQL goes through psycopg 3 (``pip install 'herald[postgres]'``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from herald.errors import UsageError

__all__ = ["Database", "Transaction", "connect_postgres", "connect_sqlite"]


class Transaction(Protocol):
    """What a handler gets: ``execute(sql, params)`` in the database's own dialect."""

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...


class Database:
    """One connection and its dialect. Thread-safe: one transaction at a time."""

    def __init__(self, connection: Any, dialect: str) -> None:
        if dialect not in ("sqlite", "postgres"):
            raise UsageError(f"unknown dialect {dialect!r}: use 'sqlite' or 'postgres'")
        self.connection = connection
        self.dialect = dialect
        self._lock = threading.RLock()

    # -- the differences between the dialects ------------------------------------------

    @property
    def placeholder(self) -> str:
        return "?" if self.dialect == "sqlite" else "%s"

    @property
    def blob(self) -> str:
        return "BLOB" if self.dialect == "sqlite" else "BYTEA"

    @property
    def serial(self) -> str:
        return (
            "INTEGER PRIMARY KEY AUTOINCREMENT"
            if self.dialect == "sqlite"
            else ("BIGSERIAL PRIMARY KEY")
        )

    def sql(self, text: str) -> str:
        """``text`` with ``?`` placeholders, in this dialect."""
        return text if self.dialect == "sqlite" else text.replace("?", "%s")

    # -- transactions -----------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor inside one transaction: committed on exit, rolled back on error."""
        with self._lock:
            connection = self.connection
            if self.dialect == "sqlite":
                cursor = connection.cursor()
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield cursor
                except BaseException:
                    connection.rollback()
                    raise
                else:
                    connection.commit()
                finally:
                    cursor.close()
            else:
                with connection.transaction(), connection.cursor() as cursor:
                    yield cursor

    def execute_script(self, statements: Sequence[str]) -> None:
        with self.transaction() as cursor:
            for statement in statements:
                cursor.execute(statement)

    def close(self) -> None:
        self.connection.close()


def connect_sqlite(path: str) -> Database:
    """Open (or create) a SQLite database in WAL mode, in autocommit so the tools
    control transactions themselves."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    # FULL: a transaction is on disk when COMMIT returns, which an inbox relies on.
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA busy_timeout=5000")
    return Database(connection, "sqlite")


def connect_postgres(dsn: str) -> Database:
    """Open a PostgreSQL connection with psycopg 3 (autocommit; the tools open
    explicit transactions). Raises UsageError if psycopg is not installed."""
    try:
        import psycopg
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise UsageError("PostgreSQL needs psycopg: pip install 'herald[postgres]'") from error
    return Database(psycopg.connect(dsn, autocommit=True), "postgres")
