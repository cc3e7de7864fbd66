"""The idempotent producer: receipts, batching, retries without duplicates, the window."""

from __future__ import annotations

import asyncio

import pytest

from herald import Client, ConnectionClosedError, RequestTimeoutError, UsageError
from herald.client import Receipt
from herald.errors import (
    MessageTooLargeError,
    ProducerSequenceGapError,
    ProducerSequenceStaleError,
    UnknownQueueError,
)

from .conftest import arun
from .fakeserver import FakeServer


async def _started(**options: object) -> tuple[FakeServer, Client]:
    server = FakeServer()
    address = await server.start()
    client = await Client.connect(address, **options)  # type: ignore[arg-type]
    await client.create_queue("q")
    return server, client


async def _stop(server: FakeServer, client: Client) -> None:
    await client.close()
    await server.stop()


def test_receipts_headers_and_the_idempotency_key() -> None:
    async def scenario() -> None:
        server, client = await _started()
        try:
            first = await client.publish("q", b"a", headers={"kind": "test"}, key="order-1")
            again = await client.publish("q", "a", key="order-1")
            other = await client.publish("q", "b")
            assert (first.queue, first.sequence, first.duplicate) == ("q", 1, False)
            assert (again.sequence, again.duplicate) == (1, True)
            assert other.sequence == 2
            assert first.durability.value == "durable"
            message = server.broker.message("q", 1)
            assert message.headers == (("kind", "test"),)
            assert message.producer == client.producer_id
        finally:
            await _stop(server, client)

    arun(scenario())


def test_bad_arguments_are_refused_before_anything_is_sent() -> None:
    async def scenario() -> None:
        server, client = await _started()
        try:
            for call in (
                lambda: client.publish("q", b"x", headers=[("a", "1"), ("a", "2")]),
                lambda: client.publish("q", b"x", headers={"": "v"}),
                lambda: client.publish("q", b"x", key=""),
                lambda: client.publish("bad\nname", b"x"),
                lambda: client.publish("q", 42),  # type: ignore[arg-type]
            ):
                with pytest.raises(UsageError):
                    call()
            assert server.requests["Publish"] == 0
        finally:
            await _stop(server, client)

    arun(scenario())


def test_concurrent_publishes_travel_in_one_frame() -> None:
    async def scenario() -> None:
        server, client = await _started()
        try:
            frames_before = server.frames
            receipts = await asyncio.gather(*(client.publish("q", b"m") for _ in range(500)))
            assert [r.sequence for r in receipts] == list(range(1, 501))
            assert server.frames - frames_before == 1
            assert server.frame_sizes[-1] == 500
        finally:
            await _stop(server, client)

    arun(scenario())


def test_linger_batches_publishes_issued_in_different_iterations() -> None:
    async def scenario() -> None:
        server, client = await _started(linger=0.05)
        try:
            frames_before = server.frames
            futures = []
            for _ in range(20):
                futures.append(client.publish("q", b"m"))
                await asyncio.sleep(0)
            await asyncio.gather(*futures)
            assert server.frames - frames_before == 1
        finally:
            await _stop(server, client)

    arun(scenario())


def test_lost_replies_are_retried_and_stored_once() -> None:
    async def scenario() -> None:
        server, client = await _started()
        try:
            bodies = [f"m{i}".encode() for i in range(400)]
            server.drop_replies = 2  # carried out, then the connection dies twice
            receipts = await asyncio.gather(*(client.publish("q", b) for b in bodies))
            assert server.messages("q") == bodies  # once each, in order
            assert sorted(r.sequence for r in receipts) == list(range(1, 401))
            # The whole first frame landed; its replies were lost; the retry landed
            # again and its replies were lost too; the third attempt got answers.
            assert all(r.duplicate for r in receipts)
            stats = server.broker.stats("q")
            assert stats.counters.published == 400
            assert stats.counters.duplicates_by_producer == 800
            assert client.core.connects == 3
        finally:
            await _stop(server, client)

    arun(scenario())


def test_lost_requests_are_resent() -> None:
    async def scenario() -> None:
        server, client = await _started()
        try:
            server.drop_frames = 3  # the requests never reach the broker
            bodies = [f"m{i}".encode() for i in range(50)]
            receipts = await asyncio.gather(*(client.publish("q", b) for b in bodies))
            assert server.messages("q") == bodies
            assert not any(r.duplicate for r in receipts)
        finally:
            await _stop(server, client)

    arun(scenario())


def test_at_most_max_in_flight_publishes_per_queue_are_on_the_wire() -> None:
    async def scenario() -> None:
        server, client = await _started(max_in_flight=10)
        try:
            server.delay = 0.02
            futures = [client.publish("q", f"m{i}".encode()) for i in range(45)]
            await asyncio.sleep(0.005)
            assert client.in_flight("q") == 45
            assert client.core.in_flight <= 10
            await asyncio.gather(*futures)
            assert max(server.frame_sizes[1:]) <= 10
            assert server.messages("q") == [f"m{i}".encode() for i in range(45)]
        finally:
            await _stop(server, client)

    arun(scenario())


