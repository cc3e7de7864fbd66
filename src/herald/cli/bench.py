"""``herald bench``: publish then consume N messages and report throughput and latency."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import sys
import time
from array import array
from typing import Any

import typer
from hdrh.histogram import HdrHistogram
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from herald.client import Client, Durability, Receipt
from herald.errors import HeraldError

from ._client import EXIT_UNREACHABLE, TIMEOUT_OPTION, err_console, print_json, run

HELP = """Benchmark a Herald cluster: publish N messages with confirms, then consume them with acks.

Without --url, starts a local cluster of --nodes processes on free ports with
temporary data directories (stopped at the end); with --url, targets that
cluster. The publish phase keeps --inflight publishes in flight (each one
confirmed: committed and fsynced on a majority); the consume phase leases up to
--inflight messages ahead and acks each one. --inflight 1 measures the latency
of a single message.

Latency: publish, from the call to the receipt; consume, from the ack to its
confirmation. Percentiles come from an HDR histogram (3 significant digits).

With --groups 1,2,4, compares data groups instead: for each count, starts a
local cluster of --nodes nodes with that many groups (``herald serve
--groups``), publishes --messages messages spread evenly over one queue per
group, and prints publish throughput and latency beside the first count's, one
run after the other on this machine (ratios, not absolute figures, carry over).

