"""``herald torture``: real processes, real faults, the same checker as the simulator.

A local cluster of ``herald serve`` processes (3 or 5) behind fault-injecting
proxies, concurrent clients, and a nemesis. The clients are idempotent
producers and one consumer per delivery semantics (at-most-once; at-least-once
with a non-idempotent effect; effectively-once with an Inbox in SQLite); the
consumers themselves crash now and then, right after a delivery or between an
effect and its ack, and come back as new processes. Every
operation is recorded as a history in the documented format
(:mod:`herald.check.history`); when the time is up the nemesis heals
everything, the consumers drain every group, the dead letters are read, and
the queue checker judges the history exactly as it judges the simulator's.

Nemesis kinds (``--nemesis``):

- ``kill``: SIGKILL the leader, a random node, or a majority; restart later;
- ``pause``: SIGSTOP a node (often the leader) for a while, then SIGCONT;
- ``partition``: halves, the leader isolated, or a one-way cut, at the proxies;
- ``slow``: delay, jitter and connection resets on some links;
- ``disk``: nodes run on a file system that keeps unsynced writes in process
  memory (:mod:`herald.storage.volatile`); the disk nemesis SIGKILLs nodes, so
  they lose exactly what a power cut would.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from herald import Client
from herald.check.history import Json, Recorder, write_history
from herald.check.queue import AT_LEAST_ONCE, AT_MOST_ONCE, EFFECTIVELY_ONCE, check_queue
from herald.check.verdict import judge
from herald.client import Delivery
from herald.errors import HeraldError
from herald.processing import Inbox, connect_sqlite

from .cluster import ProxiedCluster

__all__ = ["NEMESES", "TortureResult", "run_torture"]

NEMESES = ("kill", "pause", "partition", "slow", "disk")
QUEUE = "torture"
GROUPS = {"amo": AT_MOST_ONCE, "alo": AT_LEAST_ONCE, "eo": EFFECTIVELY_ONCE}


def _broker_mode(mode: str) -> Literal["at_most_once", "at_least_once"]:
    return "at_most_once" if mode == AT_MOST_ONCE else "at_least_once"


@dataclass
class TortureResult:
    nodes: int
    seconds: float
    ops: int
    ok_fraction: float
    longest_unavailable: float
    lost: int
    unexpected: int
    duplicated_effects: int
    by_mode: dict[str, dict[str, int]]
    faults: dict[str, int]
    consumer_crashes: int
    failures: list[str]
    phenomena: list[str]
    latency_ms: dict[str, float]
    drained: bool
    report_dir: Path
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (time, latency ms)
    fault_spans: list[tuple[float, float, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and self.drained

    def summary(self) -> dict[str, object]:
        return {
            "lost": self.lost,
            "unexpected": self.unexpected,
            "duplicated_effects": self.duplicated_effects,
            "ops": self.ops,
            "ok_fraction": round(self.ok_fraction, 4),
            "faults": self.faults,
            "ok": self.ok,
            "consumer_crashes": self.consumer_crashes,
            "modes": self.by_mode,
            "longest_unavailable_s": round(self.longest_unavailable, 3),
            "latency_ms": self.latency_ms,
            "drained": self.drained,
            "failures": self.failures,
            "nodes": self.nodes,
            "seconds": round(self.seconds, 1),
            "report": str(self.report_dir),
        }


class _ConsumerCrash(Exception):  # noqa: N818 - a simulated process death, not an error
    """The consumer "process" dies mid-message; it comes back as a new one."""


#: Per message, the chance that its consumer dies right after the delivery
#: (before the effect) or right after the effect (before the ack): the moments
#: that tell the delivery semantics apart.
CONSUMER_CRASH = 0.003


class _Run:
    def __init__(
        self,
        cluster: ProxiedCluster,
        nemeses: tuple[str, ...],
        rng: random.Random,
        report_dir: Path,
        say: Callable[[str], None],
    ) -> None:
        self.cluster = cluster
        self.nemeses = nemeses
        self.rng = rng
        self.report_dir = report_dir
        self.say = say
        self.history = Recorder()
        self.started = time.monotonic()
        self.faults = dict.fromkeys(nemeses, 0)
        self.fault_spans: list[tuple[float, float, str]] = []
        self.down: set[int] = set()  # killed, not yet restarted
        self.paused: set[int] = set()
        self.stop_producing = asyncio.Event()
        self.publish_log: list[tuple[float, float, bool]] = []  # (invoked, latency s, ok)
        self.majority_down: list[tuple[float, float]] = []
        self.inbox = Inbox(connect_sqlite(str(report_dir / "inbox.db")), name="torture")
        #: Tests set it to False to plant a bug: an "effectively-once" consumer
        #: without its inbox, which the checker must catch.
        self.use_inbox = True
        self.consumer_crashes = 0

    def now(self) -> float:
        return time.monotonic() - self.started

    def majority_up(self) -> bool:
        unavailable = len(self.down | self.paused)
        return unavailable <= (len(self.cluster.ids) - 1) // 2

    # -- the workload ------------------------------------------------------------------------

    async def producer(self, number: int, client: Client, count_box: list[int]) -> None:
        name = f"p{number}"
        sequence = 0
        while not self.stop_producing.is_set():
            sequence += 1
            message_id = f"{name}-{sequence}"
            invoked = self.now()
            self.history.invoke(name, "publish", {"queue": QUEUE, "id": message_id}, _us(invoked))
            try:
                receipt = await client.publish(QUEUE, message_id.encode(), timeout=3.0)
            except HeraldError as error:
                outcome = "info" if _unknown(error) else "fail"
                self.history.record(name, outcome, "publish", {}, _us(self.now()))
                self.publish_log.append((invoked, self.now() - invoked, False))
                await asyncio.sleep(0.05)
                continue
            done = self.now()
            self.history.ok(
                name,
                "publish",
                {"seq": receipt.sequence, "duplicate": receipt.duplicate},
                _us(done),
            )
            self.publish_log.append((invoked, done - invoked, True))
            count_box[0] += 1
            await asyncio.sleep(self.rng.uniform(0.0, 0.01))

    async def consumer(self, group: str, seeds: str, quiet: asyncio.Event) -> None:
        """One consumer process of ``group``; reconnects and rejoins on failure."""
        mode = GROUPS[group]
        broker_mode = _broker_mode(mode)
        incarnation = 0
        while not quiet.is_set():
            incarnation += 1
            name = f"{group}-{incarnation}"
            try:
                async with (
                    Client(seeds, name=f"torture-{name}", timeout=3.0) as client,
                    client.consume(
                        QUEUE, group, mode=broker_mode, prefetch=20, lease=2.0, wait=0.5
                    ) as stream,
                ):
                    while not quiet.is_set():
                        delivery = await stream.get(timeout=0.5)
                        if delivery is not None:
                            await self._process(name, group, mode, delivery)
            except _ConsumerCrash:
                self.consumer_crashes += 1
            except HeraldError:
                await asyncio.sleep(0.2)

    async def _process(self, name: str, group: str, mode: str, delivery: Delivery) -> None:
        message_id = delivery.body.decode()
        base: dict[str, Json] = {"queue": QUEUE, "group": group, "mode": mode}
        self.history.invoke(name, "deliver", base, _us(self.now()))
        item: dict[str, Json] = {
            "id": message_id,
            "seq": delivery.sequence,
            "attempt": delivery.attempt,
            "redelivery": delivery.redelivery,
        }
        self.history.ok(name, "deliver", {"messages": [item]}, _us(self.now()))
        crashing = not self.stop_producing.is_set() and self.rng.random() < 2 * CONSUMER_CRASH
        if crashing and self.rng.random() < 0.5:
            raise _ConsumerCrash("after a delivery, before its effect")
        effect: dict[str, Json] = {"queue": QUEUE, "group": group, "id": message_id, "mode": mode}
        if mode == EFFECTIVELY_ONCE and self.use_inbox:
            with self.inbox.transaction(f"{QUEUE}/{message_id}") as tx:
                if not tx.duplicate:
                    self.history.invoke(name, "effect", effect, _us(self.now()))
                    self.history.ok(name, "effect", {}, _us(self.now()))
        else:
            self.history.invoke(name, "effect", effect, _us(self.now()))
            self.history.ok(name, "effect", {}, _us(self.now()))
        if crashing:
            raise _ConsumerCrash("after an effect, before its ack")
        if mode == AT_MOST_ONCE:
            return
        ack: dict[str, Json] = {
            "queue": QUEUE,
            "group": group,
            "id": message_id,
            "seq": delivery.sequence,
        }
        self.history.invoke(name, "ack", ack, _us(self.now()))
        try:
            await delivery.ack()
        except HeraldError as error:
            outcome = "info" if _unknown(error) else "fail"
            self.history.record(name, outcome, "ack", {}, _us(self.now()))
            return
        self.history.ok(name, "ack", {}, _us(self.now()))

    # -- the nemesis --------------------------------------------------------------------------

    async def nemesis(self, until: float) -> None:
        """Faults one after another, every requested kind in each shuffled round,
        so a short run still injects each kind it was asked for."""
        rng = self.rng
        round_: list[str] = []
        while time.monotonic() < until:
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            if time.monotonic() >= until:
                break
            if not round_:
                round_ = list(self.nemeses)
                rng.shuffle(round_)
            kind = round_.pop()
            begin = self.now()
            try:
                label = await getattr(self, f"_fault_{kind}")(until)
            except HeraldError as error:
                self.say(f"nemesis {kind} failed: {error}")
                continue
            if label:
                self.faults[kind] += 1
                self.fault_spans.append((begin, self.now(), label))
                self.say(f"{begin:6.1f}s {label}")

    async def _leader(self) -> int | None:
        try:
            return await asyncio.to_thread(self.cluster.launcher.leader, 3.0)
        except HeraldError:
            return None

    async def _kill_restart(self, victims: list[int], outage: float) -> None:
        for node in victims:
            self.cluster.launcher.kill(node)
            self.down.add(node)
        start = self.now()
        await asyncio.sleep(outage)
        for node in victims:
            await asyncio.to_thread(self.cluster.launcher.restart, node)
            self.down.discard(node)
        if len(victims) > (len(self.cluster.ids) - 1) // 2:
            self.majority_down.append((start, self.now()))

    async def _fault_kill(self, until: float) -> str:
        rng = self.rng
        ids = list(self.cluster.ids)
        choice = rng.random()
        if choice < 0.4:
            leader = await self._leader()
            victims = [leader] if leader else [rng.choice(ids)]
            what = f"SIGKILL leader n{victims[0]}"
        elif choice < 0.8:
            victims = [rng.choice(ids)]
            what = f"SIGKILL n{victims[0]}"
        else:
            victims = rng.sample(ids, len(ids) // 2 + 1)
            what = f"SIGKILL a majority {victims}"
        await self._kill_restart(victims, rng.uniform(0.5, 2.0))
        return what + ", restarted"

    async def _fault_disk(self, until: float) -> str:
        # Nodes run on the volatile file system: a SIGKILL loses their unsynced
        # writes, as a power cut would.
        victim = self.rng.choice(list(self.cluster.ids))
        await self._kill_restart([victim], self.rng.uniform(0.3, 1.5))
        return f"power loss at n{victim} (unsynced writes lost), restarted"

    async def _fault_pause(self, until: float) -> str:
        leader = await self._leader() if self.rng.random() < 0.6 else None
        victim = leader or self.rng.choice(list(self.cluster.ids))
        self.cluster.launcher.pause(victim)
        self.paused.add(victim)
        await asyncio.sleep(self.rng.uniform(0.5, 2.5))
        self.cluster.launcher.resume(victim)
        self.paused.discard(victim)
        return f"SIGSTOP n{victim}, then SIGCONT"

    async def _fault_partition(self, until: float) -> str:
        rng = self.rng
        ids = list(self.cluster.ids)
        choice = rng.random()
        if choice < 0.35:
            rng.shuffle(ids)
            cut = len(ids) // 2
            groups = [ids[:cut], ids[cut:]]
            self.cluster.partition(groups)
            what = f"partition {groups}"
        elif choice < 0.7:
            leader = await self._leader() or rng.choice(ids)
            self.cluster.partition([[leader], [n for n in ids if n != leader]])
            what = f"isolate the leader n{leader}"
        else:
            rng.shuffle(ids)
            cut = rng.randint(1, len(ids) - 1)
            self.cluster.cut_one_way(ids[:cut], ids[cut:])
            what = f"one-way cut {ids[:cut]} -> {ids[cut:]}"
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        self.cluster.heal()
        return what + ", healed"

    async def _fault_slow(self, until: float) -> str:
        rng = self.rng
        links = rng.sample(self.cluster.proxies, max(1, len(self.cluster.proxies) // 3))
        self.cluster.slow(
            links, rng.uniform(0.01, 0.1), rng.uniform(0.0, 0.05), rng.choice((0.0, 0.01))
        )
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        for link in links:
            link.heal()
        return f"slow links ({len(links)} of {len(self.cluster.proxies)}), healed"

    # -- the end --------------------------------------------------------------------------------

    async def heal_all(self) -> None:
        self.cluster.heal()
        for node in list(self.paused):
            self.cluster.launcher.resume(node)
        self.paused.clear()
        for node in self.cluster.ids:
            if not self.cluster.launcher.nodes[node].running:
                await asyncio.to_thread(self.cluster.launcher.restart, node)
        self.down.clear()

    async def drained(self, client: Client, deadline: float) -> bool:
        quiet = 0
        while time.monotonic() < deadline:
            try:
                stats = await client.stats(QUEUE, timeout=2.0)
            except HeraldError:
                await asyncio.sleep(0.3)
                continue
            empty = all(
                g.backlog == 0 and g.in_flight == 0 and g.ready == 0 and g.delayed == 0
                for g in stats.groups
            )
            quiet = quiet + 1 if empty and len(stats.groups) == len(GROUPS) else 0
            if quiet >= 3:
                return True
            await asyncio.sleep(0.3)
        return False


def _unknown(error: HeraldError) -> bool:
    """Whether a failed call may still have happened (timeouts, lost connections)."""
    name = type(error).__name__
    return name in (
        "RequestTimeoutError",
        "ConnectionClosedError",
        "OutcomeUnknownError",
        "UnreachableError",
    )


def _us(seconds: float) -> int:
    return int(seconds * 1_000_000)


async def run_torture(
    *,
    seconds: float = 30.0,
    nemeses: tuple[str, ...] = ("kill", "pause", "partition"),
    nodes: int = 3,
    producers: int = 3,
    seed: int | None = None,
    report_dir: Path = Path("out/torture"),
    say: Callable[[str], None] = lambda text: None,
    use_inbox: bool = True,
) -> TortureResult:
    rng = random.Random(seed)
    report_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("inbox.db", "inbox.db-wal", "inbox.db-shm"):
        with contextlib.suppress(FileNotFoundError):
            (report_dir / stale).unlink()
    cluster = ProxiedCluster(
        nodes, rng=random.Random(rng.getrandbits(64)), volatile_storage="disk" in nemeses
    )
    await cluster.start()
    run = _Run(cluster, nemeses, random.Random(rng.getrandbits(64)), report_dir, say)
    run.use_inbox = use_inbox
    say(f"cluster of {nodes} serving behind {len(cluster.proxies)} proxies")
    drained = False
    try:
        async with Client(cluster.seeds, name="torture-admin", timeout=5.0) as admin:
            await admin.create_queue(QUEUE, lease_duration=2.0, max_deliveries=1000)
            for group, mode in GROUPS.items():
                # Every group exists before the first publish.
                async with admin.consume(
                    QUEUE, group, mode=_broker_mode(mode), prefetch=1, wait=0.0
                ):
                    pass
            quiet = asyncio.Event()
            published = [0]
            clients = [
                await Client.connect(cluster.seeds, name=f"torture-p{n}", timeout=3.0)
                for n in range(1, producers + 1)
            ]
            tasks = [
                asyncio.create_task(run.producer(n, client, published))
                for n, client in enumerate(clients, start=1)
            ]
            tasks += [
                asyncio.create_task(run.consumer(group, cluster.seeds, quiet)) for group in GROUPS
            ]
            until = time.monotonic() + seconds
            await run.nemesis(until)
            # The end: stop producing, undo every fault, drain, read the dead letters.
            run.stop_producing.set()
            say(f"{run.now():6.1f}s healing everything, draining")
            await run.heal_all()
            await asyncio.gather(*tasks[: len(clients)], return_exceptions=True)
            for client in clients:
                await client.close()
            drained = await run.drained(admin, time.monotonic() + 60.0)
            quiet.set()
            await asyncio.gather(*tasks[len(clients) :], return_exceptions=True)
            for group in GROUPS:
                letters = await admin.dead_letters(QUEUE, group, limit=100_000)
                ids: list[Json] = [letter.body.decode() for letter in letters]
                value: dict[str, Json] = {"queue": QUEUE, "group": group, "ids": ids}
                run.history.invoke("drain", "dead_letter", value, _us(run.now()))
                run.history.ok("drain", "dead_letter", {}, _us(run.now()))
    finally:
        await cluster.stop()
        run.inbox.close()
    return _judge(run, nodes, drained, report_dir)


def _judge(run: _Run, nodes: int, drained: bool, report_dir: Path) -> TortureResult:
    with (report_dir / "history.jsonl").open("w", encoding="utf-8") as out:
        write_history(run.history.ops, out)
    checked = check_queue(run.history.ops)
    verdict = judge(checked.by_mode, producer_dedup=True)
    by_mode = {
        mode: {
            "confirmed": counts.confirmed,
            "lost": counts.lost,
            "unexpected": counts.unexpected,
            "duplicated": counts.duplicated,
            "duplicated_effects": counts.duplicated_effect,
        }
        for mode, counts in checked.by_mode.items()
    }
    eo = checked.by_mode.get(EFFECTIVELY_ONCE)
    invoked_with_majority = [
        ok for invoked, _latency, ok in run.publish_log if not _in(invoked, run.majority_down)
    ]
    ok_fraction = (
        sum(invoked_with_majority) / len(invoked_with_majority) if invoked_with_majority else 0.0
    )
    successes = sorted(invoked + latency for invoked, latency, ok in run.publish_log if ok)
    gaps = [later - earlier for earlier, later in itertools.pairwise(successes)]
    latencies = sorted(latency * 1000 for _, latency, ok in run.publish_log if ok)
    lost_guaranteed = sum(
        counts.lost for mode, counts in checked.by_mode.items() if mode != AT_MOST_ONCE
    )
    return TortureResult(
        nodes=nodes,
        seconds=run.now(),
        ops=len(run.publish_log),
        ok_fraction=ok_fraction,
        longest_unavailable=max(gaps, default=0.0),
        lost=lost_guaranteed,
        unexpected=sum(counts.unexpected for counts in checked.by_mode.values()),
        duplicated_effects=eo.duplicated_effect if eo is not None else 0,
        by_mode=by_mode,
        faults=run.faults,
        consumer_crashes=run.consumer_crashes,
        failures=list(verdict.failures),
        phenomena=list(verdict.phenomena),
        latency_ms={
            "p50": _percentile(latencies, 0.5),
            "p99": _percentile(latencies, 0.99),
            "max": round(latencies[-1], 2) if latencies else 0.0,
        },
        drained=drained,
        report_dir=report_dir,
        timeline=[(invoked, latency * 1000) for invoked, latency, ok in run.publish_log if ok],
        fault_spans=run.fault_spans,
    )


def _in(moment: float, spans: list[tuple[float, float]]) -> bool:
    return any(start <= moment <= end for start, end in spans)


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    return round(values[min(len(values) - 1, int(fraction * len(values)))], 2)
