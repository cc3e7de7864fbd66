"""Client connections in the simulator: ordered byte streams between a client host and a node.

A :class:`SimLink` is what a TCP connection is to the code at both ends:
bytes arrive in the order they were written, each write after a latency drawn
from the run's network profile, or the connection breaks and both ends learn
it. The server end is the real :class:`~herald.node.connection.ServerConnection`
over the node's real :class:`~herald.node.server.ServerCore`; the client end
is whatever process dialled (:mod:`herald.sim.clients`). Frames are encoded
and decoded by the real wire codec at both ends.

Fault model (a contract, like the network's and the disk's):

- a dial to a node that is down is refused after one latency; to a node that
  is up (even paused: the kernel accepts) it connects after a round trip;
- a node that crashes resets its connections: the clients learn it after one
  latency; a client that dies closes its connection: the node learns it the
  same way;
- bytes to a paused node wait for it (as they wait in a socket buffer), then
  arrive in order;
- nothing is lost, duplicated, reordered or corrupted on a connection that
  stays up (TCP), and connections do not break on their own. Partitions cut
  Raft's links between nodes, not clients' connections.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Protocol

from herald.node.connection import ServerConnection

if TYPE_CHECKING:
    from .world import SimNode, World

__all__ = ["LinkClient", "Links", "SimLink"]


class LinkClient(Protocol):
    """The client end of a connection: what the link tells it."""

    def on_connected(self, link: SimLink) -> None: ...

    def on_dial_failed(self, link: SimLink, error: str) -> None: ...

    def on_bytes(self, link: SimLink, data: bytes) -> None: ...

    def on_lost(self, link: SimLink, error: str) -> None: ...


class SimLink:
    """One connection between a client and a node."""

    __slots__ = (
        "_to_client_at",
        "_to_node_at",
        "client",
        "client_open",
        "incarnation",
        "links",
        "node",
        "number",
        "server",
        "server_open",
    )

    def __init__(self, links: Links, number: int, client: LinkClient, node: SimNode) -> None:
        self.links = links
        self.number = number
        self.client = client
        self.node = node
        self.incarnation = node.incarnation
        self.server: ServerConnection | None = None
        self.client_open = True
        self.server_open = False
        self._to_node_at = 0
        self._to_client_at = 0

    # -- the client end ---------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """The client writes ``data``."""
        if not self.client_open or not data:
            return
        links = self.links
        at = max(self._to_node_at, links.now() + links.latency())
        self._to_node_at = at
        links.world.scheduler.at(at, links.arrive_at_node, self, data)

    def close(self) -> None:
        """The client closes the connection (or dies): the node learns it later."""
        if not self.client_open:
            return
        self.client_open = False
        links = self.links
        links.world.scheduler.after(links.latency(), links.closed_by_client, self)

    # -- the server end ---------------------------------------------------------------

    def reply(self, data: bytes) -> None:
        """The node writes ``data``."""
        if not self.server_open or not data:
            return
        links = self.links
        at = max(self._to_client_at, links.now() + links.latency())
        self._to_client_at = at
        links.world.scheduler.at(at, links.arrive_at_client, self, data)

    def reset_by_server(self, why: str) -> None:
        """The node closed the connection (or died): the client learns it later."""
        if not self.server_open:
            return
        self.server_open = False
        links = self.links
        # After the bytes already on the way (a FIN follows the data).
        at = max(self._to_client_at, links.now() + links.latency())
        links.world.scheduler.at(at, links.lost_at_client, self, why)


class Links:
    """Every client connection of a world, and the events that move their bytes."""

    def __init__(self, world: World, rng: random.Random) -> None:
        self.world = world
        self.rng = rng
        self._numbers = 0
        self.dials = 0
        self.refused_dials = 0
        #: Counters of servers that crashed since (their live counts are gone).
        self._counted_by_the_dead: dict[str, int] = {}
        world.on_crash = self._node_crashed
        world.on_output = self._flush_node
        world.on_resume = self._node_resumed

    def now(self) -> int:
        return self.world.scheduler.now

    def latency(self) -> int:
        profile = self.world.network.profile
        return profile.base_latency + int(self.rng.expovariate(1.0) * profile.jitter)

    # -- dialling -----------------------------------------------------------------------

    def dial(self, client: LinkClient, node_id: int) -> SimLink:
        """Start connecting ``client`` to node ``node_id``; it hears back later."""
        self._numbers += 1
        self.dials += 1
        node = self.world.nodes[node_id]
        link = SimLink(self, self._numbers, client, node)
        self.world.scheduler.after(self.latency(), self._syn, link)
        return link

    def _syn(self, link: SimLink) -> None:
        node = link.node
        server = node.server
        if not node.up or server is None or not link.client_open:
            self.refused_dials += 1
            self.world.scheduler.after(self.latency(), self._refused, link)
            return
        link.incarnation = node.incarnation
        link.server = ServerConnection(server, f"client-link-{link.number}")
        link.server_open = True
        node.connections[link.number] = link
        link._to_client_at = self.now() + self.latency()
        self.world.scheduler.at(link._to_client_at, self._connected, link)

    def _refused(self, link: SimLink) -> None:
        if link.client_open:
            link.client_open = False
            link.client.on_dial_failed(link, f"connection refused by n{link.node.id}")

    def _connected(self, link: SimLink) -> None:
        if link.client_open and link.server_open:
            link.client.on_connected(link)

    # -- bytes ---------------------------------------------------------------------------

    def _live(self, link: SimLink) -> bool:
        node = link.node
        return (
            link.server_open
            and node.up
            and node.incarnation == link.incarnation
            and node.server is not None
        )

    def arrive_at_node(self, link: SimLink, data: bytes) -> None:
        if not self._live(link):
            return
        node = link.node
        if node.paused:
            node.held_bytes.append((link, data))
            return
        self._receive(link, data)

    def _receive(self, link: SimLink, data: bytes) -> None:
        node = link.node
        server = link.server
        assert server is not None
        server.receive(data, self.world.instant(node))
        core_link = server.link
        if core_link is not None:
            node.links[core_link.id] = link
        self._write(link)
        # The requests are in the core now: run its Ready loop (which sends replies).
        self.world.pump(node)

    def _write(self, link: SimLink) -> None:
        server = link.server
        if server is None:
            return
        link.reply(server.take_output())
        if server.closing:
            self._drop(link, "closed by the server")

    def _flush_node(self, node: SimNode) -> None:
        server = node.server
        if server is None:
            return
        for core_link in server.take_dirty():
            link = node.links.get(core_link.id)
            if link is not None:
                self._write(link)
            else:
                core_link.take_replies()

    def _node_resumed(self, node: SimNode) -> None:
        held, node.held_bytes = node.held_bytes, []
        for link, data in held:
            if self._live(link):
                self._receive(link, data)

    def arrive_at_client(self, link: SimLink, data: bytes) -> None:
        if link.client_open:
            link.client.on_bytes(link, data)

    # -- closing -------------------------------------------------------------------------

    def _forget(self, link: SimLink) -> None:
        node = link.node
        node.connections.pop(link.number, None)
        if link.server is not None:
            link.server.lost()
            core_link = link.server.link
            if core_link is not None:
                node.links.pop(core_link.id, None)

    def _drop(self, link: SimLink, why: str) -> None:
        self._forget(link)
        link.reset_by_server(why)

    def closed_by_client(self, link: SimLink) -> None:
        if self._live(link):
            self._forget(link)
        link.server_open = False

    def lost_at_client(self, link: SimLink, why: str) -> None:
        if link.client_open:
            link.client_open = False
            link.client.on_lost(link, why)

    def server_count(self, name: str) -> int:
        """A counter of the servers' stats (``turned_away``: writes turned away for
        overload, not leading or stopping; ``messages_carried``), summed over every
        server that ran, crashed ones included."""
        live = sum(
            node.server.stats[name] for node in self.world.nodes.values() if node.server is not None
        )
        return self._counted_by_the_dead.get(name, 0) + live

    def _node_crashed(self, node: SimNode) -> None:
        if node.server is not None:
            dead = self._counted_by_the_dead
            for name in ("turned_away", "messages_carried"):
                dead[name] = dead.get(name, 0) + node.server.stats[name]
        links = list(node.connections.values())
        node.connections.clear()
        node.links.clear()
        for link in links:
            link.reset_by_server(f"n{node.id} crashed")
