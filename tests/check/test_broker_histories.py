"""Histories recorded against the real broker pass the checker; planted broker bugs fail it.

A small, deterministic, single-threaded workload: two idempotent producers whose
responses are sometimes lost (they retry), and one consumer group per delivery
mode whose consumers sometimes crash (a delivery's answer never arrives),
process slowly (the lease expires) or lose their ack. Then a drain. This is
the shape the simulator's queue workload will have, minus Raft and the network.
"""

from __future__ import annotations

import random

import pytest

from herald.broker import (
    SECOND,
    Ack,
    Acked,
    AckedMany,
    AckMany,
    Broker,
    Command,
    CreateQueue,
    Deliver,
    Deliveries,
    Delivery,
    DeliveryMode,
    Publish,
    QueueOptions,
    Receipt,
    Result,
    Subscribe,
    Tick,
    encode,
)
from herald.broker.machine import Broker as BrokerBase
from herald.check.history import Json, Op, Recorder
from herald.check.queue import AT_LEAST_ONCE, AT_MOST_ONCE, EFFECTIVELY_ONCE, check_queue
from herald.check.verdict import Verdict, judge
from herald.errors import BrokerError
from herald.raft import Entry

GROUPS = {
    "amo": (AT_MOST_ONCE, DeliveryMode.AT_MOST_ONCE),
    "alo": (AT_LEAST_ONCE, DeliveryMode.AT_LEAST_ONCE),
    "eo": (EFFECTIVELY_ONCE, DeliveryMode.AT_LEAST_ONCE),
}


