"""One accepted connection, sans-IO: the handshake, then a client's requests or a peer's messages.

:class:`ServerConnection` turns the bytes a connection delivers into calls on
the :class:`~herald.node.groups.NodeCore` and collects the bytes to send
back. The asyncio server wraps one around every accepted socket; the
simulator wraps one around every simulated connection, so both worlds run the
same handshake, framing and error handling.

Everything that is wrong with a byte stream ends the connection, never the
node: a bad handshake is answered with :class:`~herald.wire.protocol.Refused`,
a bad frame after it with an error frame (one :class:`Reply` with ``id`` 0 whose
error names the :class:`~herald.errors.ProtocolError` subclass), then the
connection closes (``closing`` turns true; the shell writes what is left in
the output and closes).

Flow control: :attr:`paused` says when the shell must stop reading (too many
requests unanswered, or the shell reports that its send buffer is full);
frames already received stay in the decoder until :meth:`receive` is called
again (with ``b""``) after reading resumes.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Final, cast

from herald.errors import (
    HandshakeError,
    MalformedFrameError,
    ProtocolError,
    WrongGroupError,
)
from herald.wire.frames import (
    FrameDecoder,
    decode_hello,
    decode_raft,
    decode_requests,
    encode_frame,
    encode_messages,
)
from herald.wire.protocol import ErrorInfo, Refused, Reply

from .clock import Instant
from .groups import NodeCore
from .server import ClientLink

__all__ = ["ServerConnection"]

HANDSHAKE: Final = 0
CLIENT: Final = 1
PEER: Final = 2
CLOSED: Final = 3


class ServerConnection:
    """The protocol of one accepted connection (clients and peers alike)."""

    __slots__ = (
        "_output",
        "core",
        "decoder",
        "error",
        "link",
        "name",
        "peer_node",
        "state",
        "write_blocked",
    )

    def __init__(self, core: NodeCore, name: str) -> None:
        self.core = core
        self.name = name
        self.decoder = FrameDecoder(core.config.max_frame)
        self.state = HANDSHAKE
        self.link: ClientLink | None = None
        self.peer_node = 0
        #: Why the connection is closing (a ProtocolError), if it is.
        self.error: ProtocolError | None = None
        #: The shell's send buffer is above its high-water mark.
        self.write_blocked = False
        self._output: list[bytes] = []

    @property
    def closing(self) -> bool:
        """The connection must close once the output is written."""
        return self.state == CLOSED

    @property
    def handshaking(self) -> bool:
        return self.state == HANDSHAKE

    @property
    def paused(self) -> bool:
        """Stop reading: too many requests unanswered, or replies pile up unsent."""
        link = self.link
        if link is None:
            return False
        return self.write_blocked or link.unanswered >= self.core.config.max_in_flight

    def receive(self, data: bytes, now: Instant) -> None:
        """Bytes from the connection. Raises only what the core raises as fatal
        (InvariantError, a failure of the Raft core)."""
        if self.state == CLOSED:
            return
        # feed() is a generator: closing it early keeps the frames not taken yet.
        frames = cast(Generator[bytes, None, None], self.decoder.feed(data))
        try:
            for payload in frames:
                state = self.state
                if state == CLIENT:
                    link = self.link
                    assert link is not None
                    self.core.receive(link, decode_requests(payload), now)
                    if link.failed:
                        self.fail(MalformedFrameError("a request failed unexpectedly"))
                elif state == PEER:
                    self.core.step(decode_raft(payload), now)
                elif state == HANDSHAKE:
                    self._handshake(payload)
                if self.state == CLOSED or self.paused:
                    # Backpressure holds inside a chunk too: the frames left in it
                    # stay in the decoder until reading resumes.
                    break
        except ProtocolError as error:
            self.fail(error)
        except RecursionError:
            # msgspec gives up on deeply nested values (in a field typed Any, or an
            # unknown field it skips) with RecursionError: a malformed frame.
            error_class = HandshakeError if self.state == HANDSHAKE else MalformedFrameError
            self.fail(error_class("malformed frame: values nested too deeply"))
        except WrongGroupError as error:
            # A peer that sends us another node's (or group's) messages is misconfigured.
            self.fail(HandshakeError(str(error)))
        finally:
            frames.close()

    def _handshake(self, payload: bytes) -> None:
        hello = decode_hello(payload)
        core = self.core
        if hello.role == "peer":
            refusal = core.check_peer(hello)
            if refusal:
                raise HandshakeError(refusal)
            self.state = PEER
            self.peer_node = hello.node
            self.decoder.max_frame = core.config.peer_max_frame
        else:
            self.state = CLIENT
            if hello.client:
                self.name = f"{hello.client}@{self.name}"
            self.link = core.connect(self.name)
        self._output.append(encode_frame(core.welcome()))

    def handshake_timed_out(self, seconds: float) -> None:
        if self.state == HANDSHAKE:
            self.fail(HandshakeError(f"no Hello within {seconds:g} s"))

    # -- output -------------------------------------------------------------------------

    def take_output(self) -> bytes:
        """Everything to write now: handshake answers, replies, a last error frame."""
        link = self.link
        if link is not None and link.replies and self.state != CLOSED:
            self._output.append(encode_messages(link.take_replies()))
        if not self._output:
            return b""
        output = self._output
        self._output = []
        return output[0] if len(output) == 1 else b"".join(output)

    # -- closing -----------------------------------------------------------------------

    def fail(self, error: ProtocolError) -> None:
        """Answer a protocol violation with an error frame, then close."""
        if self.state == CLOSED:
            return
        self.error = error
        if self.state == HANDSHAKE:
            self._output.append(encode_frame(Refused(type(error).__name__, str(error))))
        elif self.state == CLIENT:
            info = ErrorInfo(type(error).__name__, str(error))
            replies = self.link.take_replies() if self.link is not None else []
            self._output.append(encode_messages([*replies, Reply(0, False, None, info)]))
        self._close()

    def lost(self) -> None:
        """The transport is gone (either side closed it)."""
        self._close()
        self._output = []

    def _close(self) -> None:
        self.state = CLOSED
        if self.link is not None:
            self.core.disconnect(self.link)
