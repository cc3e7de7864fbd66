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

The faults go on for ``seconds``, or for ``rounds``: a round injects every
requested kind once (in a shuffled order) and owes one consumer crash at each
crash point in each group, so a run by rounds injects the same faults on a
slow machine as on a fast one. A test counts rounds; a person asks for time.

Two kinds of failure come out, kept apart as the simulator keeps them:

- **safety**: the checker found a broken guarantee (a confirmed message lost by
  at-least-once or effectively-once, an effect applied twice by
  effectively-once, anything unexpected or reordered ...). A message counts as
  *lost* only once the queue is drained: before that it is only not delivered
  yet.
- **liveness**: after healing, the drain did not finish -- it made no progress
  for :data:`DRAIN_STALL` seconds, or ran past a cap that grows with the
  backlog it started with. The result then names what remains per group
  (backlog, in flight, ready, delayed) and the dead letters, and the
  undelivered messages as *undelivered so far*, not as lost.

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from herald import Client, QueueStats
from herald.check.history import Json, Recorder, write_history
from herald.check.queue import AT_LEAST_ONCE, AT_MOST_ONCE, EFFECTIVELY_ONCE, check_queue
from herald.check.verdict import judge
from herald.client import Delivery
from herald.errors import HeraldError, UsageError
from herald.processing import Inbox, connect_sqlite

from .cluster import ProxiedCluster

__all__ = ["NEMESES", "DrainReport", "GroupRemaining", "TortureResult", "run_torture"]

NEMESES = ("kill", "pause", "partition", "slow", "disk")
QUEUE = "torture"
GROUPS = {"amo": AT_MOST_ONCE, "alo": AT_LEAST_ONCE, "eo": EFFECTIVELY_ONCE}

#: Seconds of faults when a run is given neither seconds nor rounds.
DEFAULT_SECONDS = 30.0
#: The drain gives up after this many seconds without progress (no new low of
#: the messages remaining across the groups). Generous: a redelivery waits for
#: a lease to expire, and a node restarted last may still be catching up.
DRAIN_STALL = 60.0
#: The drain's cap: this many seconds, plus DRAIN_PER_MESSAGE for every message
#: remaining when it starts, at most DRAIN_CAP_MAX seconds in all.
DRAIN_CAP_BASE = 300.0
DRAIN_PER_MESSAGE = 0.1
DRAIN_CAP_MAX = 3600.0
#: Seconds between two progress lines while draining.
DRAIN_PROGRESS_EVERY = 5.0
#: Seconds to wait, after the last fault of a run by rounds, for each consumer
#: crash still owed (they happen at the next delivery, so this is only a bound).
CRASH_WAIT = 120.0


def _broker_mode(mode: str) -> Literal["at_most_once", "at_least_once"]:
    return "at_most_once" if mode == AT_MOST_ONCE else "at_least_once"


@dataclass(frozen=True, slots=True)
class GroupRemaining:
    """What a consumer group still has to consume, from the queue's stats."""

    backlog: int  # never delivered
    in_flight: int  # leased, not acked
    ready: int  # waiting for a redelivery
    delayed: int  # nacked with a delay that has not passed
    dead_letters: int

    @property
    def total(self) -> int:
        """Messages the group has not settled (dead letters are settled)."""
        return self.backlog + self.in_flight + self.ready + self.delayed

    def describe(self) -> str:
        return (
            f"backlog {self.backlog}, in flight {self.in_flight}, ready {self.ready}, "
            f"delayed {self.delayed}"
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "backlog": self.backlog,
            "in_flight": self.in_flight,
            "ready": self.ready,
            "delayed": self.delayed,
            "dead_letters": self.dead_letters,
        }


@dataclass(frozen=True, slots=True)
class DrainReport:
    """How the drain after healing went: a liveness result, not a safety one."""

    drained: bool
    seconds: float
    why: str  # "drained", or why it gave up
    at_start: dict[str, GroupRemaining]  # per group, at the first stats read
    remaining: dict[str, GroupRemaining]  # per group, at the last stats read
    dead_letters: int  # the queue's, at the last stats read

    def describe(self) -> str:
        if self.drained:
            return f"drained in {self.seconds:.1f} s"
        groups = "; ".join(f"{name}: {left.describe()}" for name, left in self.remaining.items())
        return (
            f"drain did not finish after {self.seconds:.1f} s ({self.why}); remaining: "
            f"{groups or 'unknown (no stats could be read)'}; dead letters {self.dead_letters}"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "drained": self.drained,
            "seconds": round(self.seconds, 1),
            "why": self.why,
            "at_start": {name: left.as_dict() for name, left in self.at_start.items()},
            "remaining": {name: left.as_dict() for name, left in self.remaining.items()},
            "dead_letters": self.dead_letters,
        }


