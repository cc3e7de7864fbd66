"""The demo's consumer: a real process the nemesis kills, applying effects to SQLite.

Run by ``herald demo`` as ``python -m herald.demo.consumer ...``. Every message
carries an order number; processing it adds 1 to an account balance and writes
an ``effects`` row (order, time) -- in at-most-once and at-least-once mode a
plain, non-idempotent effect, in effectively-once mode inside the Inbox's
transaction. The harness counts effects per order afterwards: that is where
loss and duplication are measured.

``--crash-after-delivery N`` / ``--crash-after-effect N`` make the process
SIGKILL itself right after its N-th delivery (before the effect) or right
after its N-th effect (before the ack): the two moments that distinguish the
delivery semantics. The harness arms them; a kill is a kill, whoever sends it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import sqlite3
import time
from typing import Literal

from herald import Client
from herald.processing import Inbox, InboxTransaction, connect_sqlite

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS effects (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " mode TEXT NOT NULL, message TEXT NOT NULL, at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS accounts (mode TEXT PRIMARY KEY, balance INTEGER NOT NULL)",
)


def prepare(path: str) -> None:
    """Create the consumer's tables (the harness calls it before the first start)."""
    connection = sqlite3.connect(path)
    with connection:
        for statement in SCHEMA:
            connection.execute(statement)
    connection.close()


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def consume(args: argparse.Namespace) -> None:
    database = connect_sqlite(args.db)
    inbox = Inbox(database, name=f"demo-{args.mode}") if args.mode == "effectively_once" else None
    deliveries = 0
    effects = 0
    broker_mode: Literal["at_most_once", "at_least_once"] = (
        "at_most_once" if args.mode == "at_most_once" else "at_least_once"
    )

    def effect(tx: InboxTransaction | None, *, message: str) -> None:
        statements = (
            (
                "INSERT INTO accounts (mode, balance) VALUES (?, 1) "
                "ON CONFLICT(mode) DO UPDATE SET balance = balance + 1",
                (args.mode,),
            ),
            (
                "INSERT INTO effects (mode, message, at) VALUES (?, ?, ?)",
                (args.mode, message, time.time()),
            ),
        )
        if tx is not None:
            for sql, params in statements:
                tx.execute(sql, params)
            return
        with database.transaction() as cursor:
            for sql, params in statements:
                cursor.execute(sql, params)

    async with (
        Client(args.url, name=f"demo-consumer-{args.mode}") as client,
        client.consume(
            args.queue,
            args.group,
            mode=broker_mode,
            prefetch=args.prefetch,
            lease=args.lease,
            wait=1.0,
        ) as stream,
    ):
        async for delivery in stream:
            deliveries += 1
            if deliveries == args.crash_after_delivery:
                _die()
            message = delivery.body.decode()
            await asyncio.sleep(args.work)
            if inbox is not None:
                await inbox.aprocess(delivery, functools.partial(effect, message=message))
            else:
                await asyncio.to_thread(effect, None, message=message)
            effects += 1
            if effects == args.crash_after_effect:
                _die()
            await delivery.ack()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument(
        "--mode", choices=("at_most_once", "at_least_once", "effectively_once"), required=True
    )
    parser.add_argument("--db", required=True)
    parser.add_argument("--prefetch", type=int, default=10)
    parser.add_argument("--lease", type=float, default=1.5)
    parser.add_argument("--work", type=float, default=0.005, help="seconds per message")
    parser.add_argument("--crash-after-delivery", type=int, default=0)
    parser.add_argument("--crash-after-effect", type=int, default=0)
    asyncio.run(consume(parser.parse_args()))


if __name__ == "__main__":
    main()
