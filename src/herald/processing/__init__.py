"""Effectively-once processing: the Inbox (consumer side) and the Outbox (producer side).

Both keep their records in your own database, in the same transaction as your
data; :mod:`herald.processing.database` adapts SQLite (standard library) and
PostgreSQL (psycopg 3). :mod:`herald.processing.relay` holds the relay's
decisions without IO, for the asyncio relay and the simulator alike.
"""

from .database import Database, connect_postgres, connect_sqlite
from .inbox import Inbox, InboxTransaction, Processed, message_key
from .outbox import Outbox, OutboxMessage, OutboxRelay, OutboxTransaction, SetAsideMessage
from .relay import RelayRound, RoundDecision, SetAside, is_permanent_refusal

__all__ = [
    "Database",
    "Inbox",
    "InboxTransaction",
    "Outbox",
    "OutboxMessage",
    "OutboxRelay",
    "OutboxTransaction",
    "Processed",
    "RelayRound",
    "RoundDecision",
    "SetAside",
    "SetAsideMessage",
    "connect_postgres",
    "connect_sqlite",
    "is_permanent_refusal",
    "message_key",
]