@dataclass
class TortureResult:
    """What a torture run found. ``failures`` are safety failures (broken
    guarantees); a drain that did not finish is a liveness failure (``drained``
    false, ``drain`` says what remains)."""

    nodes: int
    seconds: float
    ops: int
    ok_fraction: float
    longest_unavailable: float
    lost: int | None  # None when the queue did not drain: nothing is known lost
    unexpected: int
    duplicated_effects: int
    by_mode: dict[str, dict[str, int]]
    faults: dict[str, int]
    consumer_crashes: int
    failures: list[str]
    phenomena: list[str]
    latency_ms: dict[str, float]
    drained: bool
    drain: DrainReport
    #: Confirmed messages not delivered, per mode, when the queue did not drain.
    undelivered: dict[str, int]
    report_dir: Path
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (time, latency ms)
    fault_spans: list[tuple[float, float, str]] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        """No guarantee found broken (in a partial history, if it did not drain)."""
        return not self.failures

    @property
    def live(self) -> bool:
        return self.drained

    @property
    def ok(self) -> bool:
        return self.safe and self.live

    @property
    def liveness(self) -> str:
        return "ok" if self.live else "drain did not finish"

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
            "liveness": self.liveness,
            "drain": self.drain.as_dict(),
            "undelivered_so_far": self.undelivered,
            "nodes": self.nodes,
            "seconds": round(self.seconds, 1),
            "report": str(self.report_dir),
        }


class _ConsumerCrash(Exception):  # noqa: N818 - a simulated process death, not an error
    """The consumer "process" dies mid-message; it comes back as a new one."""


#: Per message, the chance that its consumer dies right after the delivery
#: (before the effect) or right after the effect (before the ack): the moments
#: that tell the delivery semantics apart. Each nemesis round also owes one
#: crash at each point in each group, so a short run has them too.
CONSUMER_CRASH = 0.003
CRASH_POINTS = ("after a delivery, before its effect", "after an effect, before its ack")


