"""``herald demo``: the three delivery semantics side by side, on a real cluster, under faults.

One local cluster of three ``herald serve`` processes (real sockets, real
fsync, a temporary directory). The same workload runs three times -- orders
whose processing adds to a balance in SQLite -- once per way of working:

1. **at-most-once**: fire-and-forget publishes; the consumer reads in
   ``at_most_once`` mode (the broker settles a message as it delivers it);
2. **at-least-once**: publishes confirmed and retried on failure; the consumer
   acks after its effect, which is not idempotent;
3. **effectively-once**: the producer writes orders and an Outbox row in one
   transaction and a relay publishes them with idempotency keys; the consumer's
   effect goes through the Inbox.

During each run a nemesis SIGKILLs and restarts the leader twice, and kills the
consumer process: at random moments, and at the two moments that tell the
semantics apart -- right after a delivery (before the effect) and right after
an effect (before the ack). Afterwards the consumer drains the queue and the
harness counts, from the consumer's own database, which orders had their
effect, how often. Nothing is assumed: if a run did not provoke loss or
duplication, the report says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from herald import Client
from herald.errors import HeraldError
from herald.processing import Outbox, OutboxRelay, connect_sqlite
from herald.runtime.launcher import LocalCluster

from .consumer import prepare

__all__ = ["MODES", "DemoResult", "ModeResult", "run_demo"]

MODES = ("at_most_once", "at_least_once", "effectively_once")
#: Seconds a mode's drain may run past its share of --duration.
DRAIN_GRACE = 5.0
LABELS = {
    "at_most_once": "at-most-once",
    "at_least_once": "at-least-once",
    "effectively_once": "effectively-once",
}
# Fast elections: a leader kill costs a few hundred milliseconds, not seconds.
NODE_ARGS = (
    "--tick-ms", "10", "--election-tick", "10", "--election-tick-max", "20",
    "--heartbeat-tick", "2", "--log-level", "warning",
)  # fmt: skip


@dataclass
class ModeResult:
    mode: str
    intended: int = 0
    effects: int = 0
    distinct: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    leader_kills: int = 0
    consumer_kills: int = 0
    leader_changes: int = 0
    started: float = 0.0
    duration: float = 0.0
    drained: bool = True
    effect_times: list[float] = field(default_factory=list)
    faults: list[tuple[float, float, str]] = field(default_factory=list)


@dataclass
class DemoResult:
    modes: dict[str, ModeResult]
    duration: float
    nodes: int
    report_dir: Path

    def summary(self) -> dict[str, object]:
        return {
            "modes": {
                mode: {
                    "intended": result.intended,
                    "effects": result.effects,
                    "lost": result.lost,
                    "duplicated": result.duplicated,
                    "unexpected": result.unexpected,
                    "leader_changes": result.leader_changes,
                    "drained": result.drained,
                    "duration_s": round(result.duration, 2),
                }
                for mode, result in self.modes.items()
            },
            "faults": {
                "leader_kills": sum(r.leader_kills for r in self.modes.values()),
                "consumer_kills": sum(r.consumer_kills for r in self.modes.values()),
            },
            "nodes": self.nodes,
            "duration_s": round(self.duration, 2),
            "report": str(self.report_dir),
        }


class _ConsumerProcess:
    """The consumer of one mode: started, killed and restarted by the nemesis."""

    def __init__(self, url: str, mode: str, queue: str, db: Path, log: Path) -> None:
        self.url = url
        self.mode = mode
        self.queue = queue
        self.db = db
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0
        self.down_since: float | None = None

    def start(self, crash_after_delivery: int = 0, crash_after_effect: int = 0) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "herald.demo.consumer",
                    "--url",
                    self.url,
                    "--queue",
                    self.queue,
                    "--group",
                    "processors",
                    "--mode",
                    self.mode,
                    "--db",
                    str(self.db),
                    "--crash-after-delivery",
                    str(crash_after_delivery),
                    "--crash-after-effect",
                    str(crash_after_effect),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive:
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.alive:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


async def run_demo(
    *,
    duration: float = 45.0,
    messages: int = 240,
    seed: int | None = None,
    report_dir: Path = Path("out/demo"),
    progress: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the three modes against one local cluster; ``duration`` bounds the whole demo."""
    rng = random.Random(seed)
    say = progress or (lambda text: None)
    report_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # Each mode gets its share of the bound for publishing and faults; its drain
    # may run DRAIN_GRACE beyond (leases of killed consumers must expire first).
    per_mode = max(6.0, (duration - 4.0) / len(MODES) - DRAIN_GRACE / 2)
    results: dict[str, ModeResult] = {}
    cluster = LocalCluster(3, cluster="herald-demo", args=NODE_ARGS)
    try:
        say("starting a cluster of 3 nodes (real processes, real fsync)")
        await asyncio.to_thread(cluster.start)
        url = ",".join(cluster.addresses.values())
        for mode in MODES:
            say(f"running {LABELS[mode]}")
            results[mode] = await _run_mode(
                cluster, url, mode, messages, per_mode, rng, report_dir, started
            )
    finally:
        await asyncio.to_thread(cluster.stop)
    result = DemoResult(results, time.monotonic() - started, 3, report_dir)
    return result


