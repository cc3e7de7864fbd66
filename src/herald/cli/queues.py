"""``herald queues``: list, create, delete, purge and inspect queues."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from herald.client import ClusterStatus, QueueStats
from herald.client.client import UNSET
from herald.wire.placement import group_of

from ._client import TIMEOUT_OPTION, URL_OPTION, connect, print_json, run

HELP = """List, create, delete, purge and inspect queues.

Exit status: 0 done; 1 the broker refused (unknown queue, a queue of that
name with other options, ...); 2 bad usage; 4 the cluster could not be
reached or did not answer in time.
"""

# Options that are durations (microseconds in the stats, seconds on the command line).
_DURATIONS = ("dedup_ttl", "lease_duration", "producer_ttl")

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False)


def _seconds(value: float | None, unlimited: bool) -> Any:
    """An option's value for create_queue: unset, a number of seconds, or None (forever)."""
    if value is None:
        return UNSET
    if unlimited and value == 0:
        return None
    return value


def _count(value: int | None, unlimited: bool) -> Any:
    if value is None:
        return UNSET
    if unlimited and value == 0:
        return None
    return value


@app.command("ls")
def ls(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per queue."),
    url: str = URL_OPTION,
    timeout: float = TIMEOUT_OPTION,
) -> None:
    """List the queues with their length, bytes, groups and dead letters."""

    async def main() -> tuple[list[QueueStats], ClusterStatus]:
        async with connect(url, timeout) as client:
            names = await client.queues()
            stats = list(await asyncio.gather(*(client.stats(name) for name in names)))
            return stats, await client.status()

    stats, status = run(main)
    count = max(1, len(status.groups))
    leaders = {g.group: g.leader_address for g in status.groups}
    if as_json:
        for item in stats:
            data_group = group_of(item.queue, count)
            print_json(
                {
                    "queue": item.queue,
                    "length": item.length,
                    "bytes": item.bytes,
                    "groups": [group.name for group in item.groups],
                    "dead_letters": item.dead_letters,
                    "published": item.counters.published,
                    "data_group": data_group,
                    "leader_address": leaders.get(data_group, status.leader_address),
                }
            )
        return
    if not stats:
        sys.stdout.write("no queues\n")
        return
    table = Table(title="Queues")
    columns = ["queue", "length", "bytes", "groups", "dead letters", "published"]
    if count > 1:
        columns += ["data group", "leader"]
    for column in columns:
        left = column in ("queue", "groups", "leader")
        table.add_column(column, justify="left" if left else "right")
    for item in stats:
        row = [
            item.queue,
            str(item.length),
            str(item.bytes),
            ", ".join(group.name for group in item.groups) or "-",
            str(item.dead_letters),
            str(item.counters.published),
        ]
        if count > 1:
            data_group = group_of(item.queue, count)
            row += [str(data_group), leaders.get(data_group) or "?"]
        table.add_row(*row)
    Console().print(table)


@app.command("create")
def create(
    name: str = typer.Argument(..., help="The queue's name."),
    max_message_bytes: int | None = typer.Option(
        None, "--max-message-bytes", min=1, help="Largest message (body plus headers)."
    ),
    max_length: int | None = typer.Option(
        None, "--max-length", min=0, help="Most messages retained (0: unlimited)."
    ),
    max_bytes: int | None = typer.Option(
        None, "--max-bytes", min=0, help="Most bytes retained (0: unlimited)."
    ),
    max_deliveries: int | None = typer.Option(
        None, "--max-deliveries", min=1, help="Deliveries before a message is dead-lettered."
    ),
    lease: float | None = typer.Option(
        None, "--lease", min=0.000001, help="Default lease of a delivery, in seconds."
    ),
    dedup_ttl: float | None = typer.Option(
        None, "--dedup-ttl", min=0.0, help="Seconds an idempotency key is kept (0: forever)."
    ),
    producer_window: int | None = typer.Option(
        None, "--producer-window", min=1, help="Receipts kept per idempotent producer."
    ),
    producer_ttl: float | None = typer.Option(
        None, "--producer-ttl", min=0.0, help="Seconds an idle producer is kept (0: forever)."
    ),
    url: str = URL_OPTION,
    timeout: float = TIMEOUT_OPTION,
) -> None:
    """Create a queue (unset options take the broker's defaults)."""

    async def main() -> bool:
        async with connect(url, timeout) as client:
            return await client.create_queue(
                name,
                max_message_bytes=_count(max_message_bytes, False),
                max_length=_count(max_length, True),
                max_bytes=_count(max_bytes, True),
                max_deliveries=_count(max_deliveries, False),
                lease_duration=_seconds(lease, False),
                dedup_ttl=_seconds(dedup_ttl, True),
                producer_window=_count(producer_window, False),
                producer_ttl=_seconds(producer_ttl, True),
            )

    created = run(main)
    sys.stdout.write(
        f"created {name}\n" if created else f"{name} exists already with these options\n"
    )


