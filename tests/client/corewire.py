"""Driving a ClientCore by hand: a clock, one fake connection, frames encoded and decoded.

The tests play the server: they read the requests the core sends (decoded with
the real codec) and feed it replies (encoded with the real codec), moving time
with ``advance``. Nothing here sleeps or opens a socket.
"""

from __future__ import annotations

import random
from typing import Any

from herald.client._ops import Action, Close, Dial, Send
from herald.client.core import ClientCore
from herald.wire import protocol as p
from herald.wire.frames import (
    FrameDecoder,
    decode_hello,
    decode_requests,
    encode_frame,
    encode_messages,
)

__all__ = ["MS", "SECOND", "Wire", "receipt", "refusal"]

MS = 1_000
SECOND = 1_000_000


def receipt(request_id: int, sequence: int, *, duplicate: bool = False) -> p.Reply:
    """The reply to a publish that was stored as ``sequence`` (incarnation 1)."""
    return p.Reply(request_id, True, ["q", sequence, duplicate, "durable", 1])


def refusal(request_id: int, code: str, message: str = "", leader: str = "") -> p.Reply:
    return p.Reply(request_id, False, None, p.ErrorInfo(code, message or code, leader))


class Wire:
    """A ClientCore, the actions it took, and the server side of its connection."""

    def __init__(self, seeds: tuple[str, ...] = ("a:1",), **options: Any) -> None:
        self.now = 1 * SECOND
        options.setdefault("timeout", 1 * SECOND)
        self.core = ClientCore(
            list(seeds),
            name="t",
            producer_id="p",
            rng=random.Random(options.pop("seed", 7)),
            **options,
        )
        #: Every action taken, in order (``log``), and the requests of the
        #: current connection, frame by frame.
        self.log: list[Action] = []
        self.frames: list[list[Any]] = []
        self.frame_sizes: list[int] = []
        self._decoder = FrameDecoder(1 << 30)
        self._handshaken = False
        self.address: str | None = None

    # -- the driver's side -------------------------------------------------------------

    def actions(self) -> list[Action]:
        """Take the core's actions; decode what it sent on the connection."""
        taken = self.core.take_actions()
        for action in taken:
            self.log.append(action)
            if isinstance(action, Dial):
                self.address = action.address
                self._decoder = FrameDecoder(1 << 30)
                self._handshaken = False
            elif isinstance(action, Close):
                self.address = None
            elif isinstance(action, Send):
                for payload in self._decoder.feed(action.data):
                    if not self._handshaken:
                        hello = decode_hello(payload)
                        assert hello.role == "client" and hello.client == "t"
                        self._handshaken = True
                        continue
                    self.frames.append(decode_requests(payload))
                    self.frame_sizes.append(len(payload))
        return taken

    def flush(self) -> list[Any]:
        """Tick now and return the requests sent since the last call."""
        before = len(self.frames)
        self.core.tick(self.now)
        self.actions()
        return [r for frame in self.frames[before:] for r in frame]

    def advance(self, duration: int) -> list[Action]:
        """Move the clock, ticking at every wakeup on the way; the actions taken."""
        end = self.now + duration
        taken: list[Action] = []
        while True:
            wakeup = self.core.next_wakeup()
            if wakeup is None or wakeup > end:
                break
            self.now = max(self.now, wakeup)
            self.core.tick(self.now)
            taken += self.actions()
        self.now = end
        self.core.tick(end)
        taken += self.actions()
        return taken

    # -- the server's side -------------------------------------------------------------

    def dial(self) -> str:
        """The address of the Dial the core asked for (taking its actions)."""
        self.actions()
        assert self.address is not None, self.log[-3:]
        return self.address

    def fail_dial(self, reason: str = "connection refused") -> None:
        """The pending dial fails."""
        assert self.address is not None
        self.address = None
        self.core.dial_failed(reason, self.now)
        self.actions()

    def until_dial(self) -> str:
        """Move the clock to the core's next dial (through its backoff)."""
        self.actions()
        while self.address is None:
            wakeup = self.core.next_wakeup()
            assert wakeup is not None, "the core waits for nothing"
            self.now = max(self.now, wakeup)
            self.core.tick(self.now)
            self.actions()
        return self.address

    def accept(
        self, *, node: int = 1, leader: int = 1, leader_address: str = "", max_frame: int = 16 << 20
    ) -> None:
        """Complete the pending dial and greet the core with a Welcome."""
        address = self.dial()
        self.core.connected(self.now)
        self.actions()
        assert self._handshaken
        welcome = p.Welcome(
            p.PROTOCOL_VERSION, node, leader, leader_address or address, 1000, max_frame
        )
        self.core.received(encode_frame(welcome), self.now)
        self.frames = []
        self.frame_sizes = []
        self.actions()

    def open(self, **welcome: Any) -> None:
        """Start the core and connect it to the leader at the first address it dials."""
        op = self.core.connect(self.now)
        self.accept(**welcome)
        assert op.done and op.error is None, op.error

    def reply(self, *replies: p.Reply) -> list[Action]:
        """Answer with one frame holding ``replies``."""
        self.core.received(encode_messages(list(replies)), self.now)
        return self.actions()

    def lose(self) -> None:
        """The connection drops."""
        self.core.connection_lost("reset by peer", self.now)
        self.address = None
        self.actions()

    def requests(self) -> list[Any]:
        """Every request sent on the current connection so far."""
        return [r for frame in self.frames for r in frame]
