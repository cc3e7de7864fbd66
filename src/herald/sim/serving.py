"""The request core of each simulated node: its configuration, and the bugs tests plant in it.

A queue run gives every node the real :class:`~herald.node.server.ServerCore`,
configured from the seed's options the way ``herald serve`` configures it
from flags. :class:`Plants` names the classes a run uses for the broker, the
request core, the node host, the client core and the Inbox key, so a test can
put a known bug back into one of them and require that seeds catch it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from herald.broker import Broker
from herald.client.core import ClientCore, CoreDelivery
from herald.node.clock import Instant
from herald.node.config import NodeConfig
from herald.node.host import HostObserver, NodeHost, Transport
from herald.node.server import ServerCore
from herald.processing.inbox import message_key
from herald.raft import Raft
from herald.storage import WalLogStore

from .clients import node_address
from .options import SimOptions
from .scheduler import SECOND
from .world import ServerFactory, SimNode, digest_broker

__all__ = ["Plants", "node_config", "server_factory"]


@dataclass(frozen=True, slots=True)
class Plants:
    """What a run is made of, where tests plant bugs (the defaults are the real ones)."""

    broker_class: type[Broker] = Broker
    server_class: type[ServerCore] = ServerCore
    host_class: type[NodeHost] = NodeHost
    client_class: type[ClientCore] = ClientCore
    inbox_key: Callable[[CoreDelivery], str] = message_key


def node_config(options: SimOptions, node: int) -> NodeConfig:
    """A node's configuration, as ``herald serve`` would build it from the seed's flags."""
    assert options.queue is not None
    voters = range(1, options.nodes + 1)
    return NodeConfig(
        node_id=node,
        peers={n: node_address(n) for n in voters},
        data_dir="/data",
        tick_interval=options.tick_interval / SECOND,
        election_tick=options.election_tick,
        election_tick_max=options.election_tick_max,
        heartbeat_tick=options.heartbeat_tick,
        pre_vote=options.pre_vote,
        check_quorum=options.check_quorum,
        max_inflight_msgs=16,
        max_size_per_msg=64 * 1024,
        max_uncommitted_bytes=options.queue.max_uncommitted_bytes,
        snapshot_entries=options.snapshot_entries,
        retain_entries=options.snapshot_entries // 4,
        read_timeout=2.0,
        groups=options.groups,
    )


def server_factory(options: SimOptions, raft_class: type[Raft], plants: Plants) -> ServerFactory:
    """Builds each node's request core (with the planted classes)."""

    def build(
        node: SimNode,
        group: int,
        store: WalLogStore,
        transport: Transport,
        rng: random.Random,
        now: Instant,
        observer: HostObserver,
    ) -> ServerCore:
        return plants.server_class(
            node_config(options, node.id),
            store,
            transport,
            rng,
            now,
            broker=digest_broker(plants.broker_class),
            observer=observer,
            raft_class=raft_class,
            host_class=plants.host_class,
            group=group,
            group_count=options.groups,
        )

    return build
