"""Finding the leader, following it when it moves, reconnecting with backoff."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from herald import Client
from herald.client import UnreachableError

from .conftest import arun
from .fakeserver import FakeCluster, FakeServer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_follower_seed_leads_the_client_to_the_leader() -> None:
    async def scenario() -> None:
        cluster = FakeCluster(3)
        await cluster.start()
        follower = cluster.servers[2]
        try:
            async with Client(follower.address) as client:
                assert client.leader == cluster.leader.address
                await client.create_queue("q")
                receipt = await client.publish("q", b"x")
                assert receipt.sequence == 1
            assert follower.frames == 0  # it only greeted
        finally:
            await cluster.stop()

    arun(scenario())


def test_a_not_leader_reply_redirects_to_the_named_leader() -> None:
    async def scenario() -> None:
        cluster = FakeCluster(2)
        await cluster.start()
        stale = cluster.servers[1]
        stale.claim_leader = True  # greets as leader, then answers NotLeaderError
        try:
            async with Client(stale.address) as client:
                assert client.leader == stale.address
                await client.create_queue("q")
                receipts = await asyncio.gather(*(client.publish("q", b"m") for _ in range(20)))
                assert client.leader == cluster.leader.address
                assert [r.sequence for r in receipts] == list(range(1, 21))
                assert stale.requests["CreateQueue"] == 1
        finally:
            await cluster.stop()

    arun(scenario())


def test_publishes_survive_a_leader_change_without_duplicates() -> None:
    async def scenario() -> None:
        cluster = FakeCluster(3)
        addresses = await cluster.start()
        try:
            async with Client(addresses) as client:
                await client.create_queue("q")
                bodies = [f"m{i}".encode() for i in range(300)]
                futures = [client.publish("q", body) for body in bodies[:150]]
                await asyncio.sleep(0)  # the first batch is on the wire
                cluster.elect(cluster.servers[1])  # cuts the old leader's connections
                futures += [client.publish("q", body) for body in bodies[150:]]
                receipts = await asyncio.gather(*futures)
                assert client.leader == cluster.servers[1].address
            stored = cluster.leader.messages("q")
            assert stored == bodies  # each once, in publish order
            assert sorted(r.sequence for r in receipts) == list(range(1, 301))
        finally:
            await cluster.stop()

    arun(scenario())


def test_no_leader_for_a_while_then_one() -> None:
    async def scenario() -> None:
        cluster = FakeCluster(3)
        addresses = await cluster.start()
        try:
            async with Client(addresses, timeout=5) as client:
                await client.create_queue("q")
                cluster.elect(None)
                future = client.publish("q", b"waits")
                await asyncio.sleep(0.3)
                assert not future.done()
                cluster.elect(cluster.servers[2])
                receipt = await future
                assert receipt.sequence == 1
                assert client.leader == cluster.servers[2].address
        finally:
            await cluster.stop()

    arun(scenario())


def test_nobody_listening_is_unreachable_within_the_connect_timeout() -> None:
    async def scenario() -> None:
        started = time.monotonic()
        with pytest.raises(UnreachableError) as caught:
            await Client.connect(f"127.0.0.1:{_free_port()}", connect_timeout=0.3)
        assert time.monotonic() - started < 2
        assert "127.0.0.1" in str(caught.value)

    arun(scenario())


def test_a_refused_handshake_is_reported() -> None:
    async def scenario() -> None:
        server = FakeServer()
        server.refuse = ("HandshakeError", "protocol version 1 is not supported")
        address = await server.start()
        try:
            with pytest.raises(UnreachableError, match="not supported"):
                await Client.connect(address, connect_timeout=0.3)
            assert server.hellos and server.hellos[0].role == "client"
        finally:
            await server.stop()

    arun(scenario())


def test_reconnects_with_backoff_after_the_connection_drops() -> None:
    async def scenario() -> None:
        server = FakeServer()
        address = await server.start()
        try:
            async with Client(address) as client:
                await client.create_queue("q")
                for round_ in range(5):
                    server.kill_connections()
                    receipt = await client.publish("q", f"r{round_}".encode())
                    assert receipt.sequence == round_ + 1
                assert client.core.connects == 6
                assert server.connections == 6
        finally:
            await server.stop()

    arun(scenario())


def test_backoff_grows_and_is_jittered() -> None:
    async def scenario() -> None:
        server = FakeServer()
        address = await server.start()
        try:
            async with Client(address) as client:
                core = client.core
                delays = [core.backoff(n) for n in range(1, 12) for _ in range(20)]
                assert all(0 <= d <= 2_000_000 for d in delays)  # microseconds
                early = max(core.backoff(1) for _ in range(50))
                late = max(core.backoff(10) for _ in range(50))
                assert early <= 100_000 < late
                assert len(set(delays)) > 100  # jittered
        finally:
            await server.stop()

    arun(scenario())
