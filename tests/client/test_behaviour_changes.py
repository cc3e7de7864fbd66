"""Regression tests, through the public API, of the client's corrected behaviours.

1. A sent publish is never renumbered (the pipelined-refusal bug).
2. Requests are sized against the server's frame limit before they are sent,
   and a frame the server refuses is not resent in a loop.
3. What is resent after which answer (and what is never resent).
4. Looking never costs a delivery attempt (``peek``; ``limit`` on a consumer).
5. Receipts and deliveries carry the queue's incarnation.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from herald import Client, ConnectionClosedError
from herald.client import PeekedMessage, Receipt
from herald.client.core import ClientCore
from herald.errors import (
    HeraldError,
    MalformedFrameError,
    MessageTooLargeError,
    OutcomeUnknownError,
    ProducerSequenceGapError,
)
from herald.wire import protocol as p
from tests.sim.planted import RenumbersBehindARefusal

from .conftest import arun
from .fakeserver import FakeServer


async def _started(server: FakeServer | None = None, **options: Any) -> tuple[FakeServer, Client]:
    server = server or FakeServer()
    address = await server.start()
    client = await Client.connect(address, **options)
    return server, client


async def _stop(server: FakeServer, client: Client) -> None:
    await client.close()
    await server.stop()


# -- 1. never renumber a sent publish -------------------------------------------------------


async def _the_reported_scenario() -> tuple[list[Any], list[bytes]]:
    """create_queue(max_message_bytes=100); a fresh client pipelines a 500-byte
    body, m2, m3 in one gather, then publishes m4. Returns the outcomes and what
    the queue holds."""
    server = FakeServer()
    address = await server.start()
    try:
        async with Client(address) as admin:
            await admin.create_queue("q", max_message_bytes=100)
        async with Client(address) as client:
            results: list[Any] = list(
                await asyncio.gather(
                    client.publish("q", b"x" * 500),
                    client.publish("q", b"m2"),
                    client.publish("q", b"m3"),
                    return_exceptions=True,
                )
            )
            try:
                results.append(await client.publish("q", b"m4"))
            except HeraldError as error:
                results.append(error)
        return results, server.messages("q")
    finally:
        await server.stop()


def _check_outcomes(results: list[Any], stored: list[bytes]) -> None:
    bodies = [b"x" * 500, b"m2", b"m3", b"m4"]
    assert isinstance(results[0], MessageTooLargeError)
    # Every receipt names the message it confirms, and only stored ones get one.
    for body, result in zip(bodies, results, strict=True):
        if isinstance(result, Receipt):
            assert stored[result.sequence - 1] == body, (body, result, stored)
        else:
            assert body not in stored, (body, result, stored)
    assert stored == [b"m2", b"m3", b"m4"]
    assert [r.sequence for r in results[1:]] == [1, 2, 3]


def test_a_refusal_in_a_pipeline_fails_only_its_own_publish() -> None:
    results, stored = arun(_the_reported_scenario())
    _check_outcomes(results, stored)


def test_the_scenario_catches_the_planted_renumbering(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ClientCore, "producer_class", RenumbersBehindARefusal)
    results, stored = arun(_the_reported_scenario())
    with pytest.raises(AssertionError):
        _check_outcomes(results, stored)


# -- 2. the server's frame limit -------------------------------------------------------------


def test_a_publish_larger_than_the_frame_limit_fails_at_once_without_reconnecting() -> None:
    async def scenario() -> None:
        server, client = await _started(FakeServer(max_frame=64 << 10))
        try:
            await client.create_queue("q")
            future = client.publish("q", b"x" * (100 << 10))
            assert future.done()  # at once: never sent
            with pytest.raises(MessageTooLargeError, match="server's frame limit"):
                await future
            receipt = await client.publish("q", b"fits")
            assert receipt.sequence == 1
            assert server.connections == 1 and server.refused_frames == 0
            assert server.requests["Publish"] == 1
        finally:
            await _stop(server, client)

    arun(scenario())


def test_a_20_mb_publish_is_refused_by_the_client_not_resent_for_seconds() -> None:
    async def scenario() -> None:
        server, client = await _started()
        try:
            await client.create_queue("q")
            with pytest.raises(MessageTooLargeError, match="frame limit"):
                await client.publish("q", b"x" * (20 << 20))
            await asyncio.sleep(0.1)
            assert server.connections == 1 and server.requests["Publish"] == 0
        finally:
            await _stop(server, client)

    arun(scenario())


def test_a_burst_is_cut_into_frames_within_the_limit() -> None:
    async def scenario() -> None:
        limit = 64 << 10
        server, client = await _started(FakeServer(max_frame=limit))
        try:
            await client.create_queue("q")
            bodies = [bytes([i % 250]) * 10_000 for i in range(40)]
            receipts = await asyncio.gather(*(client.publish("q", b) for b in bodies))
            assert [r.sequence for r in receipts] == list(range(1, 41))
            assert server.refused_frames == 0 and server.connections == 1
            assert max(server.frame_bytes) <= limit
            assert server.messages("q") == bodies
        finally:
            await _stop(server, client)

    arun(scenario())


def test_a_request_the_server_cannot_read_fails_alone_and_is_not_resent_in_a_loop() -> None:
    async def scenario() -> None:
        server, client = await _started()
        try:
            await client.create_queue("q")
            # As an older server that does not know Peek would: the whole frame is
            # refused, publishes and all.
            server.unreadable = lambda r: isinstance(r, p.Peek)
            bodies = [b"a", b"b", b"c", b"d"]
            futures: list[asyncio.Future[Any]] = [client.publish("q", b) for b in bodies[:2]]
            # The peek goes in the same frame as the publishes around it.
            peek = client._future(client.core.peek("q", now=client._now()))
            futures += [client.publish("q", b) for b in bodies[2:]]
            frames = client.core.frames_sent
            results = await asyncio.gather(*futures, peek, return_exceptions=True)
            assert client.core.frames_sent > frames + 1  # refused, then probed apart
            assert isinstance(results[-1], MalformedFrameError)
            assert [r.sequence for r in results[:-1]] == [1, 2, 3, 4]  # type: ignore[union-attr]
            assert server.messages("q") == bodies
            assert server.refused_frames <= 4  # the suspects were halved, not looped
            refused = server.refused_frames
            assert (await client.publish("q", b"e")).sequence == 5
            assert server.refused_frames == refused and server.requests["Peek"] == 0
        finally:
            await _stop(server, client)

    arun(scenario())


def test_an_unreadable_publish_fails_and_the_ones_behind_it_meet_a_gap() -> None:
    async def scenario() -> None:
        server, client = await _started()
        try:
            await client.create_queue("q")
            server.unreadable = lambda r: isinstance(r, p.Publish) and r.body == b"bad"
            bodies = [b"a", b"b", b"bad", b"c", b"d"]
            results = await asyncio.gather(
                *(client.publish("q", b) for b in bodies), return_exceptions=True
            )
            assert [r.sequence for r in results[:2]] == [1, 2]  # type: ignore[union-attr]
            assert isinstance(results[2], MalformedFrameError)
            # Its number never reached the broker, so the next ones of that producer
            # meet a gap: surely not stored, never renumbered.
            assert all(isinstance(r, ProducerSequenceGapError) for r in results[3:])
            assert server.messages("q") == [b"a", b"b"]
            assert server.refused_frames <= 4
            receipt = await client.publish("q", b"e")  # a fresh producer identity
            assert receipt.sequence == 3 and server.messages("q") == [b"a", b"b", b"e"]
        finally:
            await _stop(server, client)

    arun(scenario())


# -- 3. what is resent ---------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["purge", "delete_queue", "delete_group", "redrive"])
def test_operations_that_could_act_twice_are_never_resent(operation: str) -> None:
    async def scenario() -> None:
        server, client = await _started()
        try:
            await client.create_queue("q")
            async with client.consume("q", "g") as consumer:
                await client.publish("q", b"m")
                delivery = await consumer.__anext__()
                await delivery.reject()
            calls = {
                "purge": lambda: client.purge("q"),
                "delete_queue": lambda: client.delete_queue("q"),
                "delete_group": lambda: client.delete_group("q", "g"),
                "redrive": lambda: client.redrive("q", "g"),
            }
            request = {
                "purge": "PurgeQueue",
                "delete_queue": "DeleteQueue",
                "delete_group": "DeleteGroup",
                "redrive": "Redrive",
            }[operation]
            server.drop_replies = 1
            with pytest.raises(ConnectionClosedError, match="unknown"):
                await calls[operation]()
            server.answer_next = [("OutcomeUnknownError", True)]
            with pytest.raises(OutcomeUnknownError):
                await calls[operation]()
            assert server.requests[request] == 2  # once each: never resent
        finally:
            await _stop(server, client)

    arun(scenario())


def test_reads_and_publishes_are_resent_after_an_unknown_outcome() -> None:
    async def scenario() -> None:
        server, client = await _started()
        try:
            await client.create_queue("q")
            server.answer_next = [("OutcomeUnknownError", False), ("RequestTimeoutError", False)]
            assert await client.peek("q") == []
            assert server.requests["Peek"] == 3
            server.answer_next = [("OutcomeUnknownError", True)]
            receipt = await client.publish("q", b"m")
            assert receipt.duplicate and server.messages("q") == [b"m"]
        finally:
            await _stop(server, client)

    arun(scenario())


# -- 4. looking never costs an attempt -------------------------------------------------------------


def test_peek_shows_state_and_attempts_and_takes_nothing() -> None:
    async def scenario() -> None:
        server, client = await _started()
        try:
            await client.create_queue("q", max_deliveries=1)
            for body in (b"one", b"two", b"three"):
                await client.publish("q", body, headers={"k": "v"})
            # limit=1: this consumer never leases a second message it would only
            # give back (consumer_gone counts a delivery: with max_deliveries=1, a
            # dead letter).
            async with client.consume("q", "g", prefetch=1, limit=1) as consumer:
                leased = await consumer.__anext__()
                for _ in range(3):  # looking, again and again
                    shown = await client.peek("q", "g")
                assert all(isinstance(m, PeekedMessage) for m in shown)
                assert [(m.body, m.state, m.attempts) for m in shown] == [
                    (b"one", "leased", 1),
                    (b"two", "backlog", 0),
                    (b"three", "backlog", 0),
                ]
                assert shown[0].headers == [("k", "v")]
                await leased.ack()
            assert [m.body for m in await client.peek("q", "g", limit=1)] == [b"two"]
            assert [m.state for m in await client.peek("q")] == ["retained"] * 2
            stats = await client.stats("q")
            assert stats.counters.delivered == 1 and stats.dead_letters == 0
            # Nothing was leased by looking: the next delivery is a first attempt.
            async with client.consume("q", "g", prefetch=1, limit=1) as consumer:
                delivery = await consumer.__anext__()
                assert (delivery.body, delivery.attempt) == (b"two", 1)
                await delivery.ack()
        finally:
            await _stop(server, client)

    arun(scenario())


def test_a_consumer_with_a_limit_leases_no_more_and_then_ends() -> None:
    async def scenario() -> None:
        server, client = await _started()
        try:
            await client.create_queue("q", max_deliveries=1)
            for i in range(10):
                await client.publish("q", f"m{i}".encode())
            got = []
            async with client.consume("q", "g", prefetch=100, limit=3) as consumer:
                async for delivery in consumer:
                    got.append(delivery.body)
                    await delivery.ack()
            assert got == [b"m0", b"m1", b"m2"]
            stats = await client.stats("q")
            assert stats.counters.delivered == 3
            assert stats.dead_letters == 0  # nothing was leased and given back
            assert stats.groups[0].in_flight == 0
        finally:
            await _stop(server, client)

    arun(scenario())


# -- 5. incarnations --------------------------------------------------------------------------


def test_receipts_and_deliveries_carry_the_queues_incarnation() -> None:
    async def scenario() -> None:
        server, client = await _started()
        try:
            await client.create_queue("q")
            first = await client.publish("q", b"old")
            await client.delete_queue("q")
            await client.create_queue("q")
            second = await client.publish("q", b"new")
            assert first.sequence == second.sequence == 1
            assert first.incarnation != second.incarnation
            async with client.consume("q", "g") as consumer:
                delivery = await consumer.__anext__()
                assert delivery.incarnation == second.incarnation
                await delivery.ack()
        finally:
            await _stop(server, client)

    arun(scenario())