With --json, prints one JSON line:
{"publish": {"msgs_per_s", "p50_ms", "p99_ms"}, "consume": {...}, "nodes", "durability", ...}.
Exit status: 0 done; 1 a broker error; 2 bad usage; 4 the cluster could not be
reached (or the local cluster did not start).
"""

_LOWEST_US = 1
_HIGHEST_US = 120_000_000


def _histogram(latencies: array[int]) -> HdrHistogram:
    """The latencies (microseconds) in an HDR histogram. They are collected in an
    array while the phase runs and recorded afterwards: off the measured path."""
    histogram = HdrHistogram(_LOWEST_US, _HIGHEST_US, 3)
    record = histogram.record_value
    for value in latencies:
        record(min(_HIGHEST_US, max(_LOWEST_US, value)))
    return histogram


def _summary(count: int, seconds: float, latencies: array[int]) -> dict[str, Any]:
    histogram = _histogram(latencies)

    def ms(percentile: float) -> float:
        return round(float(histogram.get_value_at_percentile(percentile)) / 1000, 3)

    return {
        "msgs_per_s": round(count / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": ms(50),
        "p99_ms": ms(99),
        "p999_ms": ms(99.9),
        "max_ms": round(histogram.get_max_value() / 1000, 3),
        "seconds": round(seconds, 3),
    }


class _Phase:
    """Counters a progress bar can read while a phase runs."""

    def __init__(self, name: str, total: int) -> None:
        self.name = name
        self.total = total
        self.done = 0


async def _show_progress(phases: list[_Phase], stop: asyncio.Event) -> None:
    with Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        tasks = [progress.add_task(phase.name, total=phase.total) for phase in phases]
        while not stop.is_set():
            for task, phase in zip(tasks, phases, strict=True):
                progress.update(task, completed=phase.done)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)


async def _publish_phase(
    client: Client, queues: list[str], messages: int, size: int, inflight: int, phase: _Phase
) -> tuple[dict[str, Any], dict[str, Any]]:
    loop = asyncio.get_running_loop()
    body = os.urandom(size)
    latencies: array[int] = array("q")
    record = latencies.append
    clock = time.perf_counter_ns
    finished: asyncio.Future[None] = loop.create_future()
    state = {"sent": 0, "errors": 0, "duplicates": 0}
    worst = [Durability.DURABLE]
    publish = client.publish

    def issue() -> None:
        # Round robin over the queues (one per data group when comparing groups).
        queue = queues[state["sent"] % len(queues)]
        state["sent"] += 1
        started = clock()
        future = publish(queue, body)
        future.add_done_callback(lambda f: done(f, started))

    def done(future: asyncio.Future[Receipt], started: int) -> None:
        record((clock() - started) // 1000)
        error = future.exception()
        if error is not None:
            state["errors"] += 1
            if not finished.done() and state["errors"] == 1:
                err_console.print(f"publish failed: {type(error).__name__}: {error}")
        else:
            receipt = future.result()
            if receipt.duplicate:
                state["duplicates"] += 1
            if receipt.durability.rank < worst[0].rank:
                worst[0] = receipt.durability
        phase.done += 1
        if state["sent"] < messages:
            issue()
        elif phase.done == messages and not finished.done():
            finished.set_result(None)

    started = time.perf_counter()
    for _ in range(min(inflight, messages)):
        issue()
    await finished
    seconds = time.perf_counter() - started
    extra = {
        "errors": state["errors"],
        "duplicates": state["duplicates"],
        "durability": worst[0].value,
    }
    return _summary(messages, seconds, latencies), extra


async def _consume_phase(
    client: Client, queue: str, messages: int, inflight: int, phase: _Phase
) -> tuple[dict[str, Any], dict[str, Any]]:
    loop = asyncio.get_running_loop()
    latencies: array[int] = array("q")
    record = latencies.append
    clock = time.perf_counter_ns
    seen: set[int] = set()
    state = {"acked": 0, "errors": 0, "redeliveries": 0}
    all_acked: asyncio.Future[None] = loop.create_future()

    def acked(future: asyncio.Future[None], started: int) -> None:
        record((clock() - started) // 1000)
        if future.exception() is not None:
            state["errors"] += 1
        state["acked"] += 1
        if state["acked"] >= messages and not all_acked.done():
            all_acked.set_result(None)

    prefetch = max(1, min(inflight, 1000))
    started = time.perf_counter()
    async with client.consume(queue, "bench", prefetch=prefetch, wait=1.0) as consumer:
        async for delivery in consumer:
            if delivery.redelivery:
                state["redeliveries"] += 1
            if delivery.sequence in seen:
                # Already acked once; settle this copy too and go on.
                delivery.ack().add_done_callback(_ignore)
                continue
            seen.add(delivery.sequence)
            delivery.ack().add_done_callback(functools.partial(acked, started=clock()))
            phase.done += 1
            if len(seen) >= messages:
                break
        await all_acked
    seconds = time.perf_counter() - started
    extra = {"errors": state["errors"], "redeliveries": state["redeliveries"]}
    return _summary(messages, seconds, latencies), extra


def _ignore(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def _client(url: str, inflight: int, timeout: float) -> Client:
    client = Client(
        url,
        timeout=timeout,
        connect_timeout=timeout,
        max_in_flight=max(1, min(inflight, 1000)),
        name="herald-bench",
    )
    await client.start()
    return client


async def _bench(
    url: str,
    nodes: int,
    messages: int,
    size: int,
    inflight: int,
    timeout: float,
    interactive: bool,
    keep_queue: bool,
) -> dict[str, Any]:
    queue = f"bench-{secrets.token_hex(4)}"
    client = await _client(url, inflight, timeout)
    try:
        with contextlib.suppress(HeraldError):
            nodes = len((await client.status()).peers) or nodes
        await client.create_queue(queue, max_deliveries=1000)
        publish_phase = _Phase("publish", messages)
        consume_phase = _Phase("consume", messages)
        stop = asyncio.Event()
        shower = (
            asyncio.create_task(_show_progress([publish_phase, consume_phase], stop))
            if interactive
            else None
        )
        cpu_started = time.process_time()
        try:
            publish, publish_extra = await _publish_phase(
                client, [queue], messages, size, inflight, publish_phase
            )
            consume, consume_extra = await _consume_phase(
                client, queue, messages, inflight, consume_phase
            )
        finally:
            stop.set()
            if shower is not None:
                await shower
        cpu = time.process_time() - cpu_started
        if not keep_queue:
            with contextlib.suppress(HeraldError):
                await client.delete_queue(queue)
        publish["errors"] = publish_extra["errors"]
        consume["errors"] = consume_extra["errors"]
        return {
            "publish": publish,
            "consume": consume,
            "nodes": nodes,
            "durability": publish_extra["durability"],
            "messages": messages,
            "size": size,
            "inflight": inflight,
            "duplicates": publish_extra["duplicates"],
            "redeliveries": consume_extra["redeliveries"],
            "client_cpu_s": round(cpu, 3),
            "client_cpu_share": round(cpu / max(1e-9, publish["seconds"] + consume["seconds"]), 3),
            "leader": client.leader,
            "queue": queue,
        }
    finally:
        await client.close()


def _group_counts(text: str) -> list[int]:
    from herald.node.config import MAX_GROUPS

    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"--groups takes counts like 1,2,4, not {text!r}") from None
    if not counts or any(not 1 <= count <= MAX_GROUPS for count in counts):
        raise typer.BadParameter(f"--groups takes counts from 1 to {MAX_GROUPS}, like 1,2,4")
    return counts


def _queues_by_group(groups: int) -> list[str]:
    """One queue name per data group (names are placed by hash: search for them)."""
    from herald.wire.placement import group_of

    token = secrets.token_hex(4)
    names: dict[int, str] = {}
    number = 0
    while len(names) < groups:
        name = f"bench-{token}-{number}"
        names.setdefault(group_of(name, groups), name)
        number += 1
    return [names[group] for group in range(groups)]


def _bench_groups(
    nodes: int, groups: int, messages: int, size: int, inflight: int, timeout: float
) -> dict[str, Any]:
    try:
        cluster, url = _local_cluster(nodes, groups)
    except HeraldError as error:
        err_console.print(f"[red]error:[/red] the local cluster did not start: {error}")
        raise typer.Exit(EXIT_UNREACHABLE) from None

    async def main() -> dict[str, Any]:
        client = await _client(url, inflight, timeout)
        try:
            queues = _queues_by_group(groups)
            for queue in queues:
                await client.create_queue(queue, max_deliveries=1000)
            phase = _Phase("publish", messages)
            cpu_started = time.process_time()
            publish, extra = await _publish_phase(client, queues, messages, size, inflight, phase)
            cpu = time.process_time() - cpu_started
            leaders = [group.leader for group in (await client.status()).groups]
            return {
                "groups": groups,
                "publish": {**publish, "errors": extra["errors"]},
                "durability": extra["durability"],
                "leaders": leaders,
                "client_cpu_share": round(cpu / max(1e-9, publish["seconds"]), 3),
            }
        finally:
            await client.close()

    try:
        result: dict[str, Any] = run(main, uvloop=True)
    finally:
        cluster.stop()
    return result


def _print_groups(
    rows: list[dict[str, Any]], nodes: int, messages: int, size: int, inflight: int
) -> None:
    console = Console()
    table = Table(
        title=(
            f"herald bench --groups: {messages} publishes of {size} bytes, {inflight} in "
            f"flight, {nodes} node(s), one queue per group"
        )
    )
    for column in ("groups", "msgs/s", "vs first", "p50 ms", "p99 ms", "leaders", "errors"):
        table.add_column(column, justify="right")
    first = rows[0]["publish"]["msgs_per_s"] or 1.0
    for row in rows:
        publish = row["publish"]
        table.add_row(
            str(row["groups"]),
            f"{publish['msgs_per_s']:,.0f}",
            f"{publish['msgs_per_s'] / first:.2f}x",
            f"{publish['p50_ms']:.3f}",
            f"{publish['p99_ms']:.3f}",
            ",".join(f"n{leader}" for leader in row["leaders"]),
            str(publish["errors"]),
        )
    console.print(table)


def _local_cluster(nodes: int, groups: int = 1) -> tuple[Any, str]:
    from herald.runtime.launcher import LocalCluster

    args = ["--groups", str(groups)] if groups > 1 else []
    cluster = LocalCluster(nodes, cluster="herald-bench", args=args)
    try:
        cluster.start()
        cluster.leader(timeout=30)
    except BaseException:
        cluster.stop()
        raise
    return cluster, ",".join(cluster.addresses.values())


def _print_table(result: dict[str, Any]) -> None:
    console = Console()
    table = Table(
        title=(
            f"herald bench: {result['messages']} messages of {result['size']} bytes, "
            f"{result['inflight']} in flight, {result['nodes']} node(s), "
            f"{result['durability']}"
        )
    )
    for column in ("phase", "msgs/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for phase in ("publish", "consume"):
        row = result[phase]
        table.add_row(
            phase,
            f"{row['msgs_per_s']:,.0f}",
            f"{row['p50_ms']:.3f}",
            f"{row['p99_ms']:.3f}",
            f"{row['p999_ms']:.3f}",
            f"{row['max_ms']:.3f}",
            str(row["errors"]),
        )
    console.print(table)
    console.print(
        f"client CPU: {result['client_cpu_s']:.2f} s "
        f"({result['client_cpu_share'] * 100:.0f}% of one core during the run)",
        highlight=False,
    )


def bench(
    nodes: int = typer.Option(
        3, "--nodes", "-n", min=1, max=9, help="Nodes of the local cluster (without --url)."
    ),
    messages: int = typer.Option(50_000, "--messages", "-m", min=1, help="Messages to send."),
    size: int = typer.Option(256, "--size", "-s", min=0, help="Body size in bytes."),
    inflight: int = typer.Option(
        1000, "--inflight", "-i", min=1, help="Publishes in flight, and messages leased ahead."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON line."),
    url: str | None = typer.Option(
        None,
        "--url",
        "-u",
        envvar="HERALD_URL",
        help="Target this cluster (host:port[,...]) instead of starting one.",
    ),
    keep_queue: bool = typer.Option(False, "--keep-queue", help="Do not delete the bench queue."),
    groups: str | None = typer.Option(
        None,
        "--groups",
        help="Compare publish throughput with these data group counts, e.g. 1,2,4 "
        "(local clusters only).",
    ),
    timeout: float = TIMEOUT_OPTION,
) -> None:
    if groups is not None:
        if url is not None:
            raise typer.BadParameter("--groups starts its own clusters: leave out --url")
        counts = _group_counts(groups)
        rows = [_bench_groups(nodes, count, messages, size, inflight, timeout) for count in counts]
        if as_json:
            print_json({"groups": rows, "nodes": nodes, "messages": messages, "size": size})
        else:
            _print_groups(rows, nodes, messages, size, inflight)
        return
    cluster: Any = None
    if url is None:
        try:
            cluster, url = _local_cluster(nodes)
        except HeraldError as error:
            err_console.print(f"[red]error:[/red] the local cluster did not start: {error}")
            raise typer.Exit(EXIT_UNREACHABLE) from None
    else:
        nodes = len(url.split(","))
    target = url
    interactive = sys.stderr.isatty()

    def main() -> Any:
        return _bench(target, nodes, messages, size, inflight, timeout, interactive, keep_queue)

    try:
        result: dict[str, Any] = run(main, uvloop=True)
    finally:
        if cluster is not None:
            cluster.stop()
    if as_json:
        print_json(result)
    else:
        _print_table(result)
