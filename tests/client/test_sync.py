"""SyncClient: the same API, blocking, on a loop in a background thread."""

from __future__ import annotations

import threading

import pytest

from herald import SyncClient
from herald.client import UnreachableError
from herald.errors import StaleLeaseError, UnknownQueueError

from .conftest import ThreadedFake


def test_publish_consume_ack(threaded_fake: ThreadedFake) -> None:
    with SyncClient(threaded_fake.address) as client:
        assert client.create_queue("jobs", lease_duration=10) is True
        receipt = client.publish("jobs", b"hello", headers={"h": "1"}, key="k")
        assert (receipt.sequence, receipt.duplicate) == (1, False)
        receipts = client.publish_many("jobs", [b"a", b"b", b"c"])
        assert [r.sequence for r in receipts] == [2, 3, 4]
        assert client.queues() == ["jobs"]
        assert client.stats("jobs").length == 4
        with client.consume("jobs", "g", prefetch=2) as deliveries:
            got = []
            for delivery in deliveries:
                got.append(delivery.body)
                assert delivery.queue == "jobs" and delivery.group == "g"
                if delivery.body == b"b" and delivery.attempt == 1:
                    assert delivery.nack() is False
                    continue
                assert delivery.extend(5) > 0
                delivery.ack()
                assert delivery.settled
                if len(got) == 5:
                    break
        assert sorted(got) == [b"a", b"b", b"b", b"c", b"hello"]
        assert client.stats("jobs").length == 0
        status = client.status()
        assert status.leader == 1
    # closed: the background thread is gone
    assert not any(t.name == "herald-client" and t.is_alive() for t in threading.enumerate())


def test_errors_propagate_and_get_times_out(threaded_fake: ThreadedFake) -> None:
    client = SyncClient.connect(threaded_fake.address, timeout=2)
    try:
        with pytest.raises(UnknownQueueError):
            client.publish("missing", b"x")
        client.create_queue("q", lease_duration=0.2)
        client.publish("q", b"x")
        consumer = client.consume("q", "g", wait=0.05, prefetch=1)
        delivery = consumer.get(2)
        assert delivery is not None
        threaded_fake.call(_sleep(0.4))  # the lease runs out
        with pytest.raises(StaleLeaseError):
            delivery.ack()
        again = consumer.get(2)
        assert again is not None and again.attempt == 2 and again.reason == "expired"
        again.reject()
        assert [d.sequence for d in client.dead_letters("q")] == [1]
        assert client.redrive("q", "g") == 1
        consumer.close()
        assert client.purge("q") == 1
        client.delete_queue("q")
    finally:
        client.close()
        client.close()  # idempotent


def test_unreachable_raises_from_the_constructor() -> None:
    with pytest.raises(UnreachableError):
        SyncClient("127.0.0.1:1", connect_timeout=0.2)


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
