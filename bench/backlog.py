"""A growing backlog: what retaining messages costs (issue 12).

Starts a local cluster of ``--nodes`` real ``herald serve`` processes (each with
its own temporary data directory, fsyncing: the default durability), creates
one queue without length or byte limits and, with no consumer, publishes
``--body-bytes`` messages with confirms, ``--inflight`` in flight, in rounds
until the retained backlog reaches each of ``--sizes``. After each round it
reports:

- publish msg/s and publish latency p50/p99/max (call to confirmed receipt);
- the same latencies over a window of ``--window`` publishes made right after
  the round, at that backlog. A round's own p99 grows with its length -- a
  round of 900,000 publishes meets every checkpoint and segment change of the
  cluster, one of 10,000 (the first) perhaps none -- so only windows of one
  length compare backlogs with each other;
- the leader's longest event-loop pause in the round (how late its 10 ms timer
  fired: the server's own measure, from ``herald status``);
- the longest stall a light client saw: a separate client, on its own
  connection and its own thread, asks the leader for the queue's stats (or the
  cluster status, ``--probe status``) every 10 ms; its slowest answer counts;
- RSS of every node process (``VmRSS`` in ``/proc/PID/status``) and memory per
  retained message: (RSS now - RSS just after the queue was created) / retained;
- bytes on disk per node: the sum of the file sizes in its data directory.

Then it stops the whole cluster cleanly (SIGTERM), starts it again on the same
data directories and measures the time from starting the processes to the
first publish confirmed, and checks that the queue still holds every message
published. ``--drain`` then consumes the whole backlog with acks and reports
the drain rate.

Only the public client API and the process launcher are used, never broker
internals, so the same script measures the in-memory broker of today and the
log-backed one of issue 12. Run from the repository root::

    .venv/bin/python bench/backlog.py --sizes 10k,100k,300k
    .venv/bin/python bench/backlog.py --sizes 200,500 --inflight 50 --json  # seconds

Exit status: 0 done, every check passed; 1 a check failed (or the cluster
refused a request); 2 bad usage; 4 the cluster did not start (at first, or
again after the restart within 120 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import os
import shlex
import shutil
import sys
import threading
import time
from array import array
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram
from rich.console import Console
from rich.table import Table

from herald.client import Client, UnreachableError
from herald.errors import (
    ConnectionClosedError,
    HeraldError,
    NotLeaderError,
    OutcomeUnknownError,
    OverloadedError,
    ProposalLostError,
    RequestTimeoutError,
    ShuttingDownError,
    UnavailableError,
)
from herald.runtime.launcher import LocalCluster

QUEUE = "backlog"
PROBE_INTERVAL = 0.010
RESTART_CAP = 120.0
EXIT_OK, EXIT_CHECK, EXIT_USAGE, EXIT_NO_CLUSTER = 0, 1, 2, 4
# What a cluster that is still starting answers: worth another try.
STARTING = (
    OSError,
    UnreachableError,
    ConnectionClosedError,
    RequestTimeoutError,
    NotLeaderError,
    OverloadedError,
    ShuttingDownError,
    UnavailableError,
    ProposalLostError,
    OutcomeUnknownError,
)


class ClusterDownError(Exception):
    pass


def parse_count(text: str) -> int:
    """``10000``, ``10k``, ``1M``, ``1.5m``: a positive count."""
    text = text.strip().lower().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    try:
        value = round(float(number) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a count: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"a count must be positive, not {text!r}")
    return value


def parse_sizes(text: str) -> list[int]:
    sizes = [parse_count(part) for part in text.split(",") if part.strip()]
    if not sizes or any(b <= a for a, b in itertools.pairwise(sizes)):
        raise argparse.ArgumentTypeError(f"sizes must be increasing, not {text!r}")
    return sizes


# -- looking at the node processes from outside ------------------------------------------


def proc_memory(pid: int | None) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in bytes; (0, 0) if it is gone."""
    values = {"VmRSS": 0, "VmHWM": 0}
    if pid is None:
        return 0, 0
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in values:
                values[key] = int(rest.split()[0]) * 1024  # the kernel writes kB
    return values["VmRSS"], values["VmHWM"]


