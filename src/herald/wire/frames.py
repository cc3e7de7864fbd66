"""Length-prefixed frames and the msgspec codecs of every message kind.

A frame is ``length (u32, big-endian) | payload``. :class:`FrameDecoder` is
sans-IO (h11's shape): feed it whatever bytes arrived, take complete frames
out; it never blocks and never reads a socket. Every way a byte stream can be
wrong raises a :class:`~herald.errors.ProtocolError` subclass, which the
server answers with an error frame before closing the connection.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Final

import msgspec

from herald.errors import FrameTooLargeError, HandshakeError, MalformedFrameError
from herald.raft import (
    ConfState,
    Entry,
    EntryKind,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)

from .protocol import (
    MAGIC,
    PROTOCOL_VERSION,
    Hello,
    RaftEntry,
    RaftMessage,
    RaftSnapshot,
    Refused,
    Reply,
    Request,
    Welcome,
)

__all__ = [
    "DEFAULT_MAX_FRAME",
    "FrameDecoder",
    "decode_handshake_reply",
    "decode_hello",
    "decode_raft",
    "decode_replies",
    "decode_requests",
    "encode_frame",
    "encode_messages",
    "from_wire",
    "to_wire",
]

DEFAULT_MAX_FRAME: Final = 16 << 20
_LENGTH = struct.Struct(">I")

_encoder = msgspec.msgpack.Encoder()
_hello_decoder = msgspec.msgpack.Decoder(Hello)
_handshake_reply_decoder = msgspec.msgpack.Decoder(Welcome | Refused)
_requests_decoder = msgspec.msgpack.Decoder(list[Request])
_replies_decoder = msgspec.msgpack.Decoder(list[Reply])
_raft_decoder = msgspec.msgpack.Decoder(list[RaftMessage])


def encode_frame(message: object) -> bytes:
    """One message (a handshake) as a frame."""
    payload = _encoder.encode(message)
    return _LENGTH.pack(len(payload)) + payload


def encode_messages(messages: Sequence[object]) -> bytes:
    """A list of messages as one frame."""
    payload = _encoder.encode(messages)
    return _LENGTH.pack(len(payload)) + payload


class FrameDecoder:
    """Splits a byte stream into frame payloads. Not thread-safe."""

    __slots__ = ("_buffer", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Add ``data``; yield every complete frame's payload. Raises FrameTooLargeError."""
        buffer = self._buffer
        buffer += data
        offset = 0
        end = len(buffer)
        try:
            while end - offset >= 4:
                (length,) = _LENGTH.unpack_from(buffer, offset)
                if length > self.max_frame:
                    raise FrameTooLargeError(
                        f"frame of {length} bytes exceeds the limit of {self.max_frame}"
                    )
                if end - offset - 4 < length:
                    break
                start = offset + 4
                offset = start + length
                yield bytes(buffer[start:offset])
        finally:
            if offset:
                del buffer[:offset]

    @property
    def buffered(self) -> int:
        return len(self._buffer)


def _decode(decoder: msgspec.msgpack.Decoder, payload: bytes, what: str) -> object:  # type: ignore[type-arg]
    try:
        return decoder.decode(payload)
    except msgspec.DecodeError as error:
        raise MalformedFrameError(f"malformed {what}: {error}") from None
    except RecursionError:
        # Values nested deeper than the interpreter's stack (a hostile frame).
        raise MalformedFrameError(f"malformed {what}: nested too deeply") from None


def decode_hello(payload: bytes) -> Hello:
    """The first frame of a connection. Raises HandshakeError if it is not a good Hello."""
    try:
        hello = _hello_decoder.decode(payload)
    except msgspec.DecodeError as error:
        raise HandshakeError(f"the first frame must be a Hello: {error}") from None
    except RecursionError:
        raise HandshakeError("the first frame must be a Hello: nested too deeply") from None
    if hello.magic != MAGIC:
        raise HandshakeError("not a Herald client (wrong magic)")
    if hello.version != PROTOCOL_VERSION:
        raise HandshakeError(
            f"protocol version {hello.version} is not supported (this node speaks "
            f"{PROTOCOL_VERSION})"
        )
    return hello


def decode_handshake_reply(payload: bytes) -> Welcome | Refused:
    result = _decode(_handshake_reply_decoder, payload, "handshake reply")
    assert isinstance(result, Welcome | Refused)
    return result


def decode_requests(payload: bytes) -> list[Request]:
    result = _decode(_requests_decoder, payload, "request frame")
    assert isinstance(result, list)
    return result


def decode_replies(payload: bytes) -> list[Reply]:
    result = _decode(_replies_decoder, payload, "reply frame")
    assert isinstance(result, list)
    return result


def decode_raft(payload: bytes) -> list[Message]:
    raw = _decode(_raft_decoder, payload, "raft frame")
    assert isinstance(raw, list)
    try:
        return [from_wire(message) for message in raw]
    except (ValueError, TypeError) as error:
        raise MalformedFrameError(f"malformed raft message: {error}") from None


# -- Raft messages ---------------------------------------------------------------------------


def to_wire(message: Message) -> RaftMessage:
    snapshot = message.snapshot
    return RaftMessage(
        type=int(message.type),
        src=message.src,
        dst=message.dst,
        term=message.term,
        group=message.group,
        log_term=message.log_term,
        index=message.index,
        entries=[RaftEntry(e.term, e.index, int(e.kind), e.data) for e in message.entries],
        commit=message.commit,
        reject=message.reject,
        reject_hint=message.reject_hint,
        snapshot=(
            None
            if snapshot is None
            else RaftSnapshot(
                snapshot.index, snapshot.term, list(snapshot.meta.conf.voters), snapshot.data
            )
        ),
        context=message.context,
        transfer=message.transfer,
        wall=message.wall,
    )


#: The message types by number: a dict lookup, not MessageType(n) (1 us a message).
_MESSAGE_TYPES: dict[int, MessageType] = {int(kind): kind for kind in MessageType}


def from_wire(raw: RaftMessage) -> Message:
    """Raises ValueError for an unknown message type or entry kind."""
    snapshot = raw.snapshot
    kind = _MESSAGE_TYPES.get(raw.type)
    if kind is None:
        raise ValueError(f"{raw.type!r} is not a valid MessageType")
    return Message(
        type=kind,
        src=raw.src,
        dst=raw.dst,
        term=raw.term,
        group=raw.group,
        log_term=raw.log_term,
        index=raw.index,
        entries=(
            tuple(Entry(e.term, e.index, e.data, EntryKind(e.kind)) for e in raw.entries)
            if raw.entries
            else ()
        ),
        commit=raw.commit,
        reject=raw.reject,
        reject_hint=raw.reject_hint,
        snapshot=(
            None
            if snapshot is None
            else Snapshot(
                SnapshotMeta(snapshot.index, snapshot.term, ConfState(tuple(snapshot.voters))),
                snapshot.data,
            )
        ),
        context=raw.context,
        transfer=raw.transfer,
        wall=raw.wall,
    )
