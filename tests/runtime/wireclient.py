"""A small blocking wire-level client for the runtime tests (not the client library).

It speaks the protocol of :mod:`herald.wire` directly, so the tests can also
speak it badly: raw bytes, bad handshakes, pipelines that never read.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from herald.wire.frames import (
    FrameDecoder,
    decode_handshake_reply,
    decode_replies,
    encode_frame,
    encode_messages,
)
from herald.wire.protocol import (
    MAGIC,
    PROTOCOL_VERSION,
    Hello,
    Refused,
    Reply,
    Welcome,
)


def raw_socket(address: str, timeout: float = 5.0) -> socket.socket:
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class WireClient:
    """One connection. ``hello=False`` leaves the handshake to the test."""

    def __init__(
        self, address: str, *, hello: bool = True, timeout: float = 5.0, name: str = "test"
    ) -> None:
        self.address = address
        self.sock = raw_socket(address, timeout)
        self.decoder = FrameDecoder(1 << 30)
        self.frames: list[bytes] = []
        self.last_id = 0
        self.welcome: Welcome | None = None
        if hello:
            self.send_frame(Hello(MAGIC, PROTOCOL_VERSION, "client", client=name))
            reply = self.handshake_reply()
            assert isinstance(reply, Welcome), reply
            self.welcome = reply

    # -- sending ---------------------------------------------------------------------

    def next_id(self) -> int:
        self.last_id += 1
        return self.last_id

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, message: object) -> None:
        self.sock.sendall(encode_frame(message))

    def send(self, *requests: Any) -> None:
        """Requests in one frame."""
        self.sock.sendall(encode_messages(list(requests)))

    # -- receiving -------------------------------------------------------------------

    def read_frame(self, timeout: float = 5.0) -> bytes | None:
        """The next frame's payload; None when the server closed the connection."""
        deadline = time.monotonic() + timeout
        while not self.frames:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no frame from {self.address} within {timeout} s")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(1 << 20)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.frames.extend(self.decoder.feed(data))
        return self.frames.pop(0)

    def handshake_reply(self, timeout: float = 5.0) -> Welcome | Refused:
        frame = self.read_frame(timeout)
        assert frame is not None, "closed before the handshake reply"
        return decode_handshake_reply(frame)

    def replies(self, timeout: float = 5.0) -> list[Reply]:
        frame = self.read_frame(timeout)
        assert frame is not None, "connection closed"
        return decode_replies(frame)

    def wait_for(self, ids: set[int], timeout: float = 10.0) -> dict[int, Reply]:
        deadline = time.monotonic() + timeout
        found: dict[int, Reply] = {}
        while not ids <= found.keys():
            for reply in self.replies(max(0.01, deadline - time.monotonic())):
                found[reply.id] = reply
        return found

    def call(self, request: Any, timeout: float = 10.0) -> Reply:
        self.send(request)
        return self.wait_for({request.id}, timeout)[request.id]

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """Read (and drop) everything until the server closes; False on timeout."""
        try:
            while self.read_frame(timeout) is not None:
                pass
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
