"""The queue workload: idempotent producers and consumers of all three delivery semantics.

Every node runs the real broker (:class:`BrokerMachine`). One queue, three
consumer groups, one per way of processing:

- ``amo`` consumes ``at_most_once``: the broker settles a message in the entry
  that delivers it, so a consumer crash between delivery and effect loses it;
- ``alo`` consumes ``at_least_once`` and its effect is not idempotent (adding
  to a balance): a crash between effect and ack redelivers, and the effect
  happens twice;
- ``eo`` is effectively-once processing: at-least-once delivery, and the
  consumer records "done" in its own transactional store together with the
  effect (an inbox), so a redelivery is recognised and skipped.

Producers publish with producer id + sequence number (or an idempotency key)
and retry an unknown outcome with the same identity. Consumers crash at the
seed's rate, right after a delivery or right after an effect, and some
messages take longer than their lease. The leader stamps every command with
its own (skewed) clock and proposes a periodic ``Tick``.

Everything a client sees is recorded as a history (:mod:`herald.check.history`);
after the liveness phase heals the cluster, the consumers drain every group
and the dead letters are read, and the queue checker judges the history.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from dataclasses import fields as dataclass_fields

from herald.broker import (
    Ack,
    Acked,
    Broker,
    Command,
    CreateQueue,
    Deliver,
    Deliveries,
    Delivery,
    DeliveryMode,
    Publish,
    QueueCreated,
    QueueOptions,
    Receipt,
    Session,
    Subscribe,
    Tick,
    decode,
    encode,
)
from herald.check.history import Json, Recorder
from herald.check.queue import AT_LEAST_ONCE, AT_MOST_ONCE, EFFECTIVELY_ONCE, QueueCheckResult
from herald.errors import (
    MalformedCommandError,
    ProducerSequenceStaleError,
    QueueExistsError,
    UnknownConsumerError,
)
from herald.raft import Entry

from .options import QueueParams
from .scheduler import MS, SECOND
from .world import DigestStateMachine, Op, SimNode, World

__all__ = ["GROUPS", "QUEUE", "BrokerMachine", "QueueWorkload"]

QUEUE = "q"
#: group name -> (history mode, broker delivery mode)
GROUPS: dict[str, tuple[str, DeliveryMode]] = {
    "amo": (AT_MOST_ONCE, DeliveryMode.AT_MOST_ONCE),
    "alo": (AT_LEAST_ONCE, DeliveryMode.AT_LEAST_ONCE),
    "eo": (EFFECTIVELY_ONCE, DeliveryMode.AT_LEAST_ONCE),
}
OP_TIMEOUT = 1 * SECOND
TICK_INTERVAL = 100 * MS
SESSION_TIMEOUT = 5 * SECOND
ADMIN = 0  # the client number of setup, ticks and drain reads


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


class BrokerMachine(DigestStateMachine):
    """The broker, plus the digest chain the Raft checker compares replicas by."""

    __slots__ = ("broker",)

    def __init__(self, broker_class: type[Broker] = Broker) -> None:
        super().__init__()
        self.broker = broker_class()

    def apply(self, entry: Entry) -> object:
        super().apply(entry)
        return self.broker.apply(entry)

    def snapshot(self) -> bytes:
        return super().snapshot() + self.broker.snapshot()

    def restore(self, data: bytes, index: int) -> None:
        super().restore(data[:16], index)
        self.broker.restore(data[16:], index)


@dataclass(slots=True)
class _Client:
    """One client process: it performs one operation at a time."""

    number: int  # the world's client number (for routing and traces)
    name: str  # its process id in the history
    leader_guess: int
    incarnation: int = 0


@dataclass(slots=True)
class _Producer(_Client):
    index: int = 0
    next_message: int = 1
    busy: bool = False
    done: bool = False


@dataclass(slots=True)
class _Consumer(_Client):
    group: str = ""
    consumer: str = ""  # its name at the broker (kept across crashes)
    subscribed: bool = False
    busy: bool = False  # an operation or a message in hand
    work: list[Delivery] = field(default_factory=list)


class QueueWorkload:
    """Producers, consumers and their history for one simulated run."""

    def __init__(self, world: World, rng: random.Random) -> None:
        assert world.options.queue is not None
        self.world = world
        self.rng = rng
        self.params: QueueParams = world.options.queue
        self.history = Recorder()
        self.active = False
        self.draining = False
        self.drained = False
        self.ready = False  # the queue and the groups exist
        self.consumer_crashes = 0
        self.checked: QueueCheckResult | None = None  # the checker's result, once judged
        # The consumers' own databases: they survive consumer crashes.
        self.inbox: set[str] = set()  # eo: processed message ids
        self.balance: dict[str, int] = {}  # alo: the non-idempotent effect
        voters = world.voters
        params = self.params
        number = 1
        self.producers: list[_Producer] = []
        for index in range(1, params.producers + 1):
            self.producers.append(_Producer(number, f"p{index}", rng.choice(voters), index=index))
            number += 1
        self.consumers: list[_Consumer] = []
        for group in GROUPS:
            for index in range(1, params.consumers + 1):
                name = f"{group}-{index}"
                consumer = _Consumer(number, name, rng.choice(voters), group=group, consumer=name)
                self.consumers.append(consumer)
                number += 1
        self.admin = _Client(ADMIN, "admin", rng.choice(voters))
        # Operations in flight, by identity: whose they are.
        self._pending_publish: dict[int, tuple[_Producer, int]] = {}
        self._owners: dict[int, tuple[_Consumer, int]] = {}
        self._read_seq = 0
        world.on_read_served = self._read_served
        world.describe_data = describe_command

    # -- plumbing ----------------------------------------------------------------------

    def _submit(
        self, client: _Client, command: Command, on_done: Callable[[Op], None] | None
    ) -> Op | None:
        """Send ``command`` to the node the client believes leads; None if refused."""
        world = self.world
        node = client.leader_guess
        stamped = replace(command, time=world.local_time(node))
        result = world.propose(client.number, node, encode(stamped), on_done)
        if not isinstance(result, Op):
            client.leader_guess = result or self.rng.choice(world.voters)
            return None
        world.scheduler.after(OP_TIMEOUT, world.expire, result)
        return result

    def _later(self, delay: int, action: object, *args: object) -> None:
        self.world.scheduler.after(max(1, delay), action, *args)  # type: ignore[arg-type]

    def _now(self) -> int:
        return self.world.scheduler.now

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.active = True
        self._later(1, self._setup)
        self._later(TICK_INTERVAL, self._tick)

    def stop(self) -> None:
        """The safety phase ends: no new publishes; consumers keep going, without faults."""
        self.draining = True
        for producer in self.producers:
            producer.done = True

    def _tick(self) -> None:
        """The leader's clock moves the broker's, so leases expire with no traffic."""
        world = self.world
        leader = world.leader()
        if leader is not None:
            self.admin.leader_guess = leader.id
            self._submit(self.admin, Tick(time=0), None)
        if not self.drained:
            self._later(TICK_INTERVAL, self._tick)

    # -- setup ---------------------------------------------------------------------------

    def _setup(self) -> None:
        options = QueueOptions(
            lease_duration=self.params.lease,
            max_deliveries=self.params.max_deliveries,
        )
        if self._submit(self.admin, CreateQueue(QUEUE, options, time=0), self._created) is None:
            self._later(20 * MS, self._setup)

    def _created(self, op: Op) -> None:
        if op.status == "ok" and isinstance(op.result, QueueCreated | QueueExistsError):
            # Every group exists before the first publish: a message goes to the
            # groups that exist when it is published (the checker expects all).
            self._subscribe_all(0)
        else:
            self._later(20 * MS, self._setup)

    def _subscribe_all(self, position: int) -> None:
        if position == len(self.consumers):
            self._begin()
            return
        consumer = self.consumers[position]
        mode = GROUPS[consumer.group][1]
        command = Subscribe(QUEUE, consumer.group, consumer.consumer, mode, SESSION_TIMEOUT, time=0)

        def subscribed(op: Op) -> None:
            if op.status == "ok" and isinstance(op.result, Session):
                consumer.subscribed = True
                self._subscribe_all(position + 1)
            else:
                self._later(20 * MS, self._subscribe_all, position)

        if self._submit(self.admin, command, subscribed) is None:
            self._later(20 * MS, self._subscribe_all, position)

    def _begin(self) -> None:
        self.ready = True
        for producer in self.producers:
            self._later(self.rng.randint(0, self.params.publish_interval), self._publish, producer)
        for consumer in self.consumers:
            self._later(self.rng.randint(0, 20 * MS), self._consume, consumer)

    # -- producers -----------------------------------------------------------------------

    def _message_id(self, producer: _Producer, number: int) -> str:
        return f"p{producer.index}-{number}"

    def _publish(self, producer: _Producer) -> None:
        if producer.busy:
            return
        if producer.next_message > self.params.messages or producer.done:
            producer.done = True
            return
        number = producer.next_message
        message_id = self._message_id(producer, number)
        if self.params.use_keys:
            command = Publish(QUEUE, message_id.encode(), message_id=message_id, time=0)
        else:
            command = Publish(
                QUEUE,
                message_id.encode(),
                producer=producer.name,
                producer_sequence=number,
                time=0,
            )
        op = self._submit(producer, command, self._published)
        if op is None:
            self._later(10 * MS, self._publish, producer)
            return
        producer.busy = True
        self._pending_publish[id(op)] = (producer, number)
        self.history.invoke(
            producer.name, "publish", {"queue": QUEUE, "id": message_id}, self._now()
        )

    def _published(self, op: Op) -> None:
        producer, number = self._pending_publish.pop(id(op))
        producer.busy = False
        result = op.result
        if op.status == "ok" and isinstance(result, Receipt):
            value: dict[str, Json] = {"seq": result.sequence, "duplicate": result.duplicate}
            self.history.ok(producer.name, "publish", value, self._now())
            producer.next_message = number + 1
        elif op.status == "ok" and isinstance(result, ProducerSequenceStaleError):
            # The broker already holds this number (an earlier attempt landed).
            self.history.ok(producer.name, "publish", {"duplicate": True}, self._now())
            producer.next_message = number + 1
        elif op.status == "ok":
            # Refused by the broker: surely not stored. Try the same message again.
            self.history.fail(producer.name, "publish", {}, self._now())
        elif op.status == "fail":
            self.history.fail(producer.name, "publish", {}, self._now())
        else:
            # Unknown: retry with the same identity; the broker deduplicates.
            self.history.info(producer.name, "publish", {}, self._now())
        if producer.done:
            return
        delay = int(self.rng.expovariate(1.0) * self.params.publish_interval)
        self._later(delay, self._publish, producer)

    # -- consumers ----------------------------------------------------------------------

    def _faults_on(self) -> bool:
        return not self.draining

    def _crash_consumer(self, consumer: _Consumer, where: str) -> None:
        """The consumer process dies: what it held in memory is gone."""
        self.consumer_crashes += 1
        consumer.incarnation += 1
        consumer.name = f"{consumer.consumer}.{consumer.incarnation}"
        consumer.work = []
        consumer.busy = False
        consumer.subscribed = False
        self.world.log(f"consumer {consumer.consumer} crashes {where}")
        self._later(self.rng.randint(20 * MS, 300 * MS), self._consume, consumer)

    def _consume(self, consumer: _Consumer) -> None:
        if consumer.busy or self.drained:
            return
        mode = GROUPS[consumer.group][1]
        if not consumer.subscribed:
            command: Command = Subscribe(
                QUEUE, consumer.group, consumer.consumer, mode, SESSION_TIMEOUT, time=0
            )
            op = self._submit(consumer, command, self._on_subscribed)
        else:
            command = Deliver(
                QUEUE,
                consumer.group,
                consumer.consumer,
                self.params.batch,
                self.params.lease,
                time=0,
            )
            op = self._submit(consumer, command, self._on_delivered)
            if op is not None:
                base: dict[str, Json] = {
                    "queue": QUEUE,
                    "group": consumer.group,
                    "mode": GROUPS[consumer.group][0],
                }
                self.history.invoke(consumer.name, "deliver", base, self._now())
        if op is None:
            self._later(10 * MS, self._consume, consumer)
            return
        consumer.busy = True
        self._owners[id(op)] = (consumer, consumer.incarnation)

    def _owner(self, op: Op) -> _Consumer | None:
        consumer, incarnation = self._owners.pop(id(op))
        if consumer.incarnation != incarnation:
            return None  # answered after the process died: nobody hears it
        consumer.busy = False
        return consumer

    def _on_subscribed(self, op: Op) -> None:
        consumer = self._owner(op)
        if consumer is None:
            return
        if op.status == "ok" and isinstance(op.result, Session):
            consumer.subscribed = True
            self._later(1, self._consume, consumer)
        else:
            self._later(20 * MS, self._consume, consumer)

    def _on_delivered(self, op: Op) -> None:
        consumer = self._owner(op)
        if consumer is None:
            return
        result = op.result
        if op.status == "ok" and isinstance(result, Deliveries):
            items: list[Json] = [
                {
                    "id": delivery.message.body.decode(),
                    "seq": delivery.sequence,
                    "attempt": delivery.attempt,
                    "redelivery": delivery.redelivery,
                    "token": delivery.token,
                }
                for delivery in result.deliveries
            ]
            self.history.ok(consumer.name, "deliver", {"messages": items}, self._now())
            if not result.deliveries:
                self._later(self.params.poll_interval, self._consume, consumer)
                return
            if self._faults_on() and self.rng.random() < self.params.consumer_crash:
                self._crash_consumer(consumer, "right after a delivery")
                return
            consumer.work = list(result.deliveries)
            consumer.busy = True
            self._later(self._process_time(), self._process, consumer, consumer.incarnation)
            return
        if op.status == "ok" and isinstance(result, UnknownConsumerError):
            consumer.subscribed = False  # the session expired
            self.history.fail(consumer.name, "deliver", {}, self._now())
        elif op.status in ("ok", "fail"):
            self.history.fail(consumer.name, "deliver", {}, self._now())
        else:
            self.history.info(consumer.name, "deliver", {}, self._now())
        self._later(10 * MS, self._consume, consumer)

    def _process_time(self) -> int:
        if self._faults_on() and self.rng.random() < self.params.slow:
            return self.params.lease + self.rng.randint(10 * MS, self.params.lease)
        return int(self.rng.expovariate(1.0) * self.params.process_time) + 1

    def _process(self, consumer: _Consumer, incarnation: int) -> None:
        """Apply the side effect of the next message in hand, then ack it."""
        if consumer.incarnation != incarnation:
            return
        delivery = consumer.work.pop(0)
        message_id = delivery.message.body.decode()
        mode = GROUPS[consumer.group][0]
        effect: dict[str, Json] = {
            "queue": QUEUE,
            "group": consumer.group,
            "id": message_id,
            "mode": mode,
        }
        if mode == EFFECTIVELY_ONCE:
            if message_id not in self.inbox:
                # One transaction in the consumer's database: the effect and "done".
                self.history.invoke(consumer.name, "effect", effect, self._now())
                self.inbox.add(message_id)
                self.history.ok(consumer.name, "effect", {}, self._now())
        else:
            self.history.invoke(consumer.name, "effect", effect, self._now())
            self.balance[message_id] = self.balance.get(message_id, 0) + 1
            self.history.ok(consumer.name, "effect", {}, self._now())
        if self._faults_on() and self.rng.random() < self.params.consumer_crash:
            self._crash_consumer(consumer, "after an effect, before its ack")
            return
        if mode == AT_MOST_ONCE:
            self._next_message(consumer)
            return
        ack: dict[str, Json] = {
            "queue": QUEUE,
            "group": consumer.group,
            "id": message_id,
            "seq": delivery.sequence,
            "token": delivery.token,
        }
        command = Ack(QUEUE, consumer.group, delivery.sequence, delivery.token, time=0)
        op = self._submit(consumer, command, self._on_acked)
        if op is None:
            consumer.work.insert(0, delivery)
            self._later(10 * MS, self._retry_ack, consumer, incarnation)
            return
        self.history.invoke(consumer.name, "ack", ack, self._now())
        self._owners[id(op)] = (consumer, consumer.incarnation)

    def _retry_ack(self, consumer: _Consumer, incarnation: int) -> None:
        """The ack found no leader; the effect is done, so only the ack is retried."""
        if consumer.incarnation != incarnation or not consumer.work:
            return
        delivery = consumer.work.pop(0)
        command = Ack(QUEUE, consumer.group, delivery.sequence, delivery.token, time=0)
        op = self._submit(consumer, command, self._on_acked)
        if op is None:
            consumer.work.insert(0, delivery)
            self._later(10 * MS, self._retry_ack, consumer, incarnation)
            return
        ack: dict[str, Json] = {
            "queue": QUEUE,
            "group": consumer.group,
            "id": delivery.message.body.decode(),
            "seq": delivery.sequence,
            "token": delivery.token,
        }
        self.history.invoke(consumer.name, "ack", ack, self._now())
        self._owners[id(op)] = (consumer, consumer.incarnation)

    def _on_acked(self, op: Op) -> None:
        consumer, incarnation = self._owners.pop(id(op))
        if consumer.incarnation != incarnation:
            return
        if op.status == "ok" and isinstance(op.result, Acked):
            self.history.ok(consumer.name, "ack", {}, self._now())
        elif op.status in ("ok", "fail"):
            self.history.fail(consumer.name, "ack", {}, self._now())
        else:
            self.history.info(consumer.name, "ack", {}, self._now())
        self._next_message(consumer)

    def _next_message(self, consumer: _Consumer) -> None:
        if consumer.work:
            self._later(self._process_time(), self._process, consumer, consumer.incarnation)
        else:
            consumer.busy = False
            self._later(1, self._consume, consumer)

    # -- the drain ---------------------------------------------------------------------

    def start_drain(self) -> None:
        """Liveness phase: once producers are idle, consume until every group is empty."""
        self._later(50 * MS, self._check_drained)

    def _check_drained(self) -> None:
        if self.drained:
            return
        if self.ready and not any(producer.busy for producer in self.producers):
            leader = self.world.leader()
            if leader is not None:
                self._read_seq += 1
                self.world.read(ADMIN, leader.id, f"drain-{self._read_seq}".encode())
        self._later(100 * MS, self._check_drained)

    def _read_served(self, op: Op, node: SimNode) -> None:
        if not op.data.startswith(b"drain-") or self.drained or node.machine is None:
            return
        assert isinstance(node.machine, BrokerMachine)
        broker = node.machine.broker
        if QUEUE not in broker.list_queues():
            return
        if any(producer.busy for producer in self.producers):
            return
        if any(consumer.work for consumer in self.consumers):
            return
        stats = broker.stats(QUEUE)
        for group_stats in stats.groups:
            if (
                group_stats.backlog
                or group_stats.in_flight
                or group_stats.ready
                or group_stats.delayed
            ):
                return
        # Empty everywhere: what is left are the dead letters.
        for group in GROUPS:
            ids: list[Json] = [
                letter.message.body.decode() for letter in broker.dead_letters(QUEUE, group)
            ]
            value: dict[str, Json] = {"queue": QUEUE, "group": group, "ids": ids}
            self.history.invoke("drain", "dead_letter", value, self._now())
            self.history.ok("drain", "dead_letter", {}, self._now())
        self.drained = True
        self.world.log(f"queue drained ({len(self.history.ops)} history operations)")