@app.command("delete")
def delete(
    name: str = typer.Argument(..., help="The queue to delete, with all it holds."),
    url: str = URL_OPTION,
    timeout: float = TIMEOUT_OPTION,
) -> None:
    """Delete a queue with its messages, groups and dead letters."""

    async def main() -> None:
        async with connect(url, timeout) as client:
            await client.delete_queue(name)

    run(main)
    sys.stdout.write(f"deleted {name}\n")


@app.command("purge")
def purge(
    name: str = typer.Argument(..., help="The queue to empty."),
    dead_letters: bool = typer.Option(False, "--dead-letters", help="Drop its dead letters too."),
    url: str = URL_OPTION,
    timeout: float = TIMEOUT_OPTION,
) -> None:
    """Drop every message of a queue (the queue, its groups and keys stay)."""

    async def main() -> int:
        async with connect(url, timeout) as client:
            return await client.purge(name, dead_letters=dead_letters)

    purged = run(main)
    sys.stdout.write(f"purged {purged} messages from {name}\n")


@app.command("stats")
def stats(
    name: str = typer.Argument(..., help="The queue."),
    as_json: bool = typer.Option(False, "--json", help="Print the stats as one JSON object."),
    url: str = URL_OPTION,
    timeout: float = TIMEOUT_OPTION,
) -> None:
    """A queue's gauges, counters, options and consumer groups."""

    async def main() -> QueueStats:
        async with connect(url, timeout) as client:
            return await client.stats(name)

    result = run(main)
    if as_json:
        print_json(msgspec.to_builtins(result))
        return
    console = Console()
    gauges = Table(title=f"Queue {result.queue}", show_header=False)
    gauges.add_column("what")
    gauges.add_column("value", justify="right")
    for label, value in (
        ("length", result.length),
        ("bytes", result.bytes),
        ("dead letters", result.dead_letters),
        ("idempotency keys", result.idempotency_keys),
        ("producers", result.producers),
        ("next sequence", result.next_sequence),
    ):
        gauges.add_row(label, str(value))
    for label, value in msgspec.to_builtins(result.options).items():
        if value is None:
            shown = "unlimited"
        elif label in _DURATIONS:
            shown = f"{value / 1_000_000:g} s"
        else:
            shown = str(value)
        gauges.add_row(f"option {label}", shown)
    console.print(gauges)
    counters = Table(title="Counters", show_header=False)
    counters.add_column("counter")
    counters.add_column("value", justify="right")
    for label, value in msgspec.to_builtins(result.counters).items():
        counters.add_row(label.replace("_", " "), str(value))
    console.print(counters)
    if result.groups:
        groups = Table(title="Consumer groups")
        for column in (
            "group",
            "backlog",
            "in flight",
            "ready",
            "delayed",
            "dead letters",
            "consumers",
        ):
            groups.add_column(
                column, justify="left" if column in ("group", "consumers") else "right"
            )
        for group in result.groups:
            groups.add_row(
                group.name,
                str(group.backlog),
                str(group.in_flight),
                str(group.ready),
                str(group.delayed),
                str(group.dead_letters),
                ", ".join(group.consumers) or "-",
            )
        console.print(groups)
