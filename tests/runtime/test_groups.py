"""Real node processes hosting many data groups: routing, failover per group, refusals."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from herald import Client
from herald.runtime.launcher import LocalCluster
from herald.wire.placement import group_of

FAST_ARGS = ["--tick-ms", "5", "--log-level", "info"]
GROUPS = 3


def queue_in(group: int, groups: int = GROUPS, prefix: str = "q") -> str:
    """A queue name the placement rule puts in ``group``."""
    return next(f"{prefix}{n}" for n in range(1000) if group_of(f"{prefix}{n}", groups) == group)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    args = [*FAST_ARGS, "--groups", str(GROUPS)]
    with LocalCluster(3, data_dir=tmp_path, args=args, cluster="groups") as local:
        local.start()
        yield local


async def publish_all(client: Client, queues: list[str], count: int) -> dict[str, list[bytes]]:
    sent: dict[str, list[bytes]] = {}
    for queue in queues:
        bodies = [f"{queue}-{n}".encode() for n in range(count)]
        receipts = await asyncio.gather(*(client.publish(queue, body) for body in bodies))
        first = receipts[0].sequence
        assert [r.sequence for r in receipts] == list(range(first, first + count))
        sent[queue] = bodies
    return sent


async def drain(client: Client, queue: str, count: int) -> list[bytes]:
    got: list[bytes] = []
    async with client.consume(queue, "g", limit=count, wait=0.5) as deliveries:
        async for delivery in deliveries:
            got.append(delivery.body)
            await delivery.ack()
    return got


def test_a_client_reaches_every_groups_leader_and_a_groups_failover_loses_nothing(
    cluster: LocalCluster,
) -> None:
    queues = [queue_in(group) for group in range(GROUPS)]
    seeds = ",".join(cluster.addresses.values())

    async def before() -> dict[str, list[bytes]]:
        async with Client(seeds, timeout=20) as client:
            assert len(client.cores) == GROUPS
            for queue in queues:
                assert await client.create_queue(queue)
            assert await client.queues() == sorted(queues)
            status = await client.status()
            assert [g.group for g in status.groups] == list(range(GROUPS))
            assert all(g.leader for g in status.groups)
            return await publish_all(client, queues, 200)

    sent = asyncio.run(before())
    # Group 1's leader dies: group 1 elects another; the other groups keep
    # (or re-elect) theirs; nothing confirmed in any group is lost.
    victim = cluster.leader(group=1)
    cluster.kill(victim)
    survivors = [node for node in cluster.nodes if node != victim]
    assert cluster.leader(group=1, among=survivors, timeout=15) != victim

    async def after() -> None:
        async with Client(seeds, timeout=20) as client:
            more = await publish_all(client, queues, 50)
            for queue in queues:
                got = await drain(client, queue, 250)
                assert sorted(got) == sorted(sent[queue] + more[queue]), queue
            for queue in queues:
                stats = await client.stats(queue)
                assert stats.length == 0 and stats.counters.published == 250

    asyncio.run(after())
    cluster.start_node(victim)
    cluster.wait_serving(victim)
    status = cluster.status(victim)
    assert len(status["groups"]) == GROUPS
    # Leaders spread over the nodes: group g is handed to voter g mod 3 once
    # that node is back and holds the whole log.
    deadline = time.monotonic() + 60
    while True:
        leaders = [cluster.leader(group=group, timeout=15) for group in range(GROUPS)]
        if leaders == [1, 2, 3]:
            break
        assert time.monotonic() < deadline, f"leaders stayed {leaders}"
        time.sleep(0.2)


def test_a_node_with_another_group_count_is_refused_by_its_peers_and_its_own_directory(
    tmp_path: Path,
) -> None:
    with LocalCluster(
        2, data_dir=tmp_path, args=[*FAST_ARGS, "--groups", "2"], cluster="mixed"
    ) as local:
        local.node_args[2] = ["--groups", "3"]
        local.start_node(1)
        local.start_node(2)
        local.wait_serving(1)
        local.wait_serving(2)
        # Neither has a majority with the other refused: no leader at all.
        with pytest.raises(Exception, match="no leader"):
            local.leader(timeout=2)
        log = local.log_tail(1, 200) + local.log_tail(2, 200)
        assert "--groups" in log, log
        local.stop()
    # Node 2's directory was made with 3 groups: opening it with 2 is refused.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "herald.cli.serve",
            "--groups",
            "2",
            "--data-dir",
            str(tmp_path / "node-2"),
            "--listen",
            local.addresses[2],
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "holds a node of 3 data group(s), not 2" in result.stderr, result.stderr
