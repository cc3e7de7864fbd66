"""Queue administration and reads: options in seconds, typed results, typed errors."""

from __future__ import annotations

import pytest

from herald import Client, ConnectionClosedError
from herald.client import QueueStats
from herald.errors import (
    InvalidOptionsError,
    OutcomeUnknownError,
    QueueExistsError,
    UnknownQueueError,
)

from .conftest import arun
from .fakeserver import FakeServer


async def _client() -> tuple[FakeServer, Client]:
    server = FakeServer()
    address = await server.start()
    return server, await Client.connect(address)


def test_create_queue_takes_seconds_and_reports_creation() -> None:
    async def scenario() -> None:
        server, client = await _client()
        try:
            created = await client.create_queue(
                "jobs",
                lease_duration=1.5,
                dedup_ttl=None,
                max_length=100,
                max_deliveries=3,
                producer_ttl=3600,
            )
            assert created is True
            options = server.broker.queue_options("jobs")
            assert options.lease_duration == 1_500_000
            assert options.dedup_ttl is None
            assert options.producer_ttl == 3_600_000_000
            assert (options.max_length, options.max_deliveries) == (100, 3)
            same = await client.create_queue(
                "jobs",
                lease_duration=1.5,
                dedup_ttl=None,
                max_length=100,
                max_deliveries=3,
                producer_ttl=3600,
            )
            assert same is False
            with pytest.raises(QueueExistsError) as caught:
                await client.create_queue("jobs")
            assert caught.value.queue == "jobs"
        finally:
            await client.close()
            await server.stop()

    arun(scenario())


def test_bad_options_are_refused_before_sending() -> None:
    async def scenario() -> None:
        server, client = await _client()
        try:
            with pytest.raises(InvalidOptionsError):
                await client.create_queue("q", max_deliveries=0)
            with pytest.raises(InvalidOptionsError):
                await client.create_queue("q", producer_window=5000)
            assert server.requests["CreateQueue"] == 0
        finally:
            await client.close()
            await server.stop()

    arun(scenario())


def test_reads_and_administration() -> None:
    async def scenario() -> None:
        server, client = await _client()
        try:
            await client.create_queue("b")
            await client.create_queue("a")
            assert await client.queues() == ["a", "b"]
            for body in (b"1", b"22", b"333"):
                await client.publish("a", body)
            stats = await client.stats("a")
            assert isinstance(stats, QueueStats)
            assert (stats.queue, stats.length, stats.bytes, stats.next_sequence) == ("a", 3, 6, 4)
            assert stats.counters.published == 3
            assert stats.options.lease_duration == 30_000_000
            async with client.consume("a", "g") as consumer:
                delivery = await consumer.__anext__()
                await delivery.ack()
            assert [g.name for g in (await client.stats("a")).groups] == ["g"]
            await client.delete_group("a", "g")
            assert await client.purge("a") == 2  # the acked one is gone already
            assert await client.dead_letters("a") == []
            await client.delete_queue("b")
            assert await client.queues() == ["a"]
            with pytest.raises(UnknownQueueError):
                await client.stats("b")
            with pytest.raises(UnknownQueueError):
                await client.delete_queue("b")
            status = await client.status()
            assert status.role == "leader" and status.leader == status.node == 1
            assert status.peers[0].address == server.address
        finally:
            await client.close()
            await server.stop()

    arun(scenario())


def test_non_idempotent_administration_is_not_retried() -> None:
    async def scenario() -> None:
        server, client = await _client()
        try:
            await client.create_queue("q")
            await client.publish("q", b"m")
            server.drop_replies = 1
            with pytest.raises(ConnectionClosedError, match="unknown"):
                await client.purge("q")
            assert server.requests["PurgeQueue"] == 1
            # Reads are retried transparently.
            server.drop_replies = 1
            assert (await client.stats("q")).length == 0
            assert server.requests["Stats"] == 2
        finally:
            await client.close()
            await server.stop()

    arun(scenario())


def test_answers_that_say_not_carried_out_are_resent_even_for_purge() -> None:
    async def scenario() -> None:
        server, client = await _client()
        try:
            await client.create_queue("q")
            await client.publish("q", b"m")
            server.answer_next = [("ProposalLostError", False), ("ShuttingDownError", False)]
            assert await client.purge("q") == 1
            assert server.requests["PurgeQueue"] == 3
            server.answer_next = [("OverloadedError", False)]
            assert await client.queues() == ["q"]
        finally:
            await client.close()
            await server.stop()

    arun(scenario())


def test_an_unknown_outcome_is_retried_when_safe_and_reported_when_not() -> None:
    async def scenario() -> None:
        server, client = await _client()
        try:
            await client.create_queue("q")
            server.answer_next = [("OutcomeUnknownError", True)]
            receipt = await client.publish("q", b"m")
            assert receipt.duplicate and server.messages("q") == [b"m"]
            server.answer_next = [("OutcomeUnknownError", True)]
            with pytest.raises(OutcomeUnknownError):
                await client.purge("q")
            assert server.messages("q") == []
        finally:
            await client.close()
            await server.stop()

    arun(scenario())
