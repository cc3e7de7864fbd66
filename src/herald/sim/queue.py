"""The queue workload: what users of a queue do, through the real client and server cores.

Every node runs the real request core (:class:`~herald.node.server.ServerCore`)
over the real write-ahead log; every client process runs the real client core
(:class:`~herald.client.core.ClientCore`), whose frames cross simulated
connections (:mod:`herald.sim.links`) through the real wire codec. Nothing of
the request path is modelled here: this module only decides what the users
do, and records what they see as a history (:mod:`herald.check.history`).

The users:

- **producers** publish to the main queue ``q`` with a pipeline of publishes
  in flight (idempotent producers, some with idempotency keys); some bodies
  are larger than the queue allows (refused in the middle of a pipeline), the
  queue may be full (refused), the servers may shed load (turned away and
  resent), and a producer may die and come back as a new process with a new
  producer id (it publishes again, with its key, what it keyed and never saw
  confirmed);
- an **Outbox relay** writes rows into an Outbox (SQLite, in memory) and relays
  them with the real relay logic (:class:`~herald.processing.relay.RelayRound`);
  some rows name a queue that does not exist and must be set aside, not stall
  the relay; the relay dies and comes back too;
- **consumers** of three groups, one per way of processing: ``amo``
  (at-most-once), ``alo`` (at-least-once with a non-idempotent effect) and
  ``eo`` (effectively-once: at-least-once plus the real Inbox on SQLite, whose
  "done" record commits with the effect). They die right after a delivery or
  between an effect and its ack, and some messages outlive their lease;
- an **admin** creates the queues and groups, and deletes and re-creates the
  scratch queue ``r`` now and then (recorded as ``drop`` operations), while a
  scratch producer publishes messages without keys into it and an Inbox
  consumer processes them: a recreated queue numbers from 1 again, so an Inbox
  keyed by ``queue#sequence`` alone would skip its new messages.

After the safety phase the producers stop, the nemesis heals everything, the
consumers drain every group (the admin watches with linearizable ``stats``
reads) and the dead letters are read; the queue checker then judges the
history (:func:`herald.check.queue.check_queue`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from dataclasses import fields as dataclass_fields
from typing import Any, Final

from herald.broker import Command, decode
from herald.check.history import Json, Recorder
from herald.check.history import Op as HistoryOp
from herald.check.queue import AT_LEAST_ONCE, AT_MOST_ONCE, EFFECTIVELY_ONCE, QueueCheckResult
from herald.client._consumer_core import Mode
from herald.client.core import ClientCore, ConsumerCore, CoreDelivery, Op
from herald.errors import (
    HeraldError,
    MalformedCommandError,
    QueueExistsError,
    UnknownConsumerError,
    UnknownGroupError,
    UnknownQueueError,
)
from herald.processing.database import Database, connect_sqlite
from herald.processing.inbox import Inbox, message_key
from herald.processing.outbox import Outbox
from herald.processing.relay import RelayRound

from .clients import SimClient
from .links import Links
from .options import QueueParams
from .scheduler import MS, SECOND
from .world import World

__all__ = ["GROUPS", "QUEUE", "SCRATCH", "QueueWorkload", "describe_command"]

QUEUE: Final = "q"
#: Deleted and made again during the run.
SCRATCH: Final = "r"
#: A queue no one ever creates (Outbox rows that name it are refused for good).
NOWHERE: Final = "nowhere"
#: group name -> (history mode, the consumer's delivery mode)
GROUPS: Final[dict[str, tuple[str, str]]] = {
    "amo": (AT_MOST_ONCE, "at_most_once"),
    "alo": (AT_LEAST_ONCE, "at_least_once"),
    "eo": (EFFECTIVELY_ONCE, "at_least_once"),
}
SCRATCH_GROUP: Final = "eo"
OP_TIMEOUT: Final = 2 * SECOND
SESSION_TIMEOUT: Final = 5 * SECOND
LONG_POLL: Final = 300 * MS
#: Errors after which an operation's outcome is unknown to the one who asked.
UNKNOWN: Final = frozenset(
    {
        "RequestTimeoutError",
        "ConnectionClosedError",
        "OutcomeUnknownError",
        "UnreachableError",
        "ProducerSequenceStaleError",
    }
)


def describe_command(data: bytes) -> str:
    """A broker command in a trace line: its kind and what it is about."""
    try:
        command = decode(data)
    except MalformedCommandError:
        return f"<{len(data)} bytes>"
    fields = [
        f"{name}={value!r}"
        for name, value in vars_of(command)
        if name != "time" and value not in (None, (), b"", "")
    ]
    return f"{type(command).__name__}({', '.join(fields)})"


def vars_of(command: Command) -> list[tuple[str, object]]:
    return [(f.name, getattr(command, f.name)) for f in dataclass_fields(command)]


def _unknown(error: HeraldError) -> bool:
    return type(error).__name__ in UNKNOWN


def _brief(value: dict[str, Json]) -> str:
    return " ".join(f"{key}={item}" for key, item in value.items() if key != "messages")


def _memory_database() -> Database:
    """A private SQLite database in memory (the consumers' and the relay's own)."""
    return connect_sqlite(":memory:")


def _mode(mode: str) -> Mode:
    return "at_most_once" if mode == "at_most_once" else "at_least_once"


@dataclass(slots=True)
class Counts:
    """How often each thing users do and suffer happened (the ``--json`` summary)."""

    refused_too_large: int = 0
    refused_queue_full: int = 0
    refused_unknown_queue: int = 0
    turned_away: int = 0  # overloaded, not the leader, shutting down: resent by the client
    publish_unknown: int = 0
    producer_restarts: int = 0
    consumer_crashes: int = 0
    relay_restarts: int = 0
    relay_set_aside: int = 0
    inbox_duplicates: int = 0
    queue_recreations: int = 0
    drains: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in dataclass_fields(self)}


@dataclass(slots=True)
class _Process:
    """A client process: its name in the history changes with each incarnation."""

    base: str
    client: SimClient
    incarnation: int = 1

    @property
    def name(self) -> str:
        return f"{self.base}.{self.incarnation}"


@dataclass(slots=True)
class _Producer(_Process):
    queue: str = QUEUE
    next_message: int = 1
    last_message: int = 0
    in_flight: dict[str, Op[Any]] = field(default_factory=dict)
    #: Keyed messages never confirmed: a new incarnation publishes them again.
    unconfirmed: list[str] = field(default_factory=list)
    paused: bool = False  # the scratch producer, while its queue is re-created
    done: bool = False
    keys: bool = False


@dataclass(slots=True)
class _Consumer(_Process):
    group: str = ""
    queue: str = QUEUE
    consumer: ConsumerCore | None = None
    busy: bool = False
    inbox: Inbox | None = None
    lost_fetches: int = 0  # of its consumer core, recorded in the history


class QueueWorkload:
    """Producers, a relay, consumers and an admin, and their history, for one run."""

    def __init__(
        self,
        world: World,
        rng: random.Random,
        *,
        client_class: type[ClientCore] = ClientCore,
        inbox_key: Callable[[CoreDelivery], str] = message_key,
    ) -> None:
        assert world.options.queue is not None
        self.world = world
        self.rng = rng
        self.params: QueueParams = world.options.queue
        self.links = Links(world, random.Random(rng.getrandbits(64)))
        self.client_class = client_class
        self.inbox_key = inbox_key
        self.history = Recorder()
        self.counts = Counts()
        self.ready = False
        #: When the setup was done and the users began (None: not yet).
        self.began_at: int | None = None
        self.draining = False
        self.drained = False
        self.checked: QueueCheckResult | None = None
        self._deliveries = 0
        self.balance: dict[str, int] = {}  # alo's non-idempotent effect
        self._eo_database = _memory_database()
        self._scratch_database = _memory_database()
        self.admin = self._client("admin")
        params = self.params
        self.producers = [
            _Producer(f"p{n}", self._client(f"p{n}"), keys=params.use_keys)
            for n in range(1, params.producers + 1)
        ]
        for producer in self.producers:
            producer.last_message = params.messages
        self.scratch = _Producer(
            "s1", self._client("s1"), queue=SCRATCH, last_message=2 * params.messages
        )
        self.consumers: list[_Consumer] = []
        for group in GROUPS:
            for n in range(1, params.consumers + 1):
                name = f"{group}-{n}"
                inbox = self._inbox(self._eo_database, "q-eo") if group == "eo" else None
                self.consumers.append(_Consumer(name, self._client(name), group=group, inbox=inbox))
        self.consumers.append(
            _Consumer(
                "r-eo-1",
                self._client("r-eo-1"),
                group=SCRATCH_GROUP,
                queue=SCRATCH,
                inbox=self._inbox(self._scratch_database, "r-eo"),
            )
        )
        self.relay: _Producer | None = None
        self._outbox: Outbox | None = None
        if params.relay:
            self.relay = _Producer("relay", self._client("relay"), last_message=params.messages)
            self._outbox = Outbox(_memory_database(), name="sim", clock=self._seconds)
        self._relaying = False

    # -- plumbing ----------------------------------------------------------------------

    def _client(self, name: str) -> SimClient:
        return SimClient(
            self.links,
            name,
            random.Random(self.rng.getrandbits(64)),
            timeout=OP_TIMEOUT,
            core_class=self.client_class,
        )

    def _inbox(self, database: Database, name: str) -> Inbox:
        return Inbox(database, name=name, clock=self._seconds)

    def _seconds(self) -> float:
        return self.world.scheduler.now / SECOND

    def _now(self) -> int:
        return self.world.scheduler.now

    def _later(self, delay: int, action: Callable[..., None], *args: object) -> None:
        self.world.scheduler.after(max(1, delay), action, *args)

    def _record(self, process: str, status: str, f: str, value: dict[str, Json]) -> None:
        self.history.record(process, status, f, value, self._now())
        if self.world.trace is not None:
            self.world.log(f"{process} {status} {f} {_brief(value)}")

    def _invoke(self, process: str, f: str, value: dict[str, Json]) -> None:
        self.history.invoke(process, f, value, self._now())
        if self.world.trace is not None:
            self.world.log(f"{process} invoke {f} {_brief(value)}")

    def ordered_history(self) -> list[HistoryOp]:
        """The history in time order (a delivery is recorded when its consumer takes
        it, with the times the broker could have leased it)."""
        ops = sorted(self.history.ops, key=lambda op: (op.time, op.index))
        return [replace(op, index=position) for position, op in enumerate(ops)]

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._later(1, self._setup)

    def stop(self) -> None:
        """The safety phase ends: no new publishes; consumers keep going, without faults."""
        self.draining = True
        for producer in self._all_producers():
            producer.done = True

    def _all_producers(self) -> list[_Producer]:
        extra = [self.relay] if self.relay is not None else []
        return [*self.producers, self.scratch, *extra]

    # -- setup -------------------------------------------------------------------------

    def _queue_options(self, queue: str) -> dict[str, int | None]:
        params = self.params
        return {
            "lease_duration": params.lease,
            "max_deliveries": params.max_deliveries,
            "max_message_bytes": params.max_message_bytes,
            "max_length": params.max_length if queue == QUEUE else None,
            "dedup_ttl": params.dedup_ttl,
            "producer_ttl": params.dedup_ttl,
        }

    def _setup(self) -> None:
        def create() -> None:
            self._create(QUEUE, lambda: self._create(SCRATCH, lambda: self._subscribe_all(0)))

        self.admin.when_ready(create)

    def _create(self, queue: str, then: Callable[[], None]) -> None:
        client = self.admin
        op = client.core_for(queue).create_queue(
            queue, self._queue_options(queue), timeout=None, now=self._now()
        )

        def created(op: Op[Any]) -> None:
            if op.error is None or isinstance(op.error, QueueExistsError):
                then()
            else:
                self._later(20 * MS, self._create, queue, then)

        client.watch(op, created)

    def _groups(self) -> list[tuple[str, str, str]]:
        """(queue, group, delivery mode) of every group of the run."""
        groups = [(QUEUE, group, mode) for group, (_, mode) in GROUPS.items()]
        return [*groups, (SCRATCH, SCRATCH_GROUP, "at_least_once")]

    def _subscribe_all(self, position: int, then: Callable[[], None] | None = None) -> None:
        """Create every group (a consumer joins and leaves) before anything is published:
        a message goes to the groups that exist when it is published."""
        groups = self._groups()
        if position == len(groups):
            (then or self._begin)()
            return
        queue, group, mode = groups[position]
        self._ensure_group(queue, group, mode, lambda: self._subscribe_all(position + 1, then))

    def _ensure_group(self, queue: str, group: str, mode: str, then: Callable[[], None]) -> None:
        client = self.admin
        consumer = client.core_for(queue).consumer(
            queue,
            group,
            mode=_mode(mode),
            prefetch=1,
            consumer="admin",
            wait=0,
            session_timeout=SESSION_TIMEOUT,
        )

        def joined(op: Op[Any]) -> None:
            if op.error is not None:
                self._later(20 * MS, self._ensure_group, queue, group, mode, then)
                return
            client.watch(consumer.close(self._now()), lambda _: then())

        client.watch(consumer.start(self._now()), joined)

    def _begin(self) -> None:
        self.ready = True
        self.began_at = self._now()
        params = self.params
        for producer in self._all_producers():
            self._later(self.rng.randint(1, params.publish_interval), self._fill, producer)
        for consumer in self.consumers:
            self._later(self.rng.randint(1, 20 * MS), self._join, consumer, consumer.incarnation)
        if params.recreate_every:
            self._later(params.recreate_every, self._recreate)

    # -- producers -----------------------------------------------------------------------

    def _message_id(self, producer: _Producer, number: int) -> str:
        return f"{producer.base}-{number}"

    def _fill(self, producer: _Producer) -> None:
        """Keep the producer's pipeline full."""
        if producer is self.relay:
            self._relay_round()
            return
        if not producer.client.ready:
            producer.client.when_ready(lambda: self._fill(producer))
            return
        params = self.params
        while (
            not producer.done
            and not producer.paused
            and len(producer.in_flight) < params.pipeline
            and (producer.unconfirmed or producer.next_message <= producer.last_message)
        ):
            if producer.unconfirmed:
                message_id = producer.unconfirmed.pop(0)
            else:
                message_id = self._message_id(producer, producer.next_message)
                producer.next_message += 1
            self._publish(producer, message_id)
        if producer.next_message > producer.last_message and not producer.unconfirmed:
            producer.done = True

    def _publish(self, producer: _Producer, message_id: str) -> None:
        params = self.params
        body = message_id.encode()
        big = self.rng.random() < params.too_large
        if big:
            body = body.ljust(params.max_message_bytes + 1 + self.rng.randint(0, 400), b".")
        key = message_id if producer.keys else None
        process = f"{producer.name}:{message_id}"
        self._invoke(process, "publish", {"queue": producer.queue, "id": message_id})
        client = producer.client
        try:
            op = client.core_for(producer.queue).publish(
                producer.queue, body, headers=[], key=key, timeout=None, now=self._now()
            )
        except HeraldError as error:  # refused before sending (too large for a frame)
            self._record(process, "fail", "publish", {"error": type(error).__name__})
            return
        producer.in_flight[message_id] = op
        incarnation = producer.incarnation
        client.watch(op, lambda op: self._published(producer, incarnation, message_id, op))

    def _published(
        self, producer: _Producer, incarnation: int, message_id: str, op: Op[Any]
    ) -> None:
        if producer.incarnation != incarnation:
            return  # answered to a process that died meanwhile
        producer.in_flight.pop(message_id, None)
        process = f"{producer.name}:{message_id}"
        error = op.error
        if error is None:
            receipt = op.value
            value: dict[str, Json] = {
                "seq": receipt.sequence,
                "duplicate": receipt.duplicate,
                "inc": receipt.incarnation,
            }
            self._record(process, "ok", "publish", value)
        elif _unknown(error):
            self.counts.publish_unknown += 1
            self._record(process, "info", "publish", {"error": type(error).__name__})
            if producer.keys:
                producer.unconfirmed.append(message_id)  # its key makes a retry safe
        else:
            self._count_refusal(error)
            self._record(process, "fail", "publish", {"error": type(error).__name__})
        if self.rng.random() < self.params.producer_crash and not self.draining:
            self._crash_producer(producer)
            return
        delay = int(self.rng.expovariate(1.0) * self.params.publish_interval)
        self._later(delay, self._fill, producer)

    def _count_refusal(self, error: HeraldError) -> None:
        name = type(error).__name__
        if name == "MessageTooLargeError":
            self.counts.refused_too_large += 1
        elif name == "QueueFullError":
            self.counts.refused_queue_full += 1
        elif name == "UnknownQueueError":
            self.counts.refused_unknown_queue += 1

    def _crash_producer(self, producer: _Producer) -> None:
        """The producer process dies; a new one (a new producer id) takes over later."""
        self.counts.producer_restarts += 1
        self.world.log(f"producer {producer.name} crashes")
        producer.client.crash()
        if producer.keys:
            producer.unconfirmed.extend(producer.in_flight)
        producer.in_flight.clear()
        producer.incarnation += 1
        producer.client = self._client(producer.name)
        self._later(self.rng.randint(20 * MS, 300 * MS), self._fill, producer)

    # -- the Outbox relay ------------------------------------------------------------------

    def _relay_round(self) -> None:
        relay = self.relay
        outbox = self._outbox
        assert relay is not None and outbox is not None
        if self._relaying:
            return
        if not relay.client.ready:
            relay.client.when_ready(self._relay_round)
            return
        params = self.params
        # The application writes a few rows, each in its own transaction.
        if not relay.done:
            for _ in range(self.rng.randint(1, 3)):
                if relay.next_message > relay.last_message:
                    relay.done = True
                    break
                message_id = self._message_id(relay, relay.next_message)
                relay.next_message += 1
                bad = self.rng.random() < params.relay_bad_rows
                with outbox.transaction() as tx:
                    tx.publish(NOWHERE if bad else QUEUE, message_id.encode())
        rows = outbox.pending(params.pipeline * 2)
        if not rows:
            if not relay.done:
                self._later(params.publish_interval, self._relay_round)
            return
        round_ = RelayRound(rows)
        self._relaying = True
        incarnation = relay.incarnation
        remaining = [len(round_.to_publish)]
        if not round_.to_publish:
            self._relay_settle(round_, incarnation)
            return
        for message in round_.to_publish:
            message_id = message.body.decode()
            process = f"{relay.name}:{message_id}"
            checked = message.queue == QUEUE
            if checked:
                self._invoke(process, "publish", {"queue": QUEUE, "id": message_id})
            op = relay.client.core_for(message.queue).publish(
                message.queue,
                message.body,
                headers=[],
                key=message.key,
                timeout=None,
                now=self._now(),
            )

            def done(
                op: Op[Any], row: int = message.id, process: str = process, checked: bool = checked
            ) -> None:
                if relay.incarnation != incarnation:
                    return
                if op.error is None:
                    round_.confirmed(row, duplicate=op.value.duplicate)
                    if checked:
                        value: dict[str, Json] = {
                            "seq": op.value.sequence,
                            "inc": op.value.incarnation,
                        }
                        self._record(process, "ok", "publish", value)
                else:
                    round_.failed(row, op.error)
                    self._count_refusal(op.error)
                    if checked:
                        status = "info" if _unknown(op.error) else "fail"
                        self._record(process, status, "publish", {})
                remaining[0] -= 1
                if remaining[0] == 0:
                    self._relay_settle(round_, incarnation)

            relay.client.watch(op, done)
        if not self.draining and self.rng.random() < self.params.producer_crash * 3:
            # The relay dies with the round's publishes in flight, nothing recorded:
            # its next incarnation publishes the rows again, with the same keys.
            self._later(self.rng.randint(1, 20 * MS), self._relay_crash, incarnation)

    def _relay_crash(self, incarnation: int) -> None:
        relay = self.relay
        assert relay is not None
        if relay.incarnation != incarnation or not self._relaying:
            return
        self.counts.relay_restarts += 1
        self.world.log(f"outbox relay {relay.name} crashes mid-round")
        relay.client.crash()
        relay.incarnation += 1
        relay.client = self._client(relay.name)
        self._relaying = False
        self._later(self.rng.randint(20 * MS, 300 * MS), self._relay_round)

    def _relay_settle(self, round_: RelayRound, incarnation: int) -> None:
        relay, outbox = self.relay, self._outbox
        assert relay is not None and outbox is not None
        if relay.incarnation != incarnation:
            return
        decision = round_.decide()
        outbox.record(decision)
        self.counts.relay_set_aside += len(decision.set_aside)
        self._relaying = False
        if self.rng.random() < self.params.producer_crash * 3 and not self.draining:
            # The relay dies after recording: its next incarnation relays what is left.
            self.counts.relay_restarts += 1
            relay.client.crash()
            relay.incarnation += 1
            relay.client = self._client(relay.name)
        delay = int(self.rng.expovariate(1.0) * self.params.publish_interval)
        self._later(delay, self._relay_round)

    # -- the scratch queue: deleted and made again -----------------------------------------

    def _recreate(self) -> None:
        if self.draining:
            return
        self.scratch.paused = True
        self._await_quiet_scratch()

    def _await_quiet_scratch(self) -> None:
        # The client's view, not only the callers': a publish whose caller gave up
        # (timed out) stays in flight in the client, and would land after the drop.
        core = self.scratch.client.core_for(SCRATCH)
        if self.scratch.in_flight or core.in_flight_publishes(SCRATCH):
            self._later(10 * MS, self._await_quiet_scratch)
            return
        process = "admin:drop"
        self._invoke(process, "drop", {"queue": SCRATCH})
        client = self.admin
        op = client.core_for(SCRATCH).delete_queue(SCRATCH, timeout=None, now=self._now())

        def deleted(op: Op[Any]) -> None:
            uncertain = op.error is not None and not isinstance(op.error, UnknownQueueError)
            self._create(SCRATCH, lambda: self._rejoin_scratch(process, uncertain))

        client.watch(op, deleted)

    def _rejoin_scratch(self, process: str, uncertain: bool) -> None:
        def done() -> None:
            self.counts.queue_recreations += 1
            self._record(process, "info" if uncertain else "ok", "drop", {})
            self.scratch.paused = False
            self._fill(self.scratch)
            self._later(self.params.recreate_every, self._recreate)

        self._ensure_group(SCRATCH, SCRATCH_GROUP, "at_least_once", done)

    # -- consumers -------------------------------------------------------------------------

    def _join(self, consumer: _Consumer, incarnation: int) -> None:
        # One consumer per process: a join meant for an earlier incarnation, or a
        # second one for this incarnation, would leave a consumer nobody takes
        # from, holding (and extending) its leases for ever.
        if self.drained or consumer.incarnation != incarnation or consumer.consumer is not None:
            return
        if not consumer.client.ready:
            consumer.client.when_ready(lambda: self._join(consumer, incarnation))
            return
        params = self.params
        mode = GROUPS[consumer.group][1] if consumer.queue == QUEUE else "at_least_once"
        core = consumer.client.core_for(consumer.queue).consumer(
            consumer.queue,
            consumer.group,
            mode=_mode(mode),
            prefetch=params.batch,
            consumer=consumer.base,  # its name at the broker survives crashes
            auto_extend=params.auto_extend,
            lease=params.lease,
            wait=LONG_POLL,
            session_timeout=SESSION_TIMEOUT,
        )
        consumer.consumer = core
        consumer.lost_fetches = 0
        incarnation = consumer.incarnation
        core.on_ready = lambda: self._later(0, self._next, consumer, incarnation)

        def joined(op: Op[Any]) -> None:
            if consumer.incarnation != incarnation:
                return
            if op.error is not None:
                self._later(50 * MS, self._restart_consumer, consumer, incarnation)
                return
            self._next(consumer, incarnation)

        consumer.client.watch(core.start(self._now()), joined)

    def _restart_consumer(self, consumer: _Consumer, incarnation: int) -> None:
        """Join again with a fresh client (its queue or group went away, or it failed)."""
        if consumer.incarnation != incarnation:
            return  # it died (or restarted) meanwhile
        consumer.client.crash()
        consumer.incarnation += 1
        consumer.client = self._client(consumer.name)
        consumer.consumer = None
        consumer.busy = False
        self._join(consumer, consumer.incarnation)

    def _next(self, consumer: _Consumer, incarnation: int) -> None:
        """Take the next delivery in hand, if one is waiting and the hands are free."""
        core = consumer.consumer
        if consumer.incarnation != incarnation or core is None:
            return
        if core.lost_fetches > consumer.lost_fetches:
            self._lost_fetches(consumer, core)
        if consumer.busy:
            return
        error = core.take_error()
        if error is not None:
            if isinstance(error, (UnknownQueueError, UnknownGroupError, UnknownConsumerError)):
                # Its queue was deleted (and made again): join the new one.
                self._later(50 * MS, self._restart_consumer, consumer, incarnation)
                return
            # Anything else (an unknown outcome of a fetch): go on; taking fetches again.
            self.world.log(f"consumer {consumer.name}: {type(error).__name__}: {error}")
        # A consumer takes up to ``hands`` deliveries at once, works on them, then
        # acks them all together (a batch consumer: acks that reach the leader
        # together, which it folds into one command).
        taken: list[CoreDelivery] = []
        while len(taken) < self.params.hands:
            delivery = core.take(self._now())
            # Taking frees a place in the window: the core may ask for more.
            consumer.client.pump()
            if delivery is None:
                break
            taken.append(delivery)
            if not self._took(consumer, delivery):
                return
        if not taken:
            return
        consumer.busy = True
        self._later(self._process_time(), self._process, consumer, incarnation, taken)

    def _took(self, consumer: _Consumer, delivery: CoreDelivery) -> bool:
        """Record a delivery taken in hand; False if the consumer crashed right after."""
        mode = self._mode(consumer)
        # The broker leased it between the Deliver's issue and its answer, not when
        # it leaves the prefetch buffer: record it then (the history is put in
        # time order before it is judged), as its own process.
        self._deliveries += 1
        process = f"{consumer.name}/d{self._deliveries}"
        base: dict[str, Json] = {"queue": consumer.queue, "group": consumer.group, "mode": mode}
        self.history.invoke(process, "deliver", base, delivery.fetched_at)
        item: dict[str, Json] = {
            "id": delivery.body.decode(),
            "seq": delivery.sequence,
            "inc": delivery.incarnation,
            "attempt": delivery.attempt,
            "redelivery": delivery.redelivery,
            "token": delivery.token,
        }
        self.history.ok(process, "deliver", {"messages": [item]}, delivery.arrived_at)
        if self.world.trace is not None:
            self.world.log(f"{process} took {_brief(item)} (leased at {delivery.fetched_at})")
        if self._faults_on() and self.rng.random() < self.params.consumer_crash:
            self._crash_consumer(consumer, "right after a delivery")
            return False
        return True

    def _mode(self, consumer: _Consumer) -> str:
        return GROUPS[consumer.group][0] if consumer.queue == QUEUE else EFFECTIVELY_ONCE

    def _faults_on(self) -> bool:
        return not self.draining

    def _process_time(self) -> int:
        params = self.params
        if self._faults_on() and self.rng.random() < params.slow:
            return params.lease + self.rng.randint(10 * MS, params.lease)
        return int(self.rng.expovariate(1.0) * params.process_time) + 1

    def _process(self, consumer: _Consumer, incarnation: int, taken: list[CoreDelivery]) -> None:
        """Apply each message's effect, then ack them all."""
        if consumer.incarnation != incarnation:
            return
        for delivery in taken:
            if not self._effect(consumer, delivery):
                return
        core = consumer.consumer
        assert core is not None
        if self._mode(consumer) == AT_MOST_ONCE:
            consumer.busy = False
            self._later(1, self._next, consumer, incarnation)
            return
        waiting = [len(taken)]
        for hand, delivery in enumerate(taken):
            self._ack(consumer, incarnation, delivery, hand, waiting)

    def _effect(self, consumer: _Consumer, delivery: CoreDelivery) -> bool:
        """Apply one message's effect; False if the consumer crashed right after."""
        message_id = delivery.body.decode()
        mode = self._mode(consumer)
        process = consumer.name
        effect: dict[str, Json] = {
            "queue": consumer.queue,
            "group": consumer.group,
            "id": message_id,
            "mode": mode,
        }
        if consumer.inbox is not None:
            # One transaction in the consumer's database: the effect and "done".
            with consumer.inbox.transaction(self.inbox_key(delivery)) as tx:
                if tx.duplicate:
                    self.counts.inbox_duplicates += 1
                else:
                    self._invoke(process, "effect", effect)
                    self._record(process, "ok", "effect", {})
        else:
            self._invoke(process, "effect", effect)
            self.balance[message_id] = self.balance.get(message_id, 0) + 1
            self._record(process, "ok", "effect", {})
        if self._faults_on() and self.rng.random() < self.params.consumer_crash:
            self._crash_consumer(consumer, "after an effect, before its ack")
            return False
        return True

    def _ack(
        self,
        consumer: _Consumer,
        incarnation: int,
        delivery: CoreDelivery,
        hand: int,
        waiting: list[int],
    ) -> None:
        """Ack one delivery of a hand; the consumer is free once all of them are answered."""
        core = consumer.consumer
        assert core is not None
        message_id = delivery.body.decode()
        # Acks of one hand are in flight together: each is its own history process.
        process = consumer.name if hand == 0 else f"{consumer.name}/a{hand}"
        ack: dict[str, Json] = {
            "queue": consumer.queue,
            "group": consumer.group,
            "id": message_id,
            "seq": delivery.sequence,
            "token": delivery.token,
        }
        self._invoke(process, "ack", ack)
        op = core.ack(delivery, self._now())

        def acked(op: Op[Any]) -> None:
            if consumer.incarnation != incarnation:
                return
            error = op.error
            if error is None:
                self._record(process, "ok", "ack", {})
            else:
                status = "info" if _unknown(error) else "fail"
                self._record(process, status, "ack", {"error": type(error).__name__})
            waiting[0] -= 1
            if waiting[0] == 0:
                consumer.busy = False
                self._next(consumer, incarnation)

        consumer.client.watch(op, acked)

    def _lost_fetches(self, consumer: _Consumer, core: ConsumerCore) -> None:
        """Fetches whose answers never came: at most once, what they leased is
        settled and gone, which the history must say (an unknown delivery)."""
        count = core.lost_fetches - consumer.lost_fetches
        consumer.lost_fetches = core.lost_fetches
        if self._mode(consumer) != AT_MOST_ONCE:
            return
        base: dict[str, Json] = {"queue": consumer.queue, "group": consumer.group}
        for _ in range(count):
            self._deliveries += 1
            process = f"{consumer.name}/d{self._deliveries}"
            self._invoke(process, "deliver", {**base, "mode": AT_MOST_ONCE})
            self._record(process, "info", "deliver", {"lost": "fetch"})

    def _crash_consumer(self, consumer: _Consumer, where: str) -> None:
        """The consumer process dies: what it held in memory is gone (its database is not)."""
        self.counts.consumer_crashes += 1
        self.world.log(f"consumer {consumer.name} crashes {where}")
        if self._mode(consumer) == AT_MOST_ONCE:
            # Deliveries it had received and not yet looked at died with it, settled.
            base: dict[str, Json] = {
                "queue": consumer.queue,
                "group": consumer.group,
                "mode": AT_MOST_ONCE,
            }
            self._deliveries += 1
            process = f"{consumer.name}/d{self._deliveries}"
            self._invoke(process, "deliver", base)
            self._record(process, "info", "deliver", {})
        consumer.client.crash()
        consumer.incarnation += 1
        consumer.client = self._client(consumer.name)
        consumer.consumer = None
        consumer.busy = False
        self._later(self.rng.randint(20 * MS, 300 * MS), self._join, consumer, consumer.incarnation)

    # -- the drain -------------------------------------------------------------------------

    def start_drain(self) -> None:
        """Liveness phase: once producers are idle, consume until every group is empty."""
        self._later(50 * MS, self._check_drained)

    def _producers_idle(self) -> bool:
        # The relay is idle between its rounds too: only a relay with nothing left
        # to publish is done (seed 1128: the drain saw the queues empty between
        # two rounds, ended, and the next round's message was taken in hand
        # after the run's end, "delivered, never processed").
        relay, outbox = self.relay, self._outbox
        if relay is not None and outbox is not None and not (relay.done and not outbox.pending(1)):
            return False
        return not self._relaying and all(
            not producer.in_flight
            and not producer.client.core_for(producer.queue).in_flight_publishes(producer.queue)
            for producer in self._all_producers()
        )

    def _check_drained(self) -> None:
        if self.drained:
            return
        if not self.ready or not self._producers_idle() or self.scratch.paused:
            self._later(100 * MS, self._check_drained)
            return
        self._drain_stats([QUEUE, SCRATCH], {})

    def _drain_stats(self, queues: list[str], empty: dict[str, bool]) -> None:
        if not queues:
            if all(empty.values()) and not any(c.busy for c in self.consumers):
                self._read_dead_letters(list(GROUPS), [])
            else:
                self._later(100 * MS, self._check_drained)
            return
        queue, rest = queues[0], queues[1:]
        client = self.admin
        op = client.core_for(queue).stats(queue, timeout=None, now=self._now())

        def answered(op: Op[Any]) -> None:
            if op.error is not None:
                self._later(100 * MS, self._check_drained)
                return
            stats = op.value
            empty[queue] = all(
                not (g.backlog or g.in_flight or g.ready or g.delayed) for g in stats.groups
            )
            self._drain_stats(rest, empty)

        client.watch(op, answered)

    def _read_dead_letters(
        self, groups: list[str], letters: list[tuple[str, str, list[str]]]
    ) -> None:
        """The dead letters of every group (the main queue's, then the scratch queue's)."""
        pending = [(QUEUE, group) for group in groups]
        self._read_next_dead_letters([*pending, (SCRATCH, SCRATCH_GROUP)], letters)

    def _read_next_dead_letters(
        self, pending: list[tuple[str, str]], letters: list[tuple[str, str, list[str]]]
    ) -> None:
        if not pending:
            for queue, group, ids in letters:
                value: dict[str, Json] = {"queue": queue, "group": group, "ids": list(ids)}
                self._invoke("drain", "dead_letter", value)
                self._record("drain", "ok", "dead_letter", {})
            self.counts.drains += 1
            self.drained = True
            self.world.log(f"queue drained ({len(self.history.ops)} history operations)")
            return
        (queue, group), rest = pending[0], pending[1:]
        client = self.admin
        core = client.core_for(queue)
        op = core.dead_letters(queue, group, limit=0, timeout=None, now=self._now())

        def answered(op: Op[Any]) -> None:
            if op.error is not None:
                self._later(100 * MS, self._read_next_dead_letters, pending, letters)
                return
            ids = [letter.body.decode() for letter in op.value]
            letters.append((queue, group, ids))
            self._read_next_dead_letters(rest, letters)

        client.watch(op, answered)
