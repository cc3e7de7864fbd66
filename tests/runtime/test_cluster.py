"""Three real node processes (via the launcher): failover, catch-up, redirects."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from herald.runtime.launcher import LocalCluster
from herald.wire.protocol import Ack, CreateQueue, Deliver, Publish, Stats, Status, Subscribe

from .wireclient import WireClient

#: Short timers: 5 ms ticks, so elections take ~100 ms instead of ~250 ms.
FAST_ARGS = ["--tick-ms", "5", "--log-level", "info"]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(3, data_dir=tmp_path, args=FAST_ARGS, cluster="test") as local:
        local.start()
        yield local


def publish_confirmed(client: WireClient, queue: str, count: int) -> list[bytes]:
    """Publish ``count`` messages as an idempotent producer, in pipelined frames."""
    bodies = [b"message-%d" % n for n in range(count)]
    for start in range(0, count, 50):
        requests = [
            Publish(client.next_id(), queue, body, producer="p1", sequence=start + offset + 1)
            for offset, body in enumerate(bodies[start : start + 50])
        ]
        client.send(*requests)
        replies = client.wait_for({r.id for r in requests})
        for reply in replies.values():
            assert reply.ok, reply
            assert reply.value[3] == "durable"
    return bodies


def test_leader_crash_loses_no_confirmed_message(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    with WireClient(cluster.addresses[leader]) as client:
        assert client.call(CreateQueue(client.next_id(), "orders")).ok
        bodies = publish_confirmed(client, "orders", 300)

    cluster.kill(leader)
    survivors = [node for node in cluster.nodes if node != leader]
    new_leader = cluster.leader(among=survivors, timeout=15)
    assert new_leader != leader

    received: dict[int, bytes] = {}
    with WireClient(cluster.addresses[new_leader]) as client:
        assert client.call(Subscribe(client.next_id(), "orders", "g", "c")).ok
        while len(received) < len(bodies):
            reply = client.call(Deliver(client.next_id(), "orders", "g", "c", max_messages=100))
            assert reply.ok, reply
            assert reply.value, "a confirmed message is missing"
            acks = [Ack(client.next_id(), "orders", "g", d[0], d[6]) for d in reply.value]
            client.send(*acks)
            assert all(r.ok for r in client.wait_for({a.id for a in acks}).values())
            received.update((d[0], d[1]) for d in reply.value)
        assert sorted(received.values()) == sorted(bodies)
        target = client.call(Status(client.next_id())).value["commit"]

    # The crashed node comes back on its own data and catches up.
    cluster.start_node(leader)
    cluster.wait_serving(leader)
    deadline = time.monotonic() + 15
    while True:
        status = cluster.status(leader)
        if status["applied"] >= target:
            break
        assert time.monotonic() < deadline, f"node {leader} did not catch up: {status}"
        time.sleep(0.05)
    assert status["role"] == "follower" and status["leader"] == new_leader


def wait_known_leader(cluster: LocalCluster, leader: int, timeout: float = 10) -> None:
    """Until every node names ``leader`` (a follower learns it from the first append)."""
    deadline = time.monotonic() + timeout
    while any(cluster.status(node)["leader"] != leader for node in cluster.nodes):
        assert time.monotonic() < deadline, "followers do not know the leader"
        time.sleep(0.02)


def test_followers_redirect_to_the_leader(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    wait_known_leader(cluster, leader)
    leader_address = cluster.addresses[leader]
    for node, address in cluster.addresses.items():
        if node == leader:
            continue
        with WireClient(address) as client:
            assert client.welcome is not None
            assert (client.welcome.leader, client.welcome.leader_address) == (
                leader,
                leader_address,
            )
            reply = client.call(Publish(client.next_id(), "q", b"x"))
            assert reply.error is not None
            assert (reply.error.code, reply.error.leader_address) == (
                "NotLeaderError",
                leader_address,
            )
            # Status is the one request every node answers itself.
            status = client.call(Status(client.next_id())).value
            assert (status["role"], status["leader_address"]) == ("follower", leader_address)
    # The leader sees each follower's progress.
    peers = cluster.status(leader)["peers"]
    assert [p["node"] for p in peers] == [1, 2, 3]
    assert all(p["match"] is not None for p in peers)


def test_sigterm_on_the_leader_hands_leadership_over(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    wait_known_leader(cluster, leader)
    confirmed: set[bytes] = set()
    codes: set[str] = set()
    with WireClient(cluster.addresses[leader]) as client:
        assert client.call(CreateQueue(client.next_id(), "q")).ok
        bodies = {}
        for frame in range(150):  # 3,000 publishes in flight while the leader stops
            requests = [Publish(client.next_id(), "q", b"m%d-%d" % (frame, n)) for n in range(20)]
            bodies.update((r.id, r.body) for r in requests)
            client.send(*requests)
        stopping = threading.Thread(target=lambda: codes.add(str(cluster.terminate(leader))))
        stopping.start()
        try:
            while len(bodies) > 0:
                for reply in client.replies(timeout=10):
                    body = bodies.pop(reply.id)
                    if reply.ok:
                        confirmed.add(body)
                    else:
                        assert reply.error is not None
                        codes.add(reply.error.code)
        except (AssertionError, OSError):
            pass  # the connection closed: the rest are unknown to the client
        stopping.join()
    assert "0" in codes  # the leader's exit status
    assert codes <= {"0", "NotLeaderError", "ShuttingDownError", "OutcomeUnknownError"}
    assert "handing leadership to node" in cluster.log_tail(leader, lines=50)
    survivors = [node for node in cluster.nodes if node != leader]
    successor = cluster.leader(among=survivors, timeout=10)
    with WireClient(cluster.addresses[successor]) as client:
        assert client.call(Subscribe(client.next_id(), "q", "g", "c")).ok
        reply = client.call(Deliver(client.next_id(), "q", "g", "c", max_messages=1000))
        stored = {d[1] for d in reply.value}
        while len(reply.value) == 1000:
            reply = client.call(Deliver(client.next_id(), "q", "g", "c", max_messages=1000))
            stored |= {d[1] for d in reply.value}
    assert confirmed <= stored  # every confirmed publish survived the handover


def test_a_lagging_node_catches_up_from_a_snapshot(tmp_path: Path) -> None:
    args = [*FAST_ARGS, "--snapshot-entries", "40", "--retain-entries", "5"]
    with LocalCluster(3, data_dir=tmp_path, args=args, cluster="snap") as cluster:
        cluster.start()
        leader = cluster.leader()
        lagging = next(node for node in cluster.nodes if node != leader)
        cluster.kill(lagging)
        with WireClient(cluster.addresses[leader]) as client:
            assert client.call(CreateQueue(client.next_id(), "q")).ok
            for n in range(150):  # one entry each, all retained: the log keeps them
                assert client.call(Publish(client.next_id(), "q", b"m%d" % n)).ok
            # Settled: the log may now start past them (at a checkpoint below the
            # oldest message still retained), so the lagging node needs a snapshot.
            mode = "at_most_once"
            assert client.call(Subscribe(client.next_id(), "q", "g", "c", mode)).ok
            taken = client.call(Deliver(client.next_id(), "q", "g", "c", max_messages=150))
            assert taken.ok and len(taken.value) == 150
            for n in range(150):
                assert client.call(Publish(client.next_id(), "q", b"n%d" % n)).ok
            target = client.call(Status(client.next_id())).value["commit"]
        assert list((tmp_path / f"node-{leader}").glob("snap-*.snap"))
        cluster.start_node(lagging)
        cluster.wait_serving(lagging)
        deadline = time.monotonic() + 15
        while cluster.status(lagging)["applied"] < target:
            assert time.monotonic() < deadline, cluster.log_tail(lagging)
            time.sleep(0.05)
        # It received the leader's snapshot (its log could not be replayed entry by entry).
        assert "installed the leader's snapshot" in cluster.log_tail(lagging, lines=200)
        cluster.kill(leader)
        successor = cluster.leader(among=[n for n in cluster.nodes if n != leader], timeout=10)
        with WireClient(cluster.addresses[successor]) as client:
            assert client.call(Stats(client.next_id(), "q")).value["length"] == 150
