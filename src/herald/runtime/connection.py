"""One accepted TCP connection: the handshake, then a client session or an inbound peer.

Everything that is wrong with a byte stream ends the connection, never the
node: a bad handshake is answered with :class:`~herald.wire.protocol.Refused`,
a bad frame after it with an error frame (one :class:`Reply` with ``id`` 0 whose
error names the :class:`~herald.errors.ProtocolError` subclass), then the
connection closes. A connection that does not complete its handshake in time
is refused the same way.

Flow control, per connection:

- at most ``max_in_flight`` unanswered requests: beyond it the server stops
  reading the socket (``pause_reading``) until replies have gone out;
- replies wait in the transport's buffer; above ``output_high_water`` the
  server stops reading too (the client reads slower than it asks), and above
  ``max_output_bytes`` it closes the connection (the client stopped reading).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, cast

from herald.errors import HandshakeError, MalformedFrameError, ProtocolError, WrongGroupError
from herald.wire.frames import (
    FrameDecoder,
    decode_hello,
    decode_raft,
    decode_requests,
    encode_frame,
    encode_messages,
)
from herald.wire.protocol import ErrorInfo, Refused, Reply

if TYPE_CHECKING:
    from .node import NodeServer

__all__ = ["Connection", "set_nodelay", "write"]

log = logging.getLogger("herald.runtime")

_HANDSHAKE = 0
_CLIENT = 1
_PEER = 2
_CLOSED = 3


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
        "_write_blocked",
        "decoder",
        "dirty",
        "in_flight",
        "name",
        "pauses",
        "peak_in_flight",
        "peer_node",
        "replies",
        "server",
        "state",
        "transport",
    )

    def __init__(self, server: NodeServer) -> None:
        self.server = server
        self.decoder = FrameDecoder(server.config.max_frame)
        self.transport: asyncio.Transport | None = None
        self.state = _HANDSHAKE
        self.replies: list[Reply] = []
        self.dirty = False
        self.in_flight = 0
        #: Most requests ever unanswered at once, and how often reading was paused.
        self.peak_in_flight = 0
        self.pauses = 0
        self.peer_node = 0
        self.name = "?"
        self._paused = False
        self._write_blocked = False
        self._handshake_timer: asyncio.TimerHandle | None = None

    @property
    def closed(self) -> bool:
        return self.state == _CLOSED

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but are ones.
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.name = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        set_nodelay(transport)
        config = self.server.config
        transport.set_write_buffer_limits(high=config.output_high_water)
        self._handshake_timer = asyncio.get_running_loop().call_later(
            config.handshake_timeout, self._handshake_timed_out
        )
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.state == _CLOSED:
            return
        # feed() is a generator: closing it early keeps the frames not taken yet.
        frames = cast(Generator[bytes, None, None], self.decoder.feed(data))
        try:
            for payload in frames:
                state = self.state
                if state == _CLIENT:
                    self.server.on_requests(self, decode_requests(payload))
                elif state == _PEER:
                    self.server.on_raft(decode_raft(payload))
                elif state == _HANDSHAKE:
                    self._handshake(payload)
                if self._paused or self.state == _CLOSED:
                    # Backpressure holds inside a chunk too: the frames left in it
                    # stay in the decoder until reading resumes.
                    break
        except ProtocolError as error:
            self.fail(error)
        except RecursionError:
            # msgspec gives up on deeply nested values (in a field typed Any, or an
            # unknown field it skips) with RecursionError, which herald.wire.frames
            # does not translate: it is a malformed frame like any other.
            error_class = HandshakeError if self.state == _HANDSHAKE else MalformedFrameError
            self.fail(error_class("malformed frame: values nested too deeply"))
        except WrongGroupError as error:
            # A peer that sends us another node's (or group's) messages is misconfigured.
            self.fail(HandshakeError(str(error)))
        finally:
            frames.close()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        if self.state == _PEER:
            log.info("peer %d (%s) disconnected", self.peer_node, self.name)
        self.state = _CLOSED
        self.replies = []
        self.server.connections.discard(self)

    def pause_writing(self) -> None:
        self._write_blocked = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_blocked = False
        self._update_reading()

    # -- the handshake -----------------------------------------------------------------

    def _handshake(self, payload: bytes) -> None:
        hello = decode_hello(payload)
        server = self.server
        if hello.role == "peer":
            refusal = server.check_peer(hello)
            if refusal:
                raise HandshakeError(refusal)
            self.state = _PEER
            self.peer_node = hello.node
            self.decoder.max_frame = server.config.peer_max_frame
            log.info("peer %d connected from %s", hello.node, self.name)
        else:
            self.state = _CLIENT
            if hello.client:
                self.name = f"{hello.client}@{self.name}"
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        assert self.transport is not None
        write(self.transport, encode_frame(server.welcome()))

    def _handshake_timed_out(self) -> None:
        self._handshake_timer = None
        if self.state == _HANDSHAKE:
            seconds = self.server.config.handshake_timeout
            self.fail(HandshakeError(f"no Hello within {seconds:g} s"))

    # -- output ------------------------------------------------------------------------

    def add(self, reply: Reply) -> None:
        """Queue a reply; it goes out with the next flush of the server's loop."""
        self.replies.append(reply)
        if not self.dirty:
            self.dirty = True
            self.server.mark_dirty(self)

    def add_error(self, request_id: int, info: ErrorInfo) -> None:
        self.add(Reply(request_id, False, None, info))

    def flush(self) -> None:
        """Write every queued reply in one frame (one transport.write)."""
        self.dirty = False
        replies = self.replies
        if not replies:
            return
        self.replies = []
        transport = self.transport
        if self.state == _CLOSED or transport is None:
            return
        self.in_flight -= len(replies)
        if not write(transport, encode_messages(replies)):
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

    def note_requests(self, count: int) -> None:
        in_flight = self.in_flight = self.in_flight + count
        self.peak_in_flight = max(self.peak_in_flight, in_flight)
        if in_flight >= self.server.config.max_in_flight and not self._paused:
            self._update_reading()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self.state == _CLOSED:
            return
        limit = self.server.config.max_in_flight
        if transport.is_closing():
            return
        if self._paused:
            # Hysteresis: resume once a quarter of the window is free again.
            if not self._write_blocked and self.in_flight <= limit - max(1, limit // 4):
                self._paused = False
                with contextlib.suppress(RuntimeError):  # closed meanwhile (see write())
                    transport.resume_reading()
                if self.decoder.buffered:
                    # Frames that arrived before the pause are still waiting.
                    asyncio.get_running_loop().call_soon(self.data_received, b"")
        elif self._write_blocked or self.in_flight >= limit:
            self._paused = True
            self.pauses += 1
            with contextlib.suppress(RuntimeError):
                transport.pause_reading()

    # -- closing -----------------------------------------------------------------------

    def fail(self, error: Exception) -> None:
        """Answer a protocol violation with an error frame, then close."""
        log.warning("closing %s: %s: %s", self.name, type(error).__name__, error)
        transport = self.transport
        if transport is not None and self.state != _CLOSED:
            frame: Any
            if self.state == _HANDSHAKE:
                frame = encode_frame(Refused(type(error).__name__, str(error)))
            elif self.state == _CLIENT:
                info = ErrorInfo(type(error).__name__, str(error))
                frame = encode_messages([*self.replies, Reply(0, False, None, info)])
                self.replies = []
            else:
                frame = b""
            if frame:
                write(transport, frame)
        self.close()

    def close(self, abort: bool = False) -> None:
        if self.state == _CLOSED:
            return
        self.state = _CLOSED
        self.replies = []
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()
        self.server.connections.discard(self)
