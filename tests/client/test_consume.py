"""Consuming: prefetch, batched acks, nack, leases and fencing, auto-extend, modes."""

from __future__ import annotations

import asyncio

import pytest

from herald import Client, StaleLeaseError, UsageError
from herald.client import Consumer, Delivery
from herald.errors import UnknownQueueError

from .conftest import arun
from .fakeserver import FakeServer


async def _setup(
    messages: int = 0, **queue_options: object
) -> tuple[FakeServer, Client, list[bytes]]:
    server = FakeServer()
    address = await server.start()
    client = await Client.connect(address)
    await client.create_queue("q", **queue_options)  # type: ignore[arg-type]
    bodies = [f"m{i}".encode() for i in range(messages)]
    await asyncio.gather(*(client.publish("q", b) for b in bodies))
    return server, client, bodies


async def _stop(server: FakeServer, client: Client) -> None:
    await client.close()
    await server.stop()


def test_prefetch_window_and_batched_acks() -> None:
    async def scenario() -> None:
        server, client, bodies = await _setup(300)
        try:
            got: list[bytes] = []
            frames_before = server.frames
            async with client.consume("q", "g", prefetch=100) as consumer:
                async for delivery in consumer:
                    assert consumer.held <= 100
                    got.append(delivery.body)
                    delivery.ack()
                    if len(got) == 300:
                        break
            assert got == bodies
            assert server.requests["Deliver"] <= 12  # ~100 at a time, not one by one
            assert server.requests["Ack"] == 300
            assert server.frames - frames_before < 40  # acks travel together
            stats = server.broker.stats("q")
            assert stats.counters.acked == 300
            assert stats.length == 0
            assert stats.groups[0].consumers == ()  # it left the group
        finally:
            await _stop(server, client)

    arun(scenario())


def test_delivery_fields() -> None:
    async def scenario() -> None:
        server, client, _ = await _setup()
        try:
            await client.publish("q", b"body", headers={"h": "v"}, key="id-1")
            async with client.consume("q", "g") as consumer:
                delivery = await consumer.__anext__()
                assert isinstance(delivery, Delivery)
                assert (delivery.queue, delivery.group) == ("q", "g")
                assert delivery.body == b"body"
                assert delivery.headers == {"h": "v"}
                assert delivery.message_id == "id-1"
                assert (delivery.sequence, delivery.attempt) == (1, 1)
                assert not delivery.redelivery and delivery.reason is None
                assert delivery.token > 0 and delivery.deadline > delivery.published_at
                assert "sequence=1" in repr(delivery)
                await delivery.ack()
                assert delivery.settled
                with pytest.raises(UsageError, match="already settled"):
                    delivery.ack()
        finally:
            await _stop(server, client)

    arun(scenario())


def test_nack_brings_the_message_back_with_its_attempt_and_reason() -> None:
    async def scenario() -> None:
        server, client, _ = await _setup(1)
        try:
            async with client.consume("q", "g", prefetch=1) as consumer:
                first = await consumer.__anext__()
                dead = await first.nack()
                assert dead is False
                again = await consumer.__anext__()
                assert again.sequence == first.sequence
                assert (again.attempt, again.redelivery, again.reason) == (2, True, "nacked")
                assert again.token != first.token
                await again.nack(delay=0.2)
                late = await asyncio.wait_for(consumer.__anext__(), 2)
                assert late.attempt == 3
                await late.ack()
        finally:
            await _stop(server, client)

    arun(scenario())


def test_an_expired_lease_is_fenced_off() -> None:
    async def scenario() -> None:
        server, client, _ = await _setup(1)
        try:
            async with client.consume("q", "g", prefetch=1, lease=0.1) as consumer:
                first = await consumer.__anext__()
                await asyncio.sleep(0.3)  # the lease ends; the message comes back
                with pytest.raises(StaleLeaseError) as caught:
                    await first.ack()
                assert caught.value.sequence == first.sequence
                again = await consumer.__anext__()
                assert (again.attempt, again.reason) == (2, "expired")
                await again.ack()
        finally:
            await _stop(server, client)

    arun(scenario())


def test_auto_extend_holds_the_lease_through_long_work() -> None:
    async def scenario() -> None:
        server, client, _ = await _setup(1)
        try:
            async with client.consume(
                "q", "g", prefetch=1, lease=0.2, auto_extend=True
            ) as consumer:
                delivery = await consumer.__anext__()
                first_deadline = delivery.deadline
                await asyncio.sleep(0.7)  # three and a half leases of "work"
                await delivery.ack()
                assert delivery.deadline > first_deadline
                assert server.requests["Extend"] >= 2
                extends = server.requests["Extend"]
                await asyncio.sleep(0.3)
                assert server.requests["Extend"] == extends  # settled: no more extends
            stats = server.broker.stats("q")
            assert stats.counters.redelivered_expired == 0
            assert stats.counters.acked == 1
        finally:
            await _stop(server, client)

    arun(scenario())


def test_extend_by_hand() -> None:
    async def scenario() -> None:
        server, client, _ = await _setup(1)
        try:
            async with client.consume("q", "g", lease=0.2) as consumer:
                delivery = await consumer.__anext__()
                deadline = await delivery.extend(5)
                assert deadline == delivery.deadline
                await asyncio.sleep(0.3)
                await delivery.ack()  # still ours
        finally:
            await _stop(server, client)

    arun(scenario())


