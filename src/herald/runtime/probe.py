"""A tiny blocking wire client: is a node serving, and what is its status?

For the launcher, operators' scripts and test harnesses that need one answer
without an event loop. It is not the client library (:mod:`herald.client`):
no retries, no redirects, no pipelining beyond one batch of requests.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

from herald.errors import ConnectionClosedError, HandshakeError, RequestTimeoutError
from herald.wire.frames import (
    FrameDecoder,
    decode_handshake_reply,
    decode_replies,
    encode_frame,
    encode_messages,
)
from herald.wire.protocol import MAGIC, PROTOCOL_VERSION, Hello, Refused, Reply, Status, Welcome

from .config import parse_address

__all__ = ["Probe", "status"]


class Probe:
    """One connection, handshake done. Raises OSError if the node does not accept,
    HandshakeError if it refuses, RequestTimeoutError when it does not answer."""

    def __init__(self, address: str, timeout: float = 2.0, name: str = "probe") -> None:
        host, port = parse_address(address)
        self.address = address
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = FrameDecoder()
        self._frames: list[bytes] = []
        self._next_id = 0
        try:
            self.sock.sendall(encode_frame(Hello(MAGIC, PROTOCOL_VERSION, "client", client=name)))
            reply = decode_handshake_reply(self._frame())
        except BaseException:
            self.sock.close()
            raise
        if isinstance(reply, Refused):
            self.sock.close()
            raise HandshakeError(f"{reply.code}: {reply.message}")
        self.welcome: Welcome = reply

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _frame(self) -> bytes:
        while not self._frames:
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                raise RequestTimeoutError(f"{self.address} did not answer in time") from None
            if not data:
                raise ConnectionClosedError(f"{self.address} closed the connection")
            self._frames.extend(self.decoder.feed(data))
        return self._frames.pop(0)

    def call_many(self, requests: Sequence[Any]) -> list[Reply]:
        """Send the requests in one frame; their replies, in the requests' order."""
        self.sock.sendall(encode_messages(list(requests)))
        wanted = {request.id for request in requests}
        replies: dict[int, Reply] = {}
        while len(replies) < len(wanted):
            for reply in decode_replies(self._frame()):
                if reply.id in wanted:
                    replies[reply.id] = reply
        return [replies[request.id] for request in requests]

    def call(self, request: Any) -> Reply:
        return self.call_many([request])[0]

    def status(self) -> dict[str, Any]:
        reply = self.call(Status(self.next_id()))
        if not reply.ok or not isinstance(reply.value, dict):
            raise ConnectionClosedError(f"{self.address} answered Status with {reply}")
        return reply.value

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def status(address: str, timeout: float = 2.0) -> dict[str, Any]:
    """A node's Status value (see :class:`herald.wire.protocol.Status`)."""
    with Probe(address, timeout) as probe:
        return probe.status()