def disk_bytes(path: Path) -> int:
    """The sum of the sizes of the files under ``path`` (files may vanish meanwhile)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def nodes_rss(cluster: LocalCluster) -> dict[str, int]:
    return {str(node.id): proc_memory(node.pid)[0] for node in cluster.nodes.values()}


def nodes_peak(cluster: LocalCluster) -> dict[str, int]:
    return {str(node.id): proc_memory(node.pid)[1] for node in cluster.nodes.values()}


def nodes_disk(cluster: LocalCluster) -> dict[str, int]:
    return {str(node.id): disk_bytes(node.data_dir) for node in cluster.nodes.values()}


def latency_summary(latencies_us: array[int]) -> dict[str, float]:
    # Collected in an array during the round, put in the histogram afterwards:
    # off the measured path (as herald bench does).
    histogram = HdrHistogram(1, 120_000_000, 3)
    for value in latencies_us:
        histogram.record_value(min(120_000_000, max(1, value)))

    def ms(value: float) -> float:
        return round(value / 1000, 3)

    return {
        "p50_ms": ms(histogram.get_value_at_percentile(50)),
        "p99_ms": ms(histogram.get_value_at_percentile(99)),
        "max_ms": ms(histogram.get_max_value()),
    }


# -- the stall probe ----------------------------------------------------------------------


class StallProbe(threading.Thread):
    """Asks the leader for one cheap answer every 10 ms, on its own connection.

    It runs on its own thread and event loop so that the publisher's callbacks
    (a thousand receipts at a time) do not count as a stall of the server; what
    remains on the client side is waiting for the GIL (up to the 5 ms switch
    interval). Samples are (start, seconds) on the perf_counter clock; a round
    takes every request that overlaps it, including one still unanswered.
    """

    def __init__(self, seeds: str, kind: str) -> None:
        super().__init__(name="stall-probe", daemon=True)
        self.seeds, self.kind = seeds, kind
        self.samples: list[tuple[float, float]] = []
        self.errors: list[float] = []  # start times of requests that failed
        self.pending: float | None = None  # start of the request awaiting its answer
        self.stopping = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        async with Client(self.seeds, name="backlog-probe", timeout=30.0) as client:
            self.ready.set()
            while not self.stopping.is_set():
                started = self.pending = time.perf_counter()
                try:
                    if self.kind == "stats":
                        await client.stats(QUEUE)
                    else:
                        await client.status()
                except HeraldError:
                    self.errors.append(started)
                took = time.perf_counter() - started
                self.samples.append((started, took))
                self.pending = None
                await asyncio.sleep(max(0.0, PROBE_INTERVAL - took))

    def window(self, start: float, end: float) -> tuple[float, int, int]:
        """(longest wait in ms, answers, errors) of the requests that overlap [start, end)."""
        took = [t for s, t in list(self.samples) if s < end and s + t >= start]
        errors = sum(1 for s in list(self.errors) if start <= s < end)
        pending = self.pending
        waiting = time.perf_counter() - pending if pending is not None else 0.0
        return round(max([*took, waiting]) * 1000, 3), len(took), errors

    def stop(self) -> None:
        self.stopping.set()
        self.join(35)


# -- phases ---------------------------------------------------------------------------------


async def publish_round(
    client: Client, count: int, body: bytes, inflight: int, errors: list[str]
) -> dict[str, Any]:
    """Publish ``count`` messages, ``inflight`` at a time; rate, latency, outcomes."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    latencies: array[int] = array("q")
    clock = time.perf_counter_ns
    state = {"sent": 0, "done": 0, "stored": 0, "duplicates": 0, "errors": 0, "not_durable": 0}

    def issue() -> None:
        state["sent"] += 1
        started = clock()
        client.publish(QUEUE, body).add_done_callback(lambda f: done(f, started))

    def done(future: asyncio.Future[Any], started: int) -> None:
        latencies.append((clock() - started) // 1000)
        error = future.exception()
        if error is not None:
            state["errors"] += 1
            if len(errors) < 5:
                errors.append(f"{type(error).__name__}: {error}")
        elif future.result().duplicate:
            state["duplicates"] += 1
        else:
            state["stored"] += 1
            if future.result().durability.value != "durable":
                state["not_durable"] += 1
        state["done"] += 1
        if state["sent"] < count:
            issue()  # keep the window full: one out, one in
        elif state["done"] == count and not finished.done():
            finished.set_result(None)

    started = time.perf_counter()
    for _ in range(min(inflight, count)):
        issue()
    await finished
    seconds = time.perf_counter() - started
    return {
        "published": count,
        "seconds": round(seconds, 3),
        "msgs_per_s": round(count / seconds, 1),
        **latency_summary(latencies),
        "stored": state["stored"],
        "duplicates": state["duplicates"],
        "errors": state["errors"],
        "not_durable": state["not_durable"],
    }


async def grow(cluster: LocalCluster, args: argparse.Namespace) -> dict[str, Any]:
    """Create the queue, then publish in rounds up to each size."""
    seeds = ",".join(cluster.addresses.values())
    by_address = {address: str(node) for node, address in cluster.addresses.items()}
    client = Client(seeds, name="backlog-publisher", timeout=60.0, max_in_flight=args.inflight)
    await client.start()
    try:
        # No length or byte limit (None: unlimited; the defaults are unlimited
        # too, said here so a change of defaults does not cap the backlog), and
        # large enough bodies accepted.
        await client.create_queue(
            QUEUE,
            max_length=None,
            max_bytes=None,
            max_message_bytes=max(1 << 20, args.body_bytes),
        )
        baseline = nodes_rss(cluster)
        probe = StallProbe(seeds, args.probe)
        probe.start()
        if not probe.ready.wait(30):
            raise ClusterDownError("the stall probe could not connect")
        body = os.urandom(args.body_bytes)
        rounds: list[dict[str, Any]] = []
        errors: list[str] = []
        retained = 0
        try:
            for target in args.sizes:
                started = time.perf_counter()
                row = await publish_round(client, target - retained, body, args.inflight, errors)
                ended = time.perf_counter()
                # The broker's count, not ours: what is really retained.
                retained = (await client.stats(QUEUE)).length
                status = await client.status()
                # The leader's longest event-loop pause in each second of the round.
                seconds = max(1, min(60, round(ended - started) + 1))
                loop_pause = max(status.loop_lag_ms[:seconds], default=0.0)
                rss = nodes_rss(cluster)
                stall, answers, probe_errors = probe.window(started, ended)
                window = None
                if args.window:
                    window = await publish_round(client, args.window, body, args.inflight, errors)
                row = {
                    "target": target,
                    "retained": retained,
                    **row,
                    "window": window,
                    "max_stall_ms": stall,
                    "leader_loop_pause_ms": loop_pause,
                    "probe_answers": answers,
                    "probe_errors": probe_errors,
                    "leader": by_address.get(client.leader or "", "?"),
                    "rss_bytes": rss,
                    "peak_rss_bytes": nodes_peak(cluster),
                    "bytes_per_message": {
                        node: round((rss[node] - baseline[node]) / max(1, retained), 1)
                        for node in rss
                    },
                    "disk_bytes": nodes_disk(cluster),
                }
                rounds.append(row)
                if window is not None:
                    retained = (await client.stats(QUEUE)).length
                if not args.json:
                    print(
                        f"  {retained:>10,} retained: {row['msgs_per_s']:,.0f} msg/s, "
                        f"p99 {row['p99_ms']:.1f} ms, max stall {stall:.1f} ms",
                        file=sys.stderr,
                    )
        finally:
            probe.stop()
        return {
            "baseline_rss_bytes": baseline,
            "rounds": rounds,
            "retained": retained,
            "publish_errors": errors,
        }
    finally:
        await client.close()


async def first_confirm(cluster: LocalCluster, started: float, body: bytes) -> dict[str, Any]:
    """Publish one message until it is confirmed: seconds since ``started``.

    A fresh client per attempt, with a short connect timeout, so the client's
    own reconnect backoff (growing to 2 s, jittered) does not inflate the
    figure. The message has a key, so an attempt that timed out but landed is
    not stored twice by the next.
    """
    seeds = ",".join(cluster.addresses.values())
    attempts = 0
    last = "no attempt"
    while True:
        elapsed = time.perf_counter() - started
        if elapsed >= RESTART_CAP:
            raise ClusterDownError(f"no publish confirmed within {RESTART_CAP:g} s: {last}")
        for node in cluster.nodes.values():
            if not node.running:
                raise ClusterDownError(
                    f"node {node.id} exited with status {node.returncode}:\n"
                    + cluster.log_tail(node.id)
                )
        attempts += 1
        budget = max(0.5, min(10.0, RESTART_CAP - elapsed))
        try:
            async with Client(
                seeds, name="backlog-restart", connect_timeout=0.5, timeout=budget
            ) as client:
                receipt = await client.publish(QUEUE, body, key="backlog-restart-probe")
                seconds = time.perf_counter() - started
                return {
                    "first_confirm_s": round(seconds, 3),
                    "attempts": attempts,
                    "duplicate": receipt.duplicate,
                    "durability": receipt.durability.value,
                    "retained_after": (await client.stats(QUEUE)).length,
                }
        except STARTING as error:
            last = f"{type(error).__name__}: {error}"
            await asyncio.sleep(0.02)


async def drain(cluster: LocalCluster, count: int, prefetch: int) -> dict[str, Any]:
    """Consume ``count`` messages with acks (as herald bench's consume phase does)."""
    seeds = ",".join(cluster.addresses.values())
    loop = asyncio.get_running_loop()
    latencies: array[int] = array("q")
    clock = time.perf_counter_ns
    seen: set[int] = set()
    state = {"acked": 0, "errors": 0, "redeliveries": 0}
    all_acked: asyncio.Future[None] = loop.create_future()

    def acked(future: asyncio.Future[None], started: int) -> None:
        latencies.append((clock() - started) // 1000)
        if future.exception() is not None:
            state["errors"] += 1
        state["acked"] += 1
        if state["acked"] >= count and not all_acked.done():
            all_acked.set_result(None)

    async with Client(seeds, name="backlog-drain", timeout=60.0) as client:
        started = time.perf_counter()
        async with client.consume(QUEUE, "drain", prefetch=prefetch, wait=1.0) as consumer:
            async for delivery in consumer:
                if delivery.redelivery:
                    state["redeliveries"] += 1
                if delivery.sequence in seen:  # acked once already: settle this copy too
                    delivery.ack().add_done_callback(lambda f: f.exception())
                    continue
                seen.add(delivery.sequence)
                issued = clock()
                delivery.ack().add_done_callback(functools.partial(acked, started=issued))
                if len(seen) >= count:
                    break
            await all_acked
        seconds = time.perf_counter() - started
        left = (await client.stats(QUEUE)).length
    return {
        "messages": count,
        "seconds": round(seconds, 3),
        "msgs_per_s": round(count / seconds, 1),
        **{f"ack_{key}": value for key, value in latency_summary(latencies).items()},
        "errors": state["errors"],
        "redeliveries": state["redeliveries"],
        "retained_after": left,
        "rss_bytes": nodes_rss(cluster),
    }


def run(args: argparse.Namespace, cluster: LocalCluster) -> dict[str, Any]:
    """Every phase, on one event loop (uvloop's, as herald bench uses)."""
    checks: list[str] = []  # what failed
    factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        grown = runner.run(grow(cluster, args))
        retained = grown["retained"]
        stored = sum(
            row["stored"] + (row["window"]["stored"] if row["window"] else 0)
            for row in grown["rounds"]
        )
        if grown["publish_errors"]:
            checks.append(f"publishes failed, e.g. {grown['publish_errors'][0]}")
        if retained != stored:
            checks.append(f"the queue retains {retained} messages, {stored} were confirmed")
        if any(
            row["not_durable"] or (row["window"] and row["window"]["not_durable"])
            for row in grown["rounds"]
        ):
            checks.append("some receipts were not durable")

        stop_started = time.perf_counter()
        statuses = cluster.stop(timeout=120)
        stop_s = time.perf_counter() - stop_started
        if any(status != 0 for status in statuses.values()):
            checks.append(f"a node did not stop cleanly: exit statuses {statuses}")
        started = time.perf_counter()
        for node_id in cluster.nodes:
            cluster.start_node(node_id)
        restart = runner.run(first_confirm(cluster, started, os.urandom(args.body_bytes)))
        restart["stop_s"] = round(stop_s, 3)
        restart["stop_statuses"] = {str(node): status for node, status in statuses.items()}
        restart["retained_before"] = retained
        # Every message published, plus the one the restart published.
        restart["count_ok"] = restart["retained_after"] == retained + 1
        if not restart["count_ok"]:
            checks.append(
                f"after the restart the queue holds {restart['retained_after']} messages, "
                f"expected {retained} + 1"
            )
        try:  # followers may still be loading: wait for them
            for node_id in cluster.nodes:
                cluster.wait_serving(node_id, RESTART_CAP)
        except HeraldError as error:
            raise ClusterDownError(str(error)) from None
        restart["rss_bytes"] = nodes_rss(cluster)
        restart["disk_bytes"] = nodes_disk(cluster)

        drained = None
        if args.drain:
            prefetch = max(1, min(args.inflight, 1000))
            drained = runner.run(drain(cluster, restart["retained_after"], prefetch))
            if drained["errors"] or drained["retained_after"]:
                checks.append(
                    f"drain: {drained['errors']} acks failed, "
                    f"{drained['retained_after']} messages left"
                )
    return {
        "nodes": args.nodes,
        "body_bytes": args.body_bytes,
        "inflight": args.inflight,
        "sizes": args.sizes,
        "probe": args.probe,
        "serve_args": args.serve_args,
        **grown,
        "restart": restart,
        "drain": drained,
        "failed": checks,
        "ok": not checks,
    }


def print_table(result: dict[str, Any]) -> None:
    # Wide enough for a row per round when piped to a file (rich assumes 80 columns).
    console = Console(width=None if sys.stdout.isatty() else 150)

    def per_node(values: dict[str, float], scale: float = 1.0, digits: int = 0) -> str:
        return " / ".join(f"{v / scale:,.{digits}f}" for v in values.values())

    table = Table(
        title=(
            f"backlog: {result['nodes']} nodes, {result['body_bytes']} B bodies, "
            f"{result['inflight']} in flight, probe: {result['probe']} every 10 ms"
        )
    )
    for column in (
        "retained",
        "msg/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "window p50 / p99 / max ms",
        "max stall ms",
        "loop pause ms",
        "leader",
        "RSS MB per node",
        "B/msg per node",
        "disk MB per node",
    ):
        table.add_column(column, justify="right")
    for row in result["rounds"]:
        table.add_row(
            f"{row['retained']:,}",
            f"{row['msgs_per_s']:,.0f}",
            f"{row['p50_ms']:.1f}",
            f"{row['p99_ms']:.1f}",
            f"{row['max_ms']:.1f}",
            (
                f"{window['p50_ms']:.1f} / {window['p99_ms']:.1f} / {window['max_ms']:.1f}"
                if (window := row["window"]) is not None
                else "-"
            ),
            f"{row['max_stall_ms']:.1f}",
            f"{row['leader_loop_pause_ms']:.1f}",
            row["leader"],
            per_node(row["rss_bytes"], 1e6),
            per_node(row["bytes_per_message"]),
            per_node(row["disk_bytes"], 1e6, 1),
        )
    console.print(table)
    restart = result["restart"]
    console.print(
        f"restart: stop {restart['stop_s']:.2f} s, start to first confirm "
        f"{restart['first_confirm_s']:.2f} s ({restart['attempts']} attempt(s)); "
        f"{restart['retained_after']:,} retained after, {restart['retained_before']:,} + 1 "
        f"expected; RSS MB after {per_node(restart['rss_bytes'], 1e6)}",
        highlight=False,
    )
    drained = result["drain"]
    if drained is not None:
        last = result["rounds"][-1]["msgs_per_s"]
        console.print(
            f"drain: {drained['msgs_per_s']:,.0f} msg/s (publish {last:,.0f} msg/s in the "
            f"last round), ack p99 {drained['ack_p99_ms']:.1f} ms; RSS MB after "
            f"{per_node(drained['rss_bytes'], 1e6)}",
            highlight=False,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--nodes", type=int, default=3, help="node processes in the local cluster (default 3)"
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes("10000,100000,1000000"),
        help="retained backlog after each round, increasing, comma-separated; "
        "k and M suffixes allowed (default 10k,100k,1M)",
    )
    parser.add_argument(
        "--body-bytes", type=int, default=256, help="message body size (default 256)"
    )
    parser.add_argument(
        "--window",
        type=int,
        default=10_000,
        help="publishes measured on their own after each round, at that backlog "
        "(default 10000; 0: none). They are retained too: the next round is that "
        "much shorter",
    )
    parser.add_argument(
        "--inflight",
        type=int,
        default=1000,
        help="publishes in flight, 1..1000, the client's limit (default 1000); "
        "also the drain's prefetch",
    )
    parser.add_argument(
        "--probe",
        choices=("stats", "status"),
        default="stats",
        help="the stall probe's request: queue stats (a linearizable read through "
        "the leader, default) or cluster status (answered by the node at once)",
    )
    parser.add_argument(
        "--drain",
        action="store_true",
        help="after the restart, consume the whole backlog with acks; report msg/s",
    )
    parser.add_argument(
        "--serve-args",
        default="",
        help="extra herald serve flags for every node, as one string with '=' "
        "(e.g. --serve-args='--snapshot-entries 100000'; default none)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="put the nodes' data directories here and keep them "
        "(default: a fresh temporary directory, removed at the end)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object, no table")
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.body_bytes < 0 or not 1 <= args.inflight <= 1000:
        parser.error("--nodes must be >= 1, --body-bytes >= 0, --inflight in 1..1000")
    if args.window < 0 or any(b <= a + args.window for a, b in itertools.pairwise(args.sizes)):
        parser.error("each size must exceed the one before by more than --window (>= 0)")

    # The launcher would delete a temporary directory on the first stop; the
    # restart needs it, so it is kept then and removed here at the end.
    cluster = LocalCluster(
        args.nodes,
        data_dir=args.data_dir,
        cluster="herald-backlog",
        args=shlex.split(args.serve_args),
        keep_data=True,
    )
    try:
        try:
            cluster.start()
            cluster.leader(timeout=30)
        except HeraldError as error:
            print(f"FAILED: the cluster did not start: {error}", file=sys.stderr)
            return EXIT_NO_CLUSTER
        try:
            result = run(args, cluster)
        except (ClusterDownError, HeraldError) as error:
            if isinstance(error, ClusterDownError):
                print(f"FAILED: the cluster did not start: {error}", file=sys.stderr)
                return EXIT_NO_CLUSTER
            print(f"FAILED: {type(error).__name__}: {error}", file=sys.stderr)
            return EXIT_CHECK
    finally:
        cluster.stop(timeout=120)
        if args.data_dir is None:
            shutil.rmtree(cluster.data_dir, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    for failure in result["failed"]:
        print(f"FAILED: {failure}", file=sys.stderr)
    return EXIT_OK if result["ok"] else EXIT_CHECK


if __name__ == "__main__":
    sys.exit(main())