class Workload:
    def __init__(self, broker: Broker, seed: int, messages: int = 60) -> None:
        self.broker = broker
        self.rng = random.Random(seed)
        self.history = Recorder()
        self.index = 0
        self.time = 1_000
        self.messages = messages
        self.inbox: set[str] = set()
        self.log: dict[int, bytes] = {}  # the entries, where bodies are read back from
        broker.reader = self.log.__getitem__

    def apply(self, command: Command) -> Result:
        self.index += 1
        self.time += self.rng.randint(1, 50_000)
        data = self.log[self.index] = encode(command)
        return self.broker.apply(Entry(1, self.index, data))

    def stamp(self) -> int:
        return self.time + 1

    def run(self) -> list[Op]:
        self.apply(CreateQueue("q", QueueOptions(lease_duration=SECOND, max_deliveries=20), time=1))
        for group, (_, mode) in GROUPS.items():
            self.apply(Subscribe("q", group, f"{group}-1", mode, 3600 * SECOND, time=1))
        pending = [(p, n) for n in range(1, self.messages // 2 + 1) for p in (1, 2)]
        while pending or self.rng.random() < 0.5:
            if pending and self.rng.random() < 0.5:
                process, number = pending.pop(0)
                if not self.publish(process, number):
                    pending.insert(0, (process, number))  # retry, same producer number
            else:
                self.consume(self.rng.choice(list(GROUPS)), faults=True)
        self.time += 10 * SECOND
        self.apply(Tick(time=self.stamp()))
        for group in GROUPS:  # drain, no faults
            while self.consume(group, faults=False):
                pass
        return self.history.ops

    def publish(self, process: int, number: int) -> bool:
        message_id = f"p{process}-{number}"
        self.history.invoke(process, "publish", {"queue": "q", "id": message_id}, self.time)
        result = self.apply(
            Publish(
                "q",
                message_id.encode(),
                producer=f"producer-{process}",
                producer_sequence=number,
                time=self.stamp(),
            )
        )
        if self.rng.random() < 0.15:  # the response is lost: unknown to the producer
            self.history.info(process, "publish", {}, self.time)
            return False
        assert isinstance(result, Receipt), result
        value: dict[str, Json] = {"seq": result.sequence, "duplicate": result.duplicate}
        self.history.ok(process, "publish", value, self.time)
        return True

    def consume(self, group: str, faults: bool) -> bool:
        mode, _ = GROUPS[group]
        process = f"{group}-1"
        base: dict[str, Json] = {"queue": "q", "group": group, "mode": mode}
        self.history.invoke(process, "deliver", base, self.time)
        result = self.apply(Deliver("q", group, process, 3, time=self.stamp()))
        assert isinstance(result, Deliveries), result
        if faults and self.rng.random() < 0.1:  # crashed before the answer arrived
            self.history.info(process, "deliver", {}, self.time)
            return True
        items: list[Json] = [
            {
                "id": d.message.body.decode(),
                "seq": d.sequence,
                "attempt": d.attempt,
                "redelivery": d.redelivery,
                "token": d.token,
            }
            for d in result.deliveries
        ]
        self.history.ok(process, "deliver", {"messages": items}, self.time)
        for delivery in result.deliveries:
            self.process(group, mode, process, delivery, faults)
        return bool(result.deliveries)

    def process(
        self, group: str, mode: str, process: str, delivery: Delivery, faults: bool
    ) -> None:
        message_id = delivery.message.body.decode()
        if mode == AT_MOST_ONCE:
            return
        if faults and self.rng.random() < 0.1:  # too slow: the lease will expire
            return
        if mode == EFFECTIVELY_ONCE and message_id not in self.inbox:
            effect: dict[str, Json] = {"queue": "q", "group": group, "id": message_id, "mode": mode}
            self.history.invoke(process, "effect", effect, self.time)
            self.inbox.add(message_id)  # "done" and the effect, in one transaction
            self.history.ok(process, "effect", {}, self.time)
        if faults and self.rng.random() < 0.1:  # crashed before acking
            return
        ack: dict[str, Json] = {"queue": "q", "group": group, "id": message_id}
        ack["seq"] = delivery.sequence
        self.history.invoke(process, "ack", ack, self.time)
        result = self.apply(Ack("q", group, delivery.sequence, delivery.token, time=self.stamp()))
        self.history.record(process, "ok" if isinstance(result, Acked) else "fail", "ack", {})


def verdict_of(broker: Broker, seed: int) -> tuple[Verdict, dict[str, int]]:
    history = Workload(broker, seed).run()
    result = check_queue(history)
    return judge(result.by_mode, producer_dedup=True), dict(result.counts)


@pytest.mark.parametrize("seed", range(6))
def test_the_broker_keeps_its_guarantees(seed: int) -> None:
    verdict, counts = verdict_of(Broker(), seed)
    assert verdict.ok, verdict.describe()
    assert counts["unexpected"] == counts["reordered"] == 0


def test_the_phenomena_of_each_mode_show_up() -> None:
    phenomena = set()
    for seed in range(6):
        verdict, _ = verdict_of(Broker(), seed)
        phenomena.update(
            text.split(" (")[0].split(": ")[0] + ":" + text.split()[2] for text in verdict.phenomena
        )
    assert "at_most_once:lost" in phenomena  # crashes lose at-most-once messages
    assert "at_least_once:duplicated" in phenomena  # and duplicate at-least-once ones
    assert "effectively_once:duplicated" in phenomena  # which the inbox absorbs


# -- planted broker bugs ----------------------------------------------------------------------


class ForgetsAcks(BrokerBase):
    """Answers acks but never settles: the lease expires and the message comes back."""

    def _ack(self, command: Ack) -> Acked:  # type: ignore[override]
        queue = self._queue(command.queue)
        group = self._group(queue, command.group)
        self._held(queue, group, command.sequence, command.token)
        return Acked(queue.name, group.name, command.sequence)

    def _ack_many(self, command: AckMany) -> AckedMany:  # type: ignore[override]
        queue = self._queue(command.queue)
        group = self._group(queue, command.group)
        outcomes: list[BrokerError | None] = []
        for sequence, token in zip(command.sequences, command.tokens, strict=True):
            try:
                self._held(queue, group, sequence, token)
                outcomes.append(None)
            except BrokerError as error:
                outcomes.append(error)
        return AckedMany(queue.name, group.name, tuple(outcomes))


class LeasesAtMostOnce(BrokerBase):
    """Treats at-most-once consumers like at-least-once ones (leases, redeliveries)."""

    def _deliver(self, command: Deliver) -> Deliveries:
        queue = self._queue(command.queue)
        group = self._group(queue, command.group)
        consumer = self._consumer(queue, group, command.consumer)
        saved = consumer.mode
        consumer.mode = DeliveryMode.AT_LEAST_ONCE
        try:
            return super()._deliver(command)
        finally:
            consumer.mode = saved


class DropsEveryTenthPublish(BrokerBase):
    """Confirms every publish but stores only nine in ten."""

    def _publish(self, command: Publish) -> Receipt:
        receipt = super()._publish(command)
        # The stored sequence from the queue, not the receipt: a follower's
        # receipts are placeholders (Broker.apply(answered=False)).
        queue = self._queue(command.queue)
        sequence = queue.next_sequence - 1
        if not receipt.duplicate and sequence % 10 == 0:
            queue.messages.remove(sequence)
            for group in queue.groups.values():
                group.backlog.pop()
        return receipt


class ForgetsProducers(BrokerBase):
    """Never recognises a producer retry: every retry is stored again."""

    def _publish(self, command: Publish) -> Receipt:
        queue = self._queue(command.queue)
        queue.producers.pop(command.producer or "", None)
        return super()._publish(command)


@pytest.mark.parametrize(
    ("broker", "failure"),
    [
        (ForgetsAcks, "redelivered_after_ack"),
        (LeasesAtMostOnce, "at_most_once: "),
        (DropsEveryTenthPublish, " lost"),
        (ForgetsProducers, " copy"),
    ],
)
def test_planted_broker_bugs_are_caught(broker: type[Broker], failure: str) -> None:
    caught = False
    for seed in range(6):
        verdict, _ = verdict_of(broker(), seed)
        caught = caught or any(failure in text for text in verdict.failures)
    assert caught
