"""The peer transport: one outbound connection per peer, the node host's ``Transport``.

Each node dials every other node once (handshake role ``peer``, with its node
id and cluster name) and sends its Raft messages on that connection only;
what a peer sends arrives on the connection the peer dialled, handled by
:class:`~herald.runtime.connection.Connection`. A link that fails is reported
to the core (``report_unreachable``) and redialled with exponential backoff.

Sending never blocks and never queues without bound: while a link is down,
or while more than ``peer_queue_bytes`` wait in its socket buffer, messages to
that peer are dropped. Raft tolerates loss: heartbeats and probes resend.

``send`` only collects; :meth:`PeerTransport.flush` encodes and writes what
was collected, one write per peer. The node server chooses when: at once
before an fsync starts (a leader's appends travel while it syncs, a follower's
acknowledgements before its next sync), and otherwise after the clients'
replies are written, so a commit's notice to the followers never stands
between a client and its confirm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from herald.errors import ProtocolError
from herald.raft import Message
from herald.wire.frames import (
    FrameDecoder,
    decode_handshake_reply,
    encode_frame,
    encode_messages,
    to_wire,
)
from herald.wire.protocol import MAGIC, PROTOCOL_VERSION, Hello, Refused

from .config import parse_address
from .connection import set_nodelay, write

if TYPE_CHECKING:
    from .node import NodeServer

__all__ = ["PeerLink", "PeerTransport"]

log = logging.getLogger("herald.runtime")

_BACKOFF_MIN = 0.02
_BACKOFF_MAX = 0.5
_CONNECT_TIMEOUT = 2.0


class _Dialer(asyncio.Protocol):
    """The outbound side of a link: says Hello, waits for Welcome, then only writes."""

    def __init__(self, link: PeerLink) -> None:
        self.link = link
        self.decoder = FrameDecoder(1 << 16)
        self.welcomed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but are ones.
        self.transport = transport = cast(asyncio.Transport, transport)
        set_nodelay(transport)
        server = self.link.server
        hello = Hello(
            MAGIC,
            PROTOCOL_VERSION,
            "peer",
            node=server.config.node_id,
            cluster=server.config.cluster,
            groups=server.config.groups,
        )
        write(transport, encode_frame(hello))

    def data_received(self, data: bytes) -> None:
        if self.welcomed.done():
            return  # peers never answer on this connection after the Welcome
        try:
            for payload in self.decoder.feed(data):
                reply = decode_handshake_reply(payload)
                if isinstance(reply, Refused):
                    self.link.refused(f"{reply.code}: {reply.message}")
                    self.welcomed.set_result(False)
                elif reply.node != self.link.node:
                    self.link.refused(
                        f"the node at {self.link.address} is node {reply.node}, "
                        f"not {self.link.node}: check --peers"
                    )
                    self.welcomed.set_result(False)
                else:
                    self.welcomed.set_result(True)
                break
        except ProtocolError as error:
            self.link.refused(f"bad handshake reply: {error}")
            self.welcomed.set_result(False)
        if self.welcomed.done() and not self.welcomed.result() and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.welcomed.done():
            self.welcomed.set_result(False)
        if not self.closed.done():
            self.closed.set_result(None)


class PeerLink:
    """The connection to one peer, redialled forever until :meth:`close`."""

    def __init__(self, server: NodeServer, node: int, address: str) -> None:
        self.server = server
        self.node = node
        self.address = address
        self.host, self.port = parse_address(address)
        self.limit = server.config.peer_queue_bytes
        self.transport: asyncio.Transport | None = None
        self.dropped = 0
        self.sent_frames = 0
        self._pending: list[Message] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._refusal = ""
        self._was_up = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        self._stopping = True
        transport = self.transport
        self.transport = None
        if transport is not None:
            transport.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def add(self, message: Message) -> None:
        """Collect ``message`` for the next :meth:`flush`."""
        self._pending.append(message)

    def flush(self) -> None:
        """Write what was collected as one frame, or drop it (link down, or full)."""
        messages = self._pending
        if not messages:
            return
        self._pending = []
        transport = self.transport
        if transport is None or transport.get_write_buffer_size() > self.limit:
            self.dropped += len(messages)
            return
        if write(transport, encode_messages([to_wire(message) for message in messages])):
            self.sent_frames += 1
        else:
            self.dropped += len(messages)

    def refused(self, reason: str) -> None:
        if reason != self._refusal:
            log.error("peer %d at %s refused the link: %s", self.node, self.address, reason)
            self._refusal = reason

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = _BACKOFF_MIN
        while not self._stopping:
            dialer: _Dialer | None = None
            try:
                transport, connected = await asyncio.wait_for(
                    loop.create_connection(lambda: _Dialer(self), self.host, self.port),
                    _CONNECT_TIMEOUT,
                )
                dialer = connected
                welcomed = await asyncio.wait_for(connected.welcomed, _CONNECT_TIMEOUT)
                if welcomed and not self._stopping:
                    self.transport = transport
                    self._refusal = ""
                    delay = _BACKOFF_MIN
                    if not self._was_up:
                        log.info("link to peer %d (%s) is up", self.node, self.address)
                    self._was_up = True
                    await connected.closed
                else:
                    transport.close()
                    delay = _BACKOFF_MAX  # a refusal will not fix itself quickly
            except (OSError, TimeoutError):
                if dialer is not None and dialer.transport is not None:
                    dialer.transport.close()
            if self.transport is not None:
                self.transport = None
            if self._stopping:
                return
            if self._was_up:
                log.info("link to peer %d (%s) is down", self.node, self.address)
                self._was_up = False
            self.server.report_unreachable(self.node)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)


class PeerTransport:
    """The node host's Transport: hands each message to its destination's link."""

    def __init__(self, server: NodeServer) -> None:
        config = server.config
        self.links: dict[int, PeerLink] = {
            node: PeerLink(server, node, config.dial.get(node, address))
            for node, address in sorted(config.peers.items())
            if node != config.node_id
        }

    def start(self) -> None:
        for link in self.links.values():
            link.start()

    async def close(self) -> None:
        for link in self.links.values():
            await link.close()

    def send(self, messages: Sequence[Message]) -> None:
        """Collect each message on its destination's link (see :meth:`flush`)."""
        links = self.links
        for message in messages:
            link = links.get(message.dst)
            if link is not None:
                link.add(message)

    def flush(self) -> None:
        """Write what every link collected since the last flush."""
        for link in self.links.values():
            link.flush()