async def _run_mode(
    cluster: LocalCluster,
    url: str,
    mode: str,
    messages: int,
    seconds: float,
    rng: random.Random,
    report_dir: Path,
    demo_started: float,
) -> ModeResult:
    result = ModeResult(mode, intended=messages, started=time.monotonic() - demo_started)
    queue = f"orders-{mode.replace('_', '-')}"
    work_dir = report_dir / mode
    work_dir.mkdir(parents=True, exist_ok=True)
    consumer_db = work_dir / "consumer.db"
    producer_db = work_dir / "producer.db"
    for path in (consumer_db, producer_db):
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(str(path) + suffix).unlink()
    prepare(str(consumer_db))

    def now() -> float:
        return time.monotonic() - demo_started

    publish_seconds = seconds * 0.55
    fault_window_end = time.monotonic() + seconds * 0.6
    deadline = time.monotonic() + seconds + DRAIN_GRACE

    async with Client(url, name=f"demo-admin-{mode}", timeout=5.0) as admin:
        await admin.create_queue(queue, lease_duration=1.5, max_deliveries=50)
        consumer = _ConsumerProcess(url, mode, queue, consumer_db, work_dir / "consumer.log")
        crash_moments = ["effect", "delivery", "random"]
        consumer.start(crash_after_effect=rng.randint(15, 35))
        stop = asyncio.Event()

        async def watch_leader() -> None:
            last: tuple[int, int] | None = None
            while not stop.is_set():
                with contextlib.suppress(HeraldError, OSError):
                    status = await admin.status(timeout=1.0)
                    if status.leader and (status.term, status.leader) != last:
                        if last is not None:
                            result.leader_changes += 1
                        last = (status.term, status.leader)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)

        async def kill_leaders() -> None:
            mode_started = time.monotonic()
            for fraction in (0.15, 0.4):
                await asyncio.sleep(max(0.0, mode_started + seconds * fraction - time.monotonic()))
                try:
                    leader = await asyncio.to_thread(cluster.leader, 5.0)
                except HeraldError:
                    continue
                down = now()
                cluster.kill(leader)
                result.leader_kills += 1
                await asyncio.sleep(1.0)
                await asyncio.to_thread(cluster.restart, leader)
                result.faults.append((down, now(), "leader killed"))

        async def nurse_consumer() -> None:
            """Restart the consumer whenever it died; kill it at random meanwhile.

            Each restart inside the fault window arms the next crash moment in
            turn: right after an effect (before its ack), right after a delivery
            (before its effect), or none (a random external kill comes instead).
            """
            moment = 0
            next_random_kill = time.monotonic() + rng.uniform(1.0, 3.0)
            while time.monotonic() < deadline and not stop.is_set():
                faults_on = time.monotonic() < fault_window_end
                if not consumer.alive:
                    result.consumer_kills += 1
                    died = now()
                    await asyncio.sleep(0.3)
                    if faults_on:
                        moment += 1
                        kind = crash_moments[moment % len(crash_moments)]
                        consumer.start(
                            crash_after_delivery=rng.randint(5, 20) if kind == "delivery" else 0,
                            crash_after_effect=rng.randint(5, 20) if kind == "effect" else 0,
                        )
                    else:
                        consumer.start()
                    result.faults.append((died, now(), "consumer killed"))
                elif faults_on and time.monotonic() >= next_random_kill:
                    consumer.kill()
                    next_random_kill = time.monotonic() + rng.uniform(1.5, 3.0)
                    continue
                await asyncio.sleep(0.05)

        watchers = [
            asyncio.create_task(watch_leader()),
            asyncio.create_task(kill_leaders()),
            asyncio.create_task(nurse_consumer()),
        ]
        try:
            await _produce(mode, url, queue, messages, publish_seconds, producer_db)
            result.drained = await _drain(admin, queue, deadline)
        finally:
            stop.set()
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            consumer.stop()
    _measure(result, consumer_db, demo_started)
    result.duration = time.monotonic() - demo_started - result.started
    return result


