"""A local cluster with a fault-injecting proxy on every link.

Node ``i`` listens on a private port. The address the cluster knows it by (its
``--peers`` entry, where clients connect and followers redirect them) is a
*client proxy* in front of that port. Every ordered pair of nodes has its own
*peer proxy*: node ``i`` dials node ``j`` through proxy ``(i, j)``, so cutting
``(i, j)`` alone is a one-way partition. A partition of the cluster blocks the
peer proxies between the sides and the client proxies of the nodes clients
cannot reach.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Sequence

from herald.runtime.config import format_peers
from herald.runtime.launcher import LocalCluster, free_ports

from .proxy import LinkProxy

__all__ = ["ProxiedCluster"]


class ProxiedCluster:
    """``nodes`` herald serve processes behind :class:`LinkProxy` instances."""

    def __init__(
        self,
        nodes: int,
        *,
        rng: random.Random,
        volatile_storage: bool = False,
        node_args: Sequence[str] = (),
        data_dir: str | None = None,
    ) -> None:
        self.ids = tuple(range(1, nodes + 1))
        self.rng = rng
        ports = free_ports(2 * nodes)
        declared = {node: f"127.0.0.1:{ports[node - 1]}" for node in self.ids}
        self.private = {node: ports[nodes + node - 1] for node in self.ids}
        self.client_proxies: dict[int, LinkProxy] = {}
        self.peer_proxies: dict[tuple[int, int], LinkProxy] = {}
        self._declared_ports = {node: ports[node - 1] for node in self.ids}
        extra = list(node_args)
        if volatile_storage:
            extra.append("--unsafe-volatile-storage")
        self.launcher = LocalCluster(
            nodes,
            data_dir=data_dir,
            base_port=None,
            cluster="herald-torture",
            args=extra,
        )
        # The launcher picked its own ports; use ours instead: the declared
        # addresses (client proxies) in --peers, the private ones in --listen.
        for node in self.ids:
            self.launcher.nodes[node].address = declared[node]
        self.declared = declared

    @property
    def seeds(self) -> str:
        return ",".join(self.declared.values())

    @property
    def proxies(self) -> list[LinkProxy]:
        return [*self.client_proxies.values(), *self.peer_proxies.values()]

    async def start(self) -> None:
        for node in self.ids:
            proxy = LinkProxy(
                "127.0.0.1",
                self.private[node],
                name=f"clients->n{node}",
                listen_port=self._declared_ports[node],
                rng=random.Random(self.rng.getrandbits(64)),
            )
            await proxy.start()
            self.client_proxies[node] = proxy
            for other in self.ids:
                if other == node:
                    continue
                link = LinkProxy(
                    "127.0.0.1",
                    self.private[other],
                    name=f"n{node}->n{other}",
                    rng=random.Random(self.rng.getrandbits(64)),
                )
                await link.start()
                self.peer_proxies[(node, other)] = link
        for node in self.ids:
            dial = {
                other: self.peer_proxies[(node, other)].address
                for other in self.ids
                if other != node
            }
            self.launcher.node_args[node] = [
                "--listen",
                f"127.0.0.1:{self.private[node]}",
                "--dial",
                format_peers(dial),
            ]
        await asyncio.to_thread(self.launcher.start)

    async def stop(self) -> None:
        await asyncio.to_thread(self.launcher.stop)
        for proxy in self.proxies:
            await proxy.close()

    # -- faults ------------------------------------------------------------------------

    def heal(self) -> None:
        for proxy in self.proxies:
            proxy.heal()

    def partition(self, groups: Sequence[Iterable[int]]) -> None:
        """Cut every link between different groups, both ways; clients stay with
        the largest group (the nodes outside it cannot be reached by clients)."""
        sides = [set(group) for group in groups]
        for (source, target), proxy in self.peer_proxies.items():
            if not any(source in side and target in side for side in sides):
                proxy.block()
        majority = max(sides, key=len)
        for node, proxy in self.client_proxies.items():
            if node not in majority:
                proxy.block()

    def cut_one_way(self, sources: Iterable[int], targets: Iterable[int]) -> None:
        targets = set(targets)
        for source in sources:
            for target in targets:
                if source != target:
                    self.peer_proxies[(source, target)].block()

    def slow(self, links: Iterable[LinkProxy], delay: float, jitter: float, reset: float) -> None:
        for proxy in links:
            proxy.faults.delay = delay
            proxy.faults.jitter = jitter
            proxy.faults.reset_rate = reset