class _Run:
    def __init__(
        self,
        cluster: ProxiedCluster,
        nemeses: tuple[str, ...],
        rng: random.Random,
        report_dir: Path,
        say: Callable[[str], None],
        *,
        seconds: float | None,
        rounds: int | None,
    ) -> None:
        self.cluster = cluster
        self.nemeses = nemeses
        self.seconds = seconds
        self.rounds = rounds
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
        #: Tests set it to False to plant a liveness bug: the consumers quit
        #: before the producers do, so the queue cannot drain.
        self.consumers_drain = True
        self.consumer_crashes = 0
        #: Per group, the crash points its consumers still owe this run's rounds.
        self.owed_crashes: dict[str, list[str]] = {group: [] for group in GROUPS}

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
        crash = self._crash_point(group)
        if crash == CRASH_POINTS[0]:
            raise self._crash(group, crash)
        effect: dict[str, Json] = {"queue": QUEUE, "group": group, "id": message_id, "mode": mode}
        if mode == EFFECTIVELY_ONCE and self.use_inbox:
            with self.inbox.transaction(f"{QUEUE}/{message_id}") as tx:
                if not tx.duplicate:
                    self.history.invoke(name, "effect", effect, _us(self.now()))
                    self.history.ok(name, "effect", {}, _us(self.now()))
        else:
            self.history.invoke(name, "effect", effect, _us(self.now()))
            self.history.ok(name, "effect", {}, _us(self.now()))
        if crash == CRASH_POINTS[1]:
            raise self._crash(group, crash)
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

    def _crash_point(self, group: str) -> str | None:
        """Where this delivery's consumer dies, if it does: first what the rounds
        owe, then by chance. Never while draining."""
        if self.stop_producing.is_set():
            return None
        owed = self.owed_crashes[group]
        if owed:
            return owed[0]
        if self.rng.random() < 2 * CONSUMER_CRASH:
            return self.rng.choice(CRASH_POINTS)
        return None

    def _crash(self, group: str, point: str) -> _ConsumerCrash:
        owed = self.owed_crashes[group]
        if owed and owed[0] == point:
            owed.pop(0)
        self.consumer_crashes += 1
        return _ConsumerCrash(point)

    # -- the nemesis --------------------------------------------------------------------------

    def faults_done(self) -> bool:
        """Whether the run has had its seconds and its rounds (those it was given)."""
        if self.seconds is not None and self.now() < self.seconds:
            return False
        return self.rounds is None or all(self.faults[kind] >= self.rounds for kind in self.nemeses)

    async def nemesis(self) -> None:
        """Faults one after another, every requested kind in each shuffled round,
        until the run has had its seconds and its rounds. A kind that fails to be
        injected is tried again in the next round; a run by rounds gives up after
        a few times as many attempts as it needs (the result shows the shortfall)."""
        rng = self.rng
        round_: list[str] = []
        attempts = 0
        needed = (self.rounds or 0) * len(self.nemeses)
        while not self.faults_done():
            if self.rounds is not None and attempts >= 3 * needed + 10:
                self.say(f"nemesis: giving up after {attempts} attempts; injected {self.faults}")
                break
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            if self.faults_done():
                break
            if not round_:
                short = [
                    kind
                    for kind in self.nemeses
                    if self.rounds is None or self.faults[kind] < self.rounds
                ]
                round_ = short or list(self.nemeses)
                rng.shuffle(round_)
                for owed in self.owed_crashes.values():
                    owed.extend(CRASH_POINTS)
            kind = round_.pop()
            attempts += 1
            begin = self.now()
            try:
                label = await getattr(self, f"_fault_{kind}")()
            except HeraldError as error:
                self.say(f"nemesis {kind} failed: {error}")
                continue
            if label:
                self.faults[kind] += 1
                self.fault_spans.append((begin, self.now(), label))
                self.say(f"{begin:6.1f}s {label}")

    async def published_more(self, count_box: list[int], more: int, stall: float) -> None:
        """Wait until the producers have confirmed ``more`` publishes (or none for
        ``stall`` seconds)."""
        target = count_box[0] + more
        last, progress = count_box[0], time.monotonic()
        while count_box[0] < target:
            if count_box[0] > last:
                last, progress = count_box[0], time.monotonic()
            elif time.monotonic() - progress > stall:
                return
            await asyncio.sleep(0.05)

    async def crashes_paid(self, stall: float = CRASH_WAIT) -> bool:
        """Wait until the consumers have crashed as often as the rounds owe (at
        their next deliveries); False if none is paid for ``stall`` seconds."""
        last = self.owed_count()
        progress = time.monotonic()
        while (left := self.owed_count()) > 0:
            if left < last:
                last, progress = left, time.monotonic()
            elif time.monotonic() - progress > stall:
                self.say(f"consumers still owe {left} crashes after {stall:.0f} s; going on")
                return False
            await asyncio.sleep(0.1)
        return True

    def owed_count(self) -> int:
        return sum(len(owed) for owed in self.owed_crashes.values())

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

    async def _fault_kill(self) -> str:
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

    async def _fault_disk(self) -> str:
        # Nodes run on the volatile file system: a SIGKILL loses their unsynced
        # writes, as a power cut would.
        victim = self.rng.choice(list(self.cluster.ids))
        await self._kill_restart([victim], self.rng.uniform(0.3, 1.5))
        return f"power loss at n{victim} (unsynced writes lost), restarted"

    async def _fault_pause(self) -> str:
        leader = await self._leader() if self.rng.random() < 0.6 else None
        victim = leader or self.rng.choice(list(self.cluster.ids))
        self.cluster.launcher.pause(victim)
        self.paused.add(victim)
        await asyncio.sleep(self.rng.uniform(0.5, 2.5))
        self.cluster.launcher.resume(victim)
        self.paused.discard(victim)
        return f"SIGSTOP n{victim}, then SIGCONT"

    async def _fault_partition(self) -> str:
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

    async def _fault_slow(self) -> str:
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

    async def drain(self, client: Client, *, stall: float = DRAIN_STALL) -> DrainReport:
        """Let the consumers drain every group; a liveness check with a deadline
        that follows the drain instead of the clock.

        It goes on while the drain makes progress (a new low of the messages
        remaining across the groups) and gives up after ``stall`` seconds without
        any, or at a cap that grows with the backlog it started with (see
        DRAIN_CAP_BASE). Done when every group is empty on three reads in a row.
        Says what remains per group every DRAIN_PROGRESS_EVERY seconds."""
        started = time.monotonic()
        at_start: dict[str, GroupRemaining] = {}
        remaining: dict[str, GroupRemaining] = {}
        dead_letters = 0
        cap = started + DRAIN_CAP_MAX
        best: int | None = None
        progress_at = started
        progress_said = started
        said_total: int | None = None
        empty_reads = 0
        why = ""
        while True:
            now = time.monotonic()
            try:
                stats = await client.stats(QUEUE, timeout=5.0)
            except HeraldError:
                stats = None
            if stats is not None:
                remaining = _remaining(stats)
                dead_letters = stats.dead_letters
                total = sum(left.total for left in remaining.values())
                if not at_start:
                    at_start = remaining
                    cap = started + min(DRAIN_CAP_MAX, DRAIN_CAP_BASE + DRAIN_PER_MESSAGE * total)
                    self.say(
                        f"{self.now():6.1f}s draining {total} messages (giving up after "
                        f"{stall:.0f} s without progress, or at {cap - started:.0f} s): "
                        f"{_per_group(remaining)}"
                    )
                complete = total == 0 and len(remaining) == len(GROUPS)
                if best is None or total < best or complete:
                    best, progress_at = total, now
                empty_reads = empty_reads + 1 if complete else 0
                if empty_reads >= 3:
                    return DrainReport(
                        drained=True,
                        seconds=time.monotonic() - started,
                        why="drained",
                        at_start=at_start,
                        remaining=remaining,
                        dead_letters=dead_letters,
                    )
                if now - progress_said >= DRAIN_PROGRESS_EVERY:
                    rate = ""
                    if said_total is not None:
                        per_second = (said_total - total) / (now - progress_said)
                        rate = f", {per_second:.0f}/s"
                        if per_second > 0:
                            rate += f" (about {total / per_second:.0f} s to go)"
                    self.say(
                        f"{self.now():6.1f}s draining: {total} left{rate}, dead letters "
                        f"{dead_letters}: {_per_group(remaining)}"
                    )
                    progress_said, said_total = now, total
            if now - progress_at > stall:
                why = f"no progress for {stall:.0f} s"
                break
            if now > cap:
                why = f"still going at the cap of {cap - started:.0f} s"
                break
            await asyncio.sleep(0.3)
        report = DrainReport(
            drained=False,
            seconds=time.monotonic() - started,
            why=why,
            at_start=at_start,
            remaining=remaining,
            dead_letters=dead_letters,
        )
        self.say(f"{self.now():6.1f}s liveness failure: {report.describe()}")
        return report

    async def read_dead_letters(self, client: Client) -> bool:
        """Record every group's dead letters in the history; False if they could
        not be read (the history then cannot tell a dead letter from a loss)."""
        for group in GROUPS:
            for attempt in range(5):
                try:
                    letters = await client.dead_letters(QUEUE, group, limit=100_000)
                    break
                except HeraldError as error:
                    self.say(f"reading the dead letters of {group} failed: {error}")
                    await asyncio.sleep(1.0 + attempt)
            else:
                return False
            ids: list[Json] = [letter.body.decode() for letter in letters]
            value: dict[str, Json] = {"queue": QUEUE, "group": group, "ids": ids}
            self.history.invoke("drain", "dead_letter", value, _us(self.now()))
            self.history.ok("drain", "dead_letter", {}, _us(self.now()))
        return True