def test_at_most_once_settles_on_delivery_and_acks_are_no_ops() -> None:
    async def scenario() -> None:
        server, client, bodies = await _setup(5)
        try:
            async with client.consume("q", "g", mode="at_most_once") as consumer:
                got = []
                for _ in range(5):
                    delivery = await consumer.__anext__()
                    assert delivery.token == 0 and delivery.settled
                    assert await delivery.ack() is None
                    assert await delivery.nack() is False
                    assert await delivery.extend() == 0
                    got.append(delivery.body)
            assert got == bodies
            assert server.requests["Ack"] == server.requests["Nack"] == 0
            stats = server.broker.stats("q")
            assert stats.length == 0 and stats.counters.delivered == 5
        finally:
            await _stop(server, client)

    arun(scenario())


def test_reject_dead_letters_and_redrive_brings_back() -> None:
    async def scenario() -> None:
        server, client, _ = await _setup(2, max_deliveries=2)
        try:
            async with client.consume("q", "g", prefetch=1) as consumer:
                bad = await consumer.__anext__()
                await bad.reject()
                flaky = await consumer.__anext__()
                await flaky.nack()
                flaky = await consumer.__anext__()
                assert await flaky.nack() is True  # deliveries used up
            letters = await client.dead_letters("q", "g")
            assert [(d.sequence, d.reason) for d in letters] == [
                (1, "rejected"),
                (2, "max_deliveries"),
            ]
            assert [h["outcome"] for h in letters[1].history] == ["nacked", "nacked"]
            assert await client.redrive("q", "g", [2]) == 1
            async with client.consume("q", "g") as consumer:
                back = await consumer.__anext__()
                assert (back.sequence, back.attempt, back.reason) == (2, 3, "redriven")
                await back.ack()
            assert [d.sequence for d in await client.dead_letters("q")] == [1]
        finally:
            await _stop(server, client)

    arun(scenario())


def test_closing_a_consumer_gives_its_leases_back_at_once() -> None:
    async def scenario() -> None:
        server, client, _ = await _setup(10)
        try:
            consumer = client.consume("q", "g", prefetch=10)
            first = await consumer.__anext__()
            await asyncio.sleep(0.05)
            assert server.broker.stats("q").groups[0].in_flight == 10
            await consumer.close()
            await consumer.close()  # idempotent
            group = server.broker.stats("q").groups[0]
            assert (group.in_flight, group.ready, group.consumers) == (0, 10, ())
            with pytest.raises(StopAsyncIteration):
                await consumer.__anext__()
            with pytest.raises(StaleLeaseError):
                await first.ack()
        finally:
            await _stop(server, client)

    arun(scenario())


def test_two_consumers_of_a_group_share_and_two_groups_each_get_everything() -> None:
    async def scenario() -> None:
        server, client, bodies = await _setup(40)
        try:
            a = client.consume("q", "workers", prefetch=5)
            b = client.consume("q", "workers", prefetch=5)
            audit = client.consume("q", "audit", prefetch=50)
            seen_workers: list[bytes] = []
            seen_audit: list[bytes] = []

            async def drain(consumer: Consumer, sink: list[bytes], until: int) -> None:
                while len(sink) < until:
                    delivery = await consumer.get(0.3)
                    if delivery is None:
                        return  # the others took the rest
                    sink.append(delivery.body)
                    delivery.ack()

            await asyncio.gather(
                drain(a, seen_workers, 40),
                drain(b, seen_workers, 40),
                drain(audit, seen_audit, 40),
            )
            assert sorted(seen_workers) == sorted(bodies)
            assert seen_audit == bodies
            for consumer in (a, b, audit):
                await consumer.close()
        finally:
            await _stop(server, client)

    arun(scenario())


def test_the_consumer_rides_out_lost_connections() -> None:
    async def scenario() -> None:
        server, client, bodies = await _setup(60)
        try:
            got: set[bytes] = set()
            async with client.consume("q", "g", prefetch=10, lease=0.3) as consumer:
                async for delivery in consumer:
                    got.add(delivery.body)
                    if len(got) % 15 == 0:
                        server.kill_connections()
                    delivery.ack().add_done_callback(lambda f: f.exception())
                    if len(got) == 60:
                        break
            assert got == set(bodies)
        finally:
            await _stop(server, client)

    arun(scenario())


def test_an_unknown_queue_is_raised_by_the_iterator_until_it_exists() -> None:
    async def scenario() -> None:
        server, client, _ = await _setup()
        try:
            consumer = client.consume("nope", "g")
            with pytest.raises(UnknownQueueError):
                await consumer.__anext__()
            # Once the queue exists, the same consumer joins and goes on.
            await client.create_queue("nope")
            await client.publish("nope", b"here")
            delivery = await consumer.__anext__()
            assert delivery.body == b"here"
            await consumer.close()
        finally:
            await _stop(server, client)

    arun(scenario())


def test_get_with_a_timeout_returns_none_when_nothing_comes() -> None:
    async def scenario() -> None:
        server, client, _ = await _setup()
        try:
            async with client.consume("q", "g", wait=0.05) as consumer:
                assert await consumer.get(0.2) is None
                await client.publish("q", b"late")
                delivery = await consumer.get(2)
                assert delivery is not None and delivery.body == b"late"
                await delivery.ack()
        finally:
            await _stop(server, client)

    arun(scenario())


def test_bad_consume_arguments() -> None:
    async def scenario() -> None:
        server, client, _ = await _setup()
        try:
            with pytest.raises(UsageError):
                client.consume("q", "g", mode="exactly_once")  # type: ignore[arg-type]
            with pytest.raises(UsageError):
                client.consume("q", "g", prefetch=0)
            with pytest.raises(UsageError):
                client.consume("q", "")
        finally:
            await _stop(server, client)

    arun(scenario())
