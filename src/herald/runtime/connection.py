"""One accepted TCP connection: a socket around :class:`herald.node.connection.ServerConnection`.

The protocol (handshake, frames, errors) is the sans-IO connection's; this
shell owns the transport: it feeds received bytes in, writes what comes out,
pauses and resumes reading as the protocol asks (too many requests
unanswered, or its send buffer above ``output_high_water``), closes a client
that stopped reading (more than ``max_output_bytes`` unsent), and times out a
handshake that does not complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import TYPE_CHECKING, cast

from herald.node.connection import ServerConnection

if TYPE_CHECKING:
    from .node import NodeServer

__all__ = ["Connection", "set_nodelay", "write"]

log = logging.getLogger("herald.runtime")


def write(transport: asyncio.Transport, data: bytes) -> bool:
    """Write unless the transport closed; False if it did.

    A transport can be closed (the peer reset it) before our connection_lost
    runs; uvloop then raises RuntimeError on write where asyncio only warns.
    Either way the data has nowhere to go, which the caller treats as a lost
    connection, never as an error of the node.
    """
    if transport.is_closing():
        return False
    try:
        transport.write(data)
    except RuntimeError:
        return False
    return True


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Small frames must leave at once: Nagle's delay would sit on every confirm."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Connection(asyncio.Protocol):
    """A connection accepted by the node's listener (clients and peers alike)."""

    __slots__ = (
        "_handshake_timer",
        "_paused",
        "pauses",
        "peak_in_flight",
        "protocol",
        "server",
        "transport",
    )

    def __init__(self, server: NodeServer) -> None:
        self.server = server
        self.protocol = ServerConnection(server.core, "?")
        self.transport: asyncio.Transport | None = None
        #: Most requests ever unanswered at once, and how often reading was paused.
        self.peak_in_flight = 0
        self.pauses = 0
        self._paused = False
        self._handshake_timer: asyncio.TimerHandle | None = None

    @property
    def name(self) -> str:
        return self.protocol.name

    @property
    def closed(self) -> bool:
        return self.protocol.closing

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but are ones.
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.protocol.name = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        set_nodelay(transport)
        config = self.server.config
        transport.set_write_buffer_limits(high=config.output_high_water)
        self._handshake_timer = asyncio.get_running_loop().call_later(
            config.handshake_timeout, self._handshake_timed_out
        )
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        if protocol.closing:
            return
        handshaking = protocol.handshaking
        try:
            protocol.receive(data, self.server.now())
        except Exception as error:
            # What the core raises out of a request is fatal to the node.
            self.server.fatal(error)
            return
        if handshaking and not protocol.handshaking:
            self._handshake_done()
        link = protocol.link
        if link is not None and link.unanswered > self.peak_in_flight:
            self.peak_in_flight = link.unanswered
        self.flush()
        self._update_reading()
        self.server.kick()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_handshake_timer()
        if self.protocol.peer_node:
            log.info("peer %d (%s) disconnected", self.protocol.peer_node, self.name)
        self.protocol.lost()
        self.server.unregister(self)

    def pause_writing(self) -> None:
        self.protocol.write_blocked = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.protocol.write_blocked = False
        self._update_reading()

    # -- the handshake -----------------------------------------------------------------

    def _handshake_done(self) -> None:
        self._cancel_handshake_timer()
        protocol = self.protocol
        if protocol.link is not None:
            self.server.register(protocol.link, self)
        if protocol.peer_node:
            log.info("peer %d connected from %s", protocol.peer_node, self.name)

    def _handshake_timed_out(self) -> None:
        self._handshake_timer = None
        self.protocol.handshake_timed_out(self.server.config.handshake_timeout)
        self.flush()

    def _cancel_handshake_timer(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None

    # -- output ------------------------------------------------------------------------

    def flush(self) -> None:
        """Write what the protocol has to send (one transport.write); close if it is done."""
        transport = self.transport
        if transport is None:
            return
        protocol = self.protocol
        data = protocol.take_output()
        if data and not write(transport, data):
            protocol.lost()
            return
        if protocol.closing:
            if protocol.error is not None:
                log.warning(
                    "closing %s: %s: %s",
                    self.name,
                    type(protocol.error).__name__,
                    protocol.error,
                )
            self.close()
            return
        config = self.server.config
        if transport.get_write_buffer_size() > config.max_output_bytes:
            log.warning(
                "closing %s: %d bytes of replies unsent (it stopped reading)",
                self.name,
                transport.get_write_buffer_size(),
            )
            self.close(abort=True)
            return
        if self._paused:
            self._update_reading()

    def _update_reading(self) -> None:
        transport = self.transport
        protocol = self.protocol
        if transport is None or protocol.closing or transport.is_closing():
            return
        link = protocol.link
        if self._paused:
            limit = self.server.config.max_in_flight
            unanswered = link.unanswered if link is not None else 0
            # Hysteresis: resume once a quarter of the window is free again.
            if not protocol.write_blocked and unanswered <= limit - max(1, limit // 4):
                self._paused = False
                with contextlib.suppress(RuntimeError):  # closed meanwhile (see write())
                    transport.resume_reading()
                if protocol.decoder.buffered:
                    # Frames that arrived before the pause are still waiting.
                    asyncio.get_running_loop().call_soon(self.data_received, b"")
        elif protocol.paused:
            self._paused = True
            self.pauses += 1
            with contextlib.suppress(RuntimeError):
                transport.pause_reading()

    # -- closing -----------------------------------------------------------------------

    def close(self, abort: bool = False) -> None:
        self._cancel_handshake_timer()
        self.protocol.lost()
        transport = self.transport
        if transport is not None:
            if abort:
                transport.abort()
            else:
                transport.close()
        self.server.unregister(self)