def _remaining(stats: QueueStats) -> dict[str, GroupRemaining]:
    return {
        group.name: GroupRemaining(
            group.backlog, group.in_flight, group.ready, group.delayed, group.dead_letters
        )
        for group in stats.groups
    }


def _per_group(remaining: dict[str, GroupRemaining]) -> str:
    """``amo 0; alo 12: backlog 10, in flight 2, ready 0, delayed 0; ...``"""
    return "; ".join(
        f"{name} {left.total}" + (f": {left.describe()}" if left.total else "")
        for name, left in remaining.items()
    )


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
    seconds: float | None = None,
    rounds: int | None = None,
    nemeses: tuple[str, ...] = ("kill", "pause", "partition"),
    nodes: int = 3,
    producers: int = 3,
    seed: int | None = None,
    report_dir: Path = Path("out/torture"),
    say: Callable[[str], None] = lambda text: None,
    use_inbox: bool = True,
    consumers_drain: bool = True,
    drain_stall: float = DRAIN_STALL,
) -> TortureResult:
    """Run a torture and judge it.

    The faults go on until ``seconds`` have passed and every kind in ``nemeses``
    was injected ``rounds`` times (whichever are given; DEFAULT_SECONDS if
    neither). ``use_inbox=False`` and ``consumers_drain=False`` plant a safety
    bug and a liveness bug, for tests. Raises UsageError for an unknown nemesis or a bad count, and
    HeraldError if the cluster cannot be started or set up."""
    unknown = [kind for kind in nemeses if kind not in NEMESES]
    if unknown or not nemeses:
        raise UsageError(f"unknown nemesis {unknown or '(none)'}; choose from {NEMESES}")
    if rounds is not None and rounds < 1:
        raise UsageError(f"rounds must be at least 1, not {rounds}")
    if seconds is None and rounds is None:
        seconds = DEFAULT_SECONDS
    rng = random.Random(seed)
    report_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("inbox.db", "inbox.db-wal", "inbox.db-shm"):
        with contextlib.suppress(FileNotFoundError):
            (report_dir / stale).unlink()
    cluster = ProxiedCluster(
        nodes, rng=random.Random(rng.getrandbits(64)), volatile_storage="disk" in nemeses
    )
    await cluster.start()
    run = _Run(
        cluster,
        nemeses,
        random.Random(rng.getrandbits(64)),
        report_dir,
        say,
        seconds=seconds,
        rounds=rounds,
    )
    run.use_inbox = use_inbox
    run.consumers_drain = consumers_drain
    say(f"cluster of {nodes} serving behind {len(cluster.proxies)} proxies")
    drain = DrainReport(
        drained=False, seconds=0.0, why="not started", at_start={}, remaining={}, dead_letters=0
    )
    letters_read = False
    try:
        # Admin calls are not part of the history: a loaded machine may take its
        # time electing the first leader.
        await asyncio.to_thread(cluster.launcher.leader, 60.0)
        async with Client(cluster.seeds, name="torture-admin", timeout=30.0) as admin:
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
            await run.nemesis()
            await run.crashes_paid()
            if not run.consumers_drain:
                quiet.set()
                await asyncio.gather(*tasks[len(clients) :], return_exceptions=True)
                await run.published_more(published, producers, stall=CRASH_WAIT)
            # The end: stop producing, undo every fault, drain, read the dead letters.
            run.stop_producing.set()
            say(f"{run.now():6.1f}s healing everything, draining")
            await run.heal_all()
            await asyncio.gather(*tasks[: len(clients)], return_exceptions=True)
            for client in clients:
                await client.close()
            drain = await run.drain(admin, stall=drain_stall)
            quiet.set()
            await asyncio.gather(*tasks[len(clients) :], return_exceptions=True)
            letters_read = await run.read_dead_letters(admin)
    finally:
        await cluster.stop()
        run.inbox.close()
    if drain.drained and not letters_read:
        drain = replace(drain, drained=False, why="the dead letters could not be read")
    return _judge(run, nodes, drain, report_dir)


def _judge(run: _Run, nodes: int, drain: DrainReport, report_dir: Path) -> TortureResult:
    with (report_dir / "history.jsonl").open("w", encoding="utf-8") as out:
        write_history(run.history.ops, out)
    checked = check_queue(run.history.ops)
    counted = dict(checked.by_mode)
    undelivered: dict[str, int] = {}
    if not drain.drained:
        # The queue was not drained: a confirmed message not yet delivered is
        # not lost, only late. The other findings stand in a partial history.
        undelivered = {mode: counts.lost for mode, counts in counted.items()}
        counted = {mode: replace(counts, lost=0) for mode, counts in counted.items()}
    verdict = judge(counted, producer_dedup=True)
    by_mode = {
        mode: {
            "confirmed": counts.confirmed,
            **({"lost": counts.lost} if drain.drained else {}),
            "unexpected": counts.unexpected,
            "duplicated": counts.duplicated,
            "duplicated_effects": counts.duplicated_effect,
            **({} if drain.drained else {"undelivered_so_far": undelivered[mode]}),
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
        lost=lost_guaranteed if drain.drained else None,
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
        drained=drain.drained,
        drain=drain,
        undelivered=undelivered,
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
