"""A small driver for broker tests: every command goes through the codec and ``apply``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, TypeVar

from herald.broker import (
    SECOND,
    Ack,
    Batch,
    BatchResult,
    Broker,
    Command,
    CreateQueue,
    Deliver,
    Deliveries,
    Delivery,
    DeliveryMode,
    Message,
    Publish,
    QueueOptions,
    Result,
    Subscribe,
    Tick,
    encode,
)
from herald.broker.state import Producer, Queue
from herald.errors import BrokerError, CompactedError
from herald.raft import Entry

T = TypeVar("T")


class LeavesRefusedNumbersFree(Broker):
    """The broker as it was before refusals consumed producer numbers (a planted bug):
    a refused publish leaves no trace, so its number is taken again later."""

    def _record_refusal(
        self,
        queue: Queue,
        name: str,
        producer: Producer | None,
        number: int,
        refusal: BrokerError,
    ) -> None:
        pass


class AdvancesTheClockToTheBatchTime(Broker):
    """The broker as it was before a Batch stopped moving the clock (a planted bug)."""

    def _batch(self, command: Batch) -> BatchResult:
        self._advance_clock(command.time)
        return super()._batch(command)


def without_producers(broker: Broker) -> bytes:
    """A snapshot of the broker with every producer table and its counter left out."""
    twin = Broker()
    twin.restore(broker.snapshot(), broker.applied_index)
    for queue in twin._state.queues.values():
        queue.producers.clear()
        queue.counters.duplicates_by_producer = 0
    return twin.snapshot()


def without_positions(broker: Broker) -> tuple[bytes, list[tuple[str, Message]]]:
    """The state with every message's place in the log left out, and the messages
    themselves (read back): what two brokers that applied the same commands in
    different entries share."""
    twin = Broker()
    twin.restore(broker.snapshot(), broker.applied_index)
    messages: list[tuple[str, Message]] = []
    for queue in twin._state.queues.values():
        index = queue.messages
        records = [(sequence, index.record(sequence)) for sequence in index.sequences()]
        index.clear()
        for sequence, (_entry, _offset, _length, size, time, refs) in records:
            messages.append((queue.name, broker.message(queue.name, sequence)))
            index.add(sequence, (1, 0, 0, size, time, refs))
        for key, letter in list(queue.dead_letters.items()):
            messages.append((queue.name, letter.message))
            queue.dead_letters[key] = replace(letter, stored=letter.stored.moved(1, 0, 0))
    return twin.snapshot(), messages


class LoggedBroker(Broker):
    """A broker whose log is the entries it was given, as a node's log holds them:
    message bodies are read back from there."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[int, bytes] = {}
        self.reader = self.entries.__getitem__

    def apply(self, entry: Entry) -> Result:
        self.entries[entry.index] = entry.data
        return super().apply(entry)


class Driver:
    """Applies commands in log order at a clock the test moves by hand."""

    def __init__(
        self, broker: Broker | None = None, *, log: dict[int, bytes] | None = None
    ) -> None:
        self.broker = broker or Broker()
        self.index = self.broker.applied_index
        self.time = max(self.broker.now, 1_000)
        self.log: list[bytes] = []
        #: The entries by index, where message bodies are read from; a replica
        #: restored from another driver's snapshot shares that driver's.
        self.entries: dict[int, bytes] = log if log is not None else {}
        if self.broker.reader is None:
            self.broker.reader = self.read

    def read(self, index: int) -> bytes:
        try:
            return self.entries[index]
        except KeyError:
            raise CompactedError(f"entry {index} is not in the test's log") from None

    def run(self, command: Command) -> Result:
        """Encode, apply as the next entry, check the invariants; return the result."""
        data = encode(command)
        self.log.append(data)
        self.index += 1
        self.entries[self.index] = data
        result = self.broker.apply(Entry(1, self.index, data))
        self.broker.check_invariants()
        return result

    def do(self, command_type: type[Command], *args: Any, **kwargs: Any) -> Result:
        """Build a command stamped with the driver's clock and run it."""
        kwargs.setdefault("time", self.time)
        return self.run(command_type(*args, **kwargs))

    def ok(self, expected: type[T], command_type: type[Command], *args: Any, **kwargs: Any) -> T:
        result = self.do(command_type, *args, **kwargs)
        assert isinstance(result, expected), result
        return result

    def refuses_publish(self, error: type[BrokerError], *args: Any, **kwargs: Any) -> BrokerError:
        """The producer's publish is refused with ``error``, which uses up its number:
        beyond the clock, only the producer's record changes."""
        kwargs.setdefault("time", self.time)
        command = Publish(*args, **kwargs)
        assert command.producer is not None
        twin = Broker()
        twin.restore(self.broker.snapshot(), self.index)
        twin.execute(Tick(time=command.time))
        result = self.run(command)
        assert isinstance(result, error), result
        assert without_producers(self.broker) == without_producers(twin)
        producer = self.broker._state.queues[command.queue].producers[command.producer]
        assert producer.last_sequence >= command.producer_sequence
        return result

    def fails(
        self, error: type[BrokerError], command_type: type[Command], *args: Any, **kwargs: Any
    ) -> BrokerError:
        """The command is refused with ``error`` and changes nothing but the clock."""
        kwargs.setdefault("time", self.time)
        command = command_type(*args, **kwargs)
        twin = Broker()
        twin.restore(self.broker.snapshot(), self.index)
        twin.execute(Tick(time=command.time))
        result = self.run(command)
        assert isinstance(result, error), result
        assert self.broker.snapshot() == twin.snapshot(), "a refused command changed the state"
        return result

    def advance(self, duration: int) -> None:
        """Move the clock and apply a Tick, as the leader's periodic proposal would."""
        self.time += duration
        self.do(Tick)

    # -- shorthands -----------------------------------------------------------------------

    def queue(self, name: str = "q", **options: Any) -> None:
        self.ok(object, CreateQueue, name, QueueOptions(**options))

    def publish(self, queue: str = "q", body: bytes = b"m", **kwargs: Any) -> int:
        from herald.broker import Receipt

        receipt = self.ok(Receipt, Publish, queue, body, **kwargs)
        return receipt.sequence

    def subscribe(
        self,
        consumer: str = "c1",
        group: str = "g",
        queue: str = "q",
        mode: DeliveryMode = DeliveryMode.AT_LEAST_ONCE,
        session_timeout: int = 60 * SECOND,
    ) -> None:
        self.ok(object, Subscribe, queue, group, consumer, mode, session_timeout)

    def deliver(
        self,
        consumer: str = "c1",
        group: str = "g",
        queue: str = "q",
        n: int = 1,
        lease: int = 0,
        time: int | None = None,
    ) -> list[Delivery]:
        stamp = self.time if time is None else time
        result = self.ok(Deliveries, Deliver, queue, group, consumer, n, lease, time=stamp)
        return list(result.deliveries)

    def ack(self, delivery: Delivery) -> Result:
        return self.do(Ack, delivery.queue, delivery.group, delivery.sequence, delivery.token)


def tokens(deliveries: list[Delivery]) -> list[int]:
    return [d.token for d in deliveries]


def sequences(deliveries: list[Delivery]) -> list[int]:
    return [d.sequence for d in deliveries]


def restamp(command: Command, time: int) -> Command:
    return replace(command, time=time)