def test_a_refused_message_does_not_take_the_others_down() -> None:
    async def scenario() -> None:
        server, client = await _started()
        try:
            await client.create_queue("small", max_message_bytes=10)
            bodies = [b"ok-1", b"x" * 50, b"ok-2", b"ok-3", b"y" * 50, b"ok-4"]
            results = await asyncio.gather(
                *(client.publish("small", b) for b in bodies), return_exceptions=True
            )
            assert isinstance(results[1], MessageTooLargeError)
            assert isinstance(results[4], MessageTooLargeError)
            assert server.messages("small") == [b"ok-1", b"ok-2", b"ok-3", b"ok-4"]
            # The numbering carries on without a gap.
            assert (await client.publish("small", b"ok-5")).sequence == 5
        finally:
            await _stop(server, client)

    arun(scenario())


def test_an_unknown_queue_fails_every_publish_in_flight_then_recovers() -> None:
    async def scenario() -> None:
        server, client = await _started()
        try:
            results = await asyncio.gather(
                *(client.publish("later", b"m") for _ in range(5)), return_exceptions=True
            )
            assert all(isinstance(r, UnknownQueueError) for r in results)
            await client.create_queue("later")
            receipt = await client.publish("later", b"m")
            assert receipt.sequence == 1
        finally:
            await _stop(server, client)

    arun(scenario())


def test_a_gap_fails_the_publishes_sent_and_starts_a_fresh_identity_for_the_rest() -> None:
    async def scenario() -> None:
        server, client = await _started()
        try:
            await client.publish("q", b"one")
            producer = client.core.producer("q")
            assert producer is not None
            producer.next_seq += 3  # as if three numbers had vanished on the way
            results = await asyncio.gather(
                client.publish("q", b"two"), client.publish("q", b"3"), return_exceptions=True
            )
            # Both were numbered and sent: each meets the gap (surely not stored) and
            # neither is renumbered. Publishes not yet numbered get a fresh identity.
            assert all(isinstance(r, ProducerSequenceGapError) for r in results), results
            assert producer.producer == f"{client.producer_id}.1"
            receipt = await client.publish("q", b"four")
            assert receipt.sequence == 2 and not receipt.duplicate
            assert server.messages("q") == [b"one", b"four"]
            assert server.published[-1] == (f"{client.producer_id}.1", 1, b"four")
        finally:
            await _stop(server, client)

    arun(scenario())


def test_a_gap_renumbers_only_publishes_not_yet_sent() -> None:
    async def scenario() -> None:
        server, client = await _started(max_in_flight=1)
        try:
            await client.publish("q", b"one")
            producer = client.core.producer("q")
            assert producer is not None
            producer.next_seq += 3
            # "two" goes out (numbered 5: a gap); "three" waits in the backlog,
            # unnumbered, and is numbered 1 of the fresh identity when room opens.
            results = await asyncio.gather(
                client.publish("q", b"two"), client.publish("q", b"three"), return_exceptions=True
            )
            assert isinstance(results[0], ProducerSequenceGapError)
            assert isinstance(results[1], Receipt) and results[1].sequence == 2
            assert server.messages("q") == [b"one", b"three"]
            assert server.published[-1] == (f"{client.producer_id}.1", 1, b"three")
        finally:
            await _stop(server, client)

    arun(scenario())


def test_a_silent_server_times_out_with_an_unknown_outcome() -> None:
    async def scenario() -> None:
        server, client = await _started(timeout=0.2)
        try:
            server.silent = True
            with pytest.raises(RequestTimeoutError, match="unknown"):
                await client.publish("q", b"m")
            with pytest.raises(RequestTimeoutError):
                await client.stats("q")
            server.silent = False
            # The timed-out publish stays in flight: it goes again on the next
            # connection, and the one after it is not refused for a gap.
            server.kill_connections()
            receipt = await client.publish("q", b"n", timeout=2)
            assert receipt.sequence == 2
            assert server.messages("q") == [b"m", b"n"]
        finally:
            await _stop(server, client)

    arun(scenario())


def test_without_idempotence_a_lost_reply_is_an_unknown_outcome() -> None:
    async def scenario() -> None:
        server, client = await _started(idempotent=False)
        try:
            server.drop_replies = 1
            with pytest.raises(ConnectionClosedError, match="unknown"):
                await client.publish("q", b"plain")
            # With a key, the broker's idempotency index makes the retry safe.
            server.drop_replies = 1
            receipt = await client.publish("q", b"keyed", key="k")
            assert receipt.duplicate
            assert server.messages("q") == [b"plain", b"keyed"]
        finally:
            await _stop(server, client)

    arun(scenario())


def test_why_the_window_matters_a_smaller_broker_window_forgets_receipts() -> None:
    async def scenario() -> None:
        server, client = await _started()
        try:
            await client.create_queue("tiny", producer_window=2)
            server.drop_replies = 1
            results = await asyncio.gather(
                *(client.publish("tiny", f"m{i}".encode()) for i in range(6)),
                return_exceptions=True,
            )
            stale = [r for r in results if isinstance(r, ProducerSequenceStaleError)]
            assert len(stale) == 4  # published, but their receipts were forgotten
            assert server.messages("tiny") == [f"m{i}".encode() for i in range(6)]
        finally:
            await _stop(server, client)

    arun(scenario())


def test_close_waits_for_publishes_in_flight() -> None:
    async def scenario() -> None:
        server, client = await _started()
        server.delay = 0.05
        futures = [client.publish("q", b"m") for _ in range(10)]
        await client.close()
        assert all(f.done() and not f.exception() for f in futures)
        await server.stop()

    arun(scenario())