async def _produce(
    mode: str, url: str, queue: str, messages: int, seconds: float, producer_db: Path
) -> None:
    interval = seconds / messages
    bodies = [f"order-{number}" for number in range(1, messages + 1)]
    if mode == "at_most_once":
        # Fire and forget: no confirmation awaited, nothing retried.
        async with Client(url, name="demo-producer-amo", idempotent=False) as client:
            futures = []
            for body in bodies:
                future = client.publish(queue, body, timeout=2.0)
                future.add_done_callback(lambda f: f.exception())
                futures.append(future)
                await asyncio.sleep(interval)
            await asyncio.gather(*futures, return_exceptions=True)
        return
    if mode == "at_least_once":
        # Confirmed and retried, without idempotence: a retry of a publish that
        # landed but whose answer was lost stores the order twice.
        async with Client(url, name="demo-producer-alo", idempotent=False) as client:

            async def publish(body: str) -> None:
                while True:
                    try:
                        await client.publish(queue, body, timeout=2.0)
                        return
                    except HeraldError:
                        await asyncio.sleep(0.1)

            tasks = []
            for body in bodies:
                tasks.append(asyncio.create_task(publish(body)))
                await asyncio.sleep(interval)
            await asyncio.gather(*tasks)
        return
    # Effectively once: the order and its message commit together (Outbox); the
    # relay publishes with the row's key, so its retries are recognised.
    outbox = Outbox(connect_sqlite(str(producer_db)), name="demo")
    outbox.database.execute_script(["CREATE TABLE IF NOT EXISTS orders (number TEXT PRIMARY KEY)"])
    async with Client(url, name="demo-producer-eo") as client:
        relay = OutboxRelay(outbox, client.publish, batch=50, interval=0.02)
        stop = asyncio.Event()
        relaying = asyncio.create_task(relay.run(stop))
        for body in bodies:
            with outbox.transaction() as tx:
                tx.execute("INSERT INTO orders (number) VALUES (?)", (body,))
                tx.publish(queue, body.encode())
            await asyncio.sleep(interval)
        while outbox.oldest_pending_age() is not None:
            await asyncio.sleep(0.05)
        stop.set()
        await relaying
    outbox.close()


async def _drain(admin: Client, queue: str, deadline: float) -> bool:
    """Wait until the group has nothing left to deliver and nothing in flight;
    False if the deadline came first (the counts then include messages still queued)."""
    quiet = 0
    while time.monotonic() < deadline:
        try:
            stats = await admin.stats(queue, timeout=2.0)
        except HeraldError:
            await asyncio.sleep(0.2)
            continue
        groups = [group for group in stats.groups if group.name == "processors"]
        empty = all(
            g.backlog == 0 and g.in_flight == 0 and g.ready == 0 and g.delayed == 0 for g in groups
        )
        quiet = quiet + 1 if empty and groups else 0
        if quiet >= 3:
            return True
        await asyncio.sleep(0.3)
    return False


def _measure(result: ModeResult, consumer_db: Path, demo_started: float) -> None:
    connection = sqlite3.connect(consumer_db)
    try:
        rows = connection.execute(
            "SELECT message, COUNT(*), MIN(at) FROM effects WHERE mode = ? GROUP BY message",
            (result.mode,),
        ).fetchall()
        times = connection.execute(
            "SELECT at FROM effects WHERE mode = ? ORDER BY at", (result.mode,)
        ).fetchall()
    finally:
        connection.close()
    intended = {f"order-{number}" for number in range(1, result.intended + 1)}
    counts = {message: count for message, count, _ in rows}
    result.effects = sum(counts.values())
    result.distinct = len(counts)
    result.lost = len(intended - counts.keys())
    result.duplicated = sum(count - 1 for message, count in counts.items() if count > 1)
    result.unexpected = len(counts.keys() - intended)
    wall_start = time.time() - (time.monotonic() - demo_started)
    result.effect_times = [at - wall_start for (at,) in times]
