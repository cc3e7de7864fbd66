"""End to end: the client against a real one-node ``herald serve`` process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from herald import Client, Receipt, StaleLeaseError, SyncClient
from herald.errors import MessageTooLargeError, UnknownQueueError

from .conftest import arun

launcher = pytest.importorskip("herald.runtime.launcher")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cluster = launcher.LocalCluster(1, data_dir=tmp_path_factory.mktemp("e2e"), cluster="e2e")
    try:
        cluster.start(timeout=30)
        cluster.leader(timeout=30)
        yield cluster.addresses[1]
    finally:
        cluster.stop()


def test_publish_consume_ack(server: str) -> None:
    async def scenario() -> None:
        async with Client(server) as client:
            await client.create_queue("e2e-basic")
            bodies = [f"m{i}".encode() for i in range(500)]
            receipts = await asyncio.gather(*(client.publish("e2e-basic", b) for b in bodies))
            assert [r.sequence for r in receipts] == list(range(1, 501))
            assert {r.durability.value for r in receipts} == {"durable"}
            again = await client.publish("e2e-basic", b"k", key="key-1")
            dup = await client.publish("e2e-basic", b"k", key="key-1")
            assert dup.duplicate and dup.sequence == again.sequence
            got = []
            async with client.consume("e2e-basic", "g", prefetch=100) as consumer:
                async for delivery in consumer:
                    got.append(delivery.body)
                    delivery.ack()
                    if len(got) == 501:
                        break
            assert got == [*bodies, b"k"]
            stats = await client.stats("e2e-basic")
            assert stats.length == 0 and stats.counters.acked == 501
            with pytest.raises(UnknownQueueError):
                await client.publish("e2e-missing", b"x")

    arun(scenario(), timeout=30)


def test_nack_redelivery_and_dead_letters(server: str) -> None:
    async def scenario() -> None:
        async with Client(server) as client:
            await client.create_queue("e2e-dlq", max_deliveries=2, lease_duration=0.3)
            await client.publish("e2e-dlq", b"flaky")
            await client.publish("e2e-dlq", b"poison")
            async with client.consume("e2e-dlq", "g", prefetch=1) as consumer:
                first = await consumer.__anext__()
                assert first.body == b"flaky"
                await first.nack()
                again = await consumer.__anext__()
                assert (again.body, again.attempt, again.reason) == (b"flaky", 2, "nacked")
                await again.ack()
                poison = await consumer.__anext__()
                await poison.reject()
                # A lease that runs out is fenced off.
            letters = await client.dead_letters("e2e-dlq", "g")
            assert [(d.body, d.reason) for d in letters] == [(b"poison", "rejected")]
            assert await client.redrive("e2e-dlq", "g") == 1
            async with client.consume("e2e-dlq", "g", prefetch=1) as consumer:
                back = await consumer.__anext__()
                assert (back.body, back.reason) == (b"poison", "redriven")
                await asyncio.sleep(0.6)
                with pytest.raises(StaleLeaseError):
                    await back.ack()
            status = await client.status()
            assert status.role == "leader" and status.commit > 0

    arun(scenario(), timeout=30)


def test_sync_client(server: str) -> None:
    with SyncClient(server) as client:
        client.create_queue("e2e-sync")
        assert [r.sequence for r in client.publish_many("e2e-sync", [b"a", b"b"])] == [1, 2]
        with client.consume("e2e-sync", "g") as deliveries:
            got = []
            for delivery in deliveries:
                got.append(delivery.body)
                delivery.ack()
                if len(got) == 2:
                    break
        assert got == [b"a", b"b"]
        assert "e2e-sync" in client.queues()
        client.delete_queue("e2e-sync")


def test_publishes_survive_the_leader_being_killed(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    cluster = launcher.LocalCluster(3, data_dir=tmp_path_factory.mktemp("e2e3"), cluster="e2e3")
    try:
        cluster.start(timeout=30)
        leader = cluster.leader(timeout=30)

        async def scenario() -> None:
            seeds = list(cluster.addresses.values())
            async with Client(seeds, timeout=20) as client:
                await client.create_queue("e2e-failover")
                bodies = [f"m{i}".encode() for i in range(2000)]
                futures = [client.publish("e2e-failover", b) for b in bodies[:1000]]
                await asyncio.sleep(0.02)
                cluster.kill(leader)  # a crash, mid-stream
                futures += [client.publish("e2e-failover", b) for b in bodies[1000:]]
                receipts = await asyncio.gather(*futures)
                assert client.leader != cluster.addresses[leader]
                assert client.core.connects >= 2  # it followed the new leader
                # Every message exactly once, in order.
                assert sorted(r.sequence for r in receipts) == list(range(1, 2001))
                got = []
                async with client.consume("e2e-failover", "g", prefetch=500) as consumer:
                    async for delivery in consumer:
                        got.append(delivery.body)
                        delivery.ack()
                        if len(got) == 2000:
                            break
                assert got == bodies
                assert (await client.stats("e2e-failover")).counters.published == 2000

        arun(scenario(), timeout=60)
    finally:
        cluster.stop()


def test_the_reported_pipelined_refusal_on_a_real_server(server: str) -> None:
    """Regression, as reported: a refused publish in the middle of a pipeline. Every
    receipt must name a message that is stored, and every stored message its own."""

    async def scenario() -> None:
        async with Client(server) as admin:
            await admin.create_queue("e2e-refusal", max_message_bytes=100)
        async with Client(server) as client:
            results = await asyncio.gather(
                client.publish("e2e-refusal", b"x" * 500),
                client.publish("e2e-refusal", b"m2"),
                client.publish("e2e-refusal", b"m3"),
                return_exceptions=True,
            )
            m4 = await client.publish("e2e-refusal", b"m4")
            assert isinstance(results[0], MessageTooLargeError)
            receipts = [*results[1:], m4]
            assert all(isinstance(r, Receipt) for r in receipts), receipts
            peeked = await client.peek("e2e-refusal", limit=10)
            stored = {m.sequence: m.body for m in peeked}
            assert sorted(stored.values()) == [b"m2", b"m3", b"m4"]
            for body, receipt in zip((b"m2", b"m3", b"m4"), receipts, strict=True):
                assert isinstance(receipt, Receipt)
                assert stored[receipt.sequence] == body

    arun(scenario(), timeout=30)


def test_a_20_mb_publish_is_refused_at_once_by_the_client(server: str) -> None:
    """Regression: the client sent it, the server refused the frame and closed, and
    the client reconnected and resent it ~440 times in 10 s, then said "unknown"."""

    async def scenario() -> None:
        async with Client(server) as client:
            await client.create_queue("e2e-huge")
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(MessageTooLargeError, match="frame"):
                await client.publish("e2e-huge", b"x" * (20 << 20))
            assert client.core.connects == 1
            assert loop.time() - started < 5  # refused, not retried until a timeout
            receipt = await client.publish("e2e-huge", b"small")
            assert receipt.sequence == 1

    arun(scenario(), timeout=30)


def test_looking_costs_no_attempt_on_a_real_server(server: str) -> None:
    """Regression: `herald consume --no-ack` leased messages to look at them, and with
    max_deliveries 1 a single look dead-lettered them."""

    async def scenario() -> None:
        async with Client(server) as client:
            await client.create_queue("e2e-look", max_deliveries=1)
            async with client.consume("e2e-look", "g", prefetch=1, wait=0):
                pass  # the group exists (the queue is empty: nothing leased)
            await client.publish("e2e-look", b"precious")
            for _ in range(3):
                (peeked,) = await client.peek("e2e-look", "g")
                assert peeked.body == b"precious" and peeked.attempts == 0
                assert peeked.state == "backlog"
            stats = await client.stats("e2e-look")
            assert stats.dead_letters == 0
            async with client.consume("e2e-look", "g", prefetch=1) as consumer:
                delivery = await consumer.get(timeout=10)
                assert delivery is not None and delivery.attempt == 1
                await delivery.ack()

    arun(scenario(), timeout=30)
