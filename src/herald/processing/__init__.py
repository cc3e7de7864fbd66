"""Effectively-once processing: the Inbox (consumer side) and the Outbox (producer side).

Both keep their records in your own database, in the same transaction as your
data; :mod:`herald.processing.database` adapts SQLite (standard library) and
PostgreSQL (psycopg 3).
"""

from .database import Database, connect_postgres, connect_sqlite
from .inbox import Inbox, InboxTransaction, Processed, message_key
from .outbox import Outbox, OutboxMessage, OutboxRelay, OutboxTransaction

__all__ = [
    "Database",
    "Inbox",
    "InboxTransaction",
    "Outbox",
    "OutboxMessage",
    "OutboxRelay",
    "OutboxTransaction",
    "Processed",
    "connect_postgres",
    "connect_sqlite",
    "message_key",
]
