"""The bytes of a broker command in a Raft entry: a compact, versioned binary codec.

Every entry starts with the same 10 bytes::

    version (u8)  opcode (u8)  time (u64)

all integers little-endian. ``version`` is :data:`VERSION` (1); an entry of
another version is refused with :class:`~herald.errors.MalformedCommandError`
rather than misread, so a format change is a new version that old code refuses
loudly. What follows depends on the opcode.

**Publish** (opcode 5), the hot path, has its own layout::

    producer_sequence u64
    queue length u16, producer length u16, message_id length u16, header count u16
    body length u32
    queue, producer, message_id (UTF-8), then per header: name length u16,
    value length u32, name, value (UTF-8), then the body

A length of 0xFFFF marks an absent producer or message id.

**Every other command** is a fixed part, then variable parts::

    fixed fields (u8 / u32 / u64, in declaration order)
    one u32 length per variable field (0xFFFFFFFF: None)
    the variable fields' bytes, back to back

Variable fields are strings (UTF-8), byte strings, and sequence lists (u64
each). Queue options are eight u64 fields in the fixed part, 0 meaning None
(unlimited). Booleans and enums are u8.

**Batch** (opcode 16) holds other commands: after the head, ``count u32``, then
per command ``length u32`` and the command's own encoding. Batches do not nest.

**Carry** (opcode 17): after the head, ``count u32``, then per carried message
``incarnation u64, sequence u64, queue length u16, group length u16, publish
length u32``, the queue and group (UTF-8) and the publish (a Publish command's
encoding, as the log held it).

**AckMany** (opcode 18): after the head, ``queue length u16, group length
u16, count u32``, the queue and group (UTF-8), then ``count`` sequences and
``count`` tokens (u64 each): one unpack for every ack of the command.

Opcodes (stable; never reuse one): 1 Tick, 2 CreateQueue, 3 DeleteQueue,
4 PurgeQueue, 5 Publish, 6 Subscribe, 7 Heartbeat, 8 Leave, 9 Deliver, 10 Ack,
11 Nack, 12 Extend, 13 Reject, 14 Redrive, 15 DeleteGroup, 16 Batch, 17 Carry,
18 AckMany.

Decoding never raises anything but :class:`~herald.errors.MalformedCommandError`:
short or trailing bytes, an unknown opcode, invalid UTF-8 and field values a
command's constructor refuses are all reported the same way.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from herald.errors import InvalidCommandError, MalformedCommandError

from .commands import (
    Ack,
    AckMany,
    Batch,
    Carried,
    Carry,
    Command,
    CreateQueue,
    DeleteGroup,
    DeleteQueue,
    Deliver,
    Extend,
    Heartbeat,
    Leave,
    Nack,
    Publish,
    PurgeQueue,
    Redrive,
    Reject,
    Subscribe,
    Tick,
)
from .model import DeliveryMode, QueueOptions

__all__ = [
    "OPCODES",
    "VERSION",
    "Span",
    "batch_spans",
    "decode",
    "decode_entry",
    "decode_publish",
    "encode",
    "encode_ack_many",
    "encode_batch",
    "publish_fields",
]

#: Where one command is inside an entry's data: (offset, length).
Span: TypeAlias = tuple[int, int]

VERSION: Final = 1

_HEAD = struct.Struct("<BBQ")
_PUBLISH = struct.Struct("<BBQQHHHHI")
_PUBLISH_HEAD = struct.Struct("<BBQQH")  # the fields of _PUBLISH up to the queue's length
_HEADER_PAIR = struct.Struct("<HI")
_ABSENT16 = 0xFFFF
_ABSENT32 = 0xFFFFFFFF
_PUBLISH_OPCODE = 5
_BATCH_OPCODE = 16
_BATCH_HEAD = struct.Struct("<BBQI")
_CARRY_OPCODE: Final = 17
_CARRIED = struct.Struct("<QQHHI")
_LENGTH = struct.Struct("<I")
_ACK_MANY_OPCODE: Final = 18
_ACK_MANY = struct.Struct("<BBQHHI")

_MODES = (DeliveryMode.AT_LEAST_ONCE, DeliveryMode.AT_MOST_ONCE)
_MODE_CODE = {mode: code for code, mode in enumerate(_MODES)}
_OPTION_FIELDS = (
    "max_message_bytes",
    "max_length",
    "max_bytes",
    "max_deliveries",
    "dedup_ttl",
    "lease_duration",
    "producer_window",
    "producer_ttl",
)


# -- the generic layout ------------------------------------------------------------------------
#
# A field kind says how one dataclass field goes on the wire: its struct codes in
# the fixed part (empty for variable fields), and converters both ways.


@dataclass(frozen=True, slots=True)
class _Kind:
    codes: str  # struct codes in the fixed part; "" for a variable field
    to_wire: Callable[[Any], Any]  # fixed: a tuple of ints; variable: bytes or None
    from_wire: Callable[[Any], Any]  # fixed: from a tuple of ints; variable: from bytes


def _options_to_wire(options: QueueOptions) -> tuple[int, ...]:
    return tuple(getattr(options, name) or 0 for name in _OPTION_FIELDS)


def _options_from_wire(values: tuple[int, ...]) -> QueueOptions:
    fields: dict[str, int | None] = dict(zip(_OPTION_FIELDS, values, strict=True))
    for name in ("max_length", "max_bytes", "dedup_ttl", "producer_ttl"):
        if fields[name] == 0:
            fields[name] = None
    return QueueOptions(**fields)  # type: ignore[arg-type]


def _mode_from_wire(values: tuple[int, ...]) -> DeliveryMode:
    if values[0] >= len(_MODES):
        raise MalformedCommandError(f"unknown delivery mode {values[0]}")
    return _MODES[values[0]]


def _bool_from_wire(values: tuple[int, ...]) -> bool:
    if values[0] > 1:
        raise MalformedCommandError(f"a boolean must be 0 or 1, not {values[0]}")
    return values[0] == 1


def _seqs_to_wire(sequences: tuple[int, ...]) -> bytes:
    return struct.pack(f"<{len(sequences)}Q", *sequences)


def _seqs_from_wire(data: bytes) -> tuple[int, ...]:
    if len(data) % 8:
        raise MalformedCommandError("a sequence list is not a whole number of u64s")
    return struct.unpack(f"<{len(data) // 8}Q", data)


_U32 = _Kind("I", lambda v: (v,), lambda t: t[0])
_U64 = _Kind("Q", lambda v: (v,), lambda t: t[0])
_BOOL = _Kind("B", lambda v: (int(v),), _bool_from_wire)
_MODE = _Kind("B", lambda v: (_MODE_CODE[v],), _mode_from_wire)
_OPTIONS = _Kind("Q" * len(_OPTION_FIELDS), _options_to_wire, _options_from_wire)
_STR = _Kind("", lambda v: v.encode(), lambda b: b.decode())
_SEQS = _Kind("", _seqs_to_wire, _seqs_from_wire)


@dataclass(frozen=True, slots=True)
class _Layout:
    opcode: int
    command: type[Command]
    fixed: tuple[tuple[str, _Kind], ...]
    variable: tuple[tuple[str, _Kind], ...]
    struct: struct.Struct


def _layout(opcode: int, command: type[Command], *fields: tuple[str, _Kind]) -> _Layout:
    fixed = tuple(f for f in fields if f[1].codes)
    variable = tuple(f for f in fields if not f[1].codes)
    codes = "<BBQ" + "".join(kind.codes for _, kind in fixed) + "I" * len(variable)
    return _Layout(opcode, command, fixed, variable, struct.Struct(codes))


_QGC = (("queue", _STR), ("group", _STR), ("consumer", _STR))
_LEASE = (("queue", _STR), ("group", _STR), ("sequence", _U64), ("token", _U64))

_LAYOUTS = (
    _layout(1, Tick),
    _layout(2, CreateQueue, ("queue", _STR), ("options", _OPTIONS)),
    _layout(3, DeleteQueue, ("queue", _STR)),
    _layout(4, PurgeQueue, ("queue", _STR), ("dead_letters", _BOOL)),
    _layout(6, Subscribe, *_QGC, ("mode", _MODE), ("session_timeout", _U64)),
    _layout(7, Heartbeat, *_QGC),
    _layout(8, Leave, *_QGC),
    _layout(9, Deliver, *_QGC, ("max_messages", _U32), ("lease_duration", _U64)),
    _layout(10, Ack, *_LEASE),
    _layout(11, Nack, *_LEASE, ("delay", _U64)),
    _layout(12, Extend, *_LEASE, ("duration", _U64)),
    _layout(13, Reject, *_LEASE),
    _layout(14, Redrive, ("queue", _STR), ("group", _STR), ("sequences", _SEQS)),
    _layout(15, DeleteGroup, ("queue", _STR), ("group", _STR)),
)
_BY_TYPE: dict[type[Command], _Layout] = {layout.command: layout for layout in _LAYOUTS}
_BY_OPCODE: dict[int, _Layout] = {layout.opcode: layout for layout in _LAYOUTS}

#: Opcode of every command type.
OPCODES: dict[type[Command], int] = {
    **{layout.command: layout.opcode for layout in _LAYOUTS},
    Publish: _PUBLISH_OPCODE,
    Carry: _CARRY_OPCODE,
    AckMany: _ACK_MANY_OPCODE,
}


# -- encoding ------------------------------------------------------------------------------


def encode(command: Command) -> bytes:
    """The entry payload for ``command``. Raises InvalidCommandError if it does not fit."""
    if type(command) is Publish:
        return _encode_publish(command)
    if type(command) is Batch:
        return encode_batch([encode(inner) for inner in command.commands], command.time)
    if type(command) is Carry:
        return _encode_carry(command)
    if type(command) is AckMany:
        return encode_ack_many(
            command.queue, command.group, command.sequences, command.tokens, command.time
        )
    layout = _BY_TYPE.get(type(command))
    if layout is None:
        raise InvalidCommandError(f"not a broker command: {command!r}")
    values: list[int] = [VERSION, layout.opcode, command.time]
    for name, kind in layout.fixed:
        values.extend(kind.to_wire(getattr(command, name)))
    blobs: list[bytes] = []
    for name, kind in layout.variable:
        value = getattr(command, name)
        if value is None:
            values.append(_ABSENT32)
        else:
            blob = kind.to_wire(value)
            values.append(len(blob))
            blobs.append(blob)
    try:
        return layout.struct.pack(*values) + b"".join(blobs)
    except struct.error as error:
        raise InvalidCommandError(
            f"{type(command).__name__} does not fit the codec: {error}"
        ) from None


def _encode_publish(command: Publish) -> bytes:
    queue = command.queue.encode()
    producer = b"" if command.producer is None else command.producer.encode()
    message_id = b"" if command.message_id is None else command.message_id.encode()
    parts = [b"", queue, producer, message_id]
    for name, value in command.headers:
        name_bytes, value_bytes = name.encode(), value.encode()
        parts.append(_HEADER_PAIR.pack(len(name_bytes), len(value_bytes)))
        parts.append(name_bytes)
        parts.append(value_bytes)
    parts.append(command.body)
    if len(message_id) >= _ABSENT16 or len(command.headers) > _ABSENT16:
        raise InvalidCommandError("message id or headers too long for the codec")
    try:
        parts[0] = _PUBLISH.pack(
            VERSION,
            _PUBLISH_OPCODE,
            command.time,
            command.producer_sequence,
            len(queue),
            _ABSENT16 if command.producer is None else len(producer),
            _ABSENT16 if command.message_id is None else len(message_id),
            len(command.headers),
            len(command.body),
        )
    except struct.error as error:
        raise InvalidCommandError(f"Publish does not fit the codec: {error}") from None
    return b"".join(parts)


def encode_batch(encoded: list[bytes], time: int) -> bytes:
    """A batch of already encoded commands (what a leader builds from its requests)."""
    if not encoded:
        raise InvalidCommandError("a batch needs at least one command")
    parts = [_BATCH_HEAD.pack(VERSION, _BATCH_OPCODE, time, len(encoded))]
    for payload in encoded:
        if len(payload) > 1 and payload[1] in (_BATCH_OPCODE, _CARRY_OPCODE):
            raise InvalidCommandError("a batch cannot hold another batch or a carry")
        parts.append(_LENGTH.pack(len(payload)))
        parts.append(payload)
    return b"".join(parts)


def encode_ack_many(
    queue: str, group: str, sequences: Sequence[int], tokens: Sequence[int], time: int
) -> bytes:
    """The encoding of ``AckMany(queue, group, sequences, tokens, time=time)``,
    without building the command (what a leader folding acks does)."""
    queue_bytes, group_bytes = queue.encode(), group.encode()
    count = len(sequences)
    try:
        return b"".join(
            (
                _ACK_MANY.pack(
                    VERSION, _ACK_MANY_OPCODE, time, len(queue_bytes), len(group_bytes), count
                ),
                queue_bytes,
                group_bytes,
                struct.pack(f"<{count}Q", *sequences),
                struct.pack(f"<{len(tokens)}Q", *tokens),
            )
        )
    except struct.error as error:
        raise InvalidCommandError(f"AckMany does not fit the codec: {error}") from None


def _decode_ack_many(data: bytes) -> AckMany:
    _version, _opcode, time, queue_length, group_length, count = _ACK_MANY.unpack_from(data, 0)
    at = _ACK_MANY.size
    queue = data[at : at + queue_length].decode()
    at += queue_length
    group = data[at : at + group_length].decode()
    at += group_length
    if at + 16 * count != len(data):
        raise MalformedCommandError("an AckMany's lengths do not add up to its entry")
    numbers = struct.Struct(f"<{count}Q")
    sequences = numbers.unpack_from(data, at)
    tokens = numbers.unpack_from(data, at + 8 * count)
    return AckMany(queue, group, sequences, tokens, time=time)


def _encode_carry(command: Carry) -> bytes:
    parts = [_BATCH_HEAD.pack(VERSION, _CARRY_OPCODE, command.time, len(command.items))]
    try:
        for item in command.items:
            queue, group = item.queue.encode(), item.group.encode()
            parts.append(
                _CARRIED.pack(
                    item.incarnation, item.sequence, len(queue), len(group), len(item.publish)
                )
            )
            parts.extend((queue, group, item.publish))
    except struct.error as error:
        raise InvalidCommandError(f"Carry does not fit the codec: {error}") from None
    return b"".join(parts)


def _decode_carry(data: bytes, spans: list[Span] | None = None) -> Carry:
    _version, _opcode, time, count = _BATCH_HEAD.unpack_from(data, 0)
    offset = _BATCH_HEAD.size
    items: list[Carried] = []
    for _ in range(count):
        incarnation, sequence, queue_length, group_length, length = _CARRIED.unpack_from(
            data, offset
        )
        offset += _CARRIED.size
        queue = data[offset : offset + queue_length].decode()
        offset += queue_length
        group = data[offset : offset + group_length].decode()
        offset += group_length
        end = offset + length
        if end > len(data):
            raise MalformedCommandError("a carried publish runs past the end of the entry")
        if spans is not None:
            spans.append((offset, length))
        items.append(Carried(queue, incarnation, group, sequence, bytes(data[offset:end])))
        offset = end
    if offset != len(data):
        raise MalformedCommandError(f"{len(data) - offset} bytes after the carry")
    return Carry(tuple(items), time=time)


def batch_spans(lengths: list[int]) -> list[Span]:
    """Where the commands of ``encode_batch(payloads)`` are, given the payloads' lengths."""
    spans: list[Span] = []
    offset = _BATCH_HEAD.size
    for length in lengths:
        offset += 4
        spans.append((offset, length))
        offset += length
    return spans


def _decode_batch(data: bytes, spans: list[Span] | None = None, log: bool = False) -> Batch:
    _version, _opcode, time, count = _BATCH_HEAD.unpack_from(data, 0)
    offset = _BATCH_HEAD.size
    commands: list[Command] = []
    for _ in range(count):
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += 4
        if spans is not None:
            spans.append((offset, length))
        end = offset + length
        if end > len(data):
            raise MalformedCommandError("a batched command runs past the end of the entry")
        if log and length > 1 and data[offset] == VERSION and data[offset + 1] == _PUBLISH_OPCODE:
            commands.append(_publish_from_log(data, offset, length))
            offset = end
            continue
        payload = data[offset:end]
        if len(payload) > 1 and payload[1] in (_BATCH_OPCODE, _CARRY_OPCODE):
            raise MalformedCommandError("a batch cannot hold another batch or a carry")
        commands.append(decode(payload))
        offset = end
    if offset != len(data):
        raise MalformedCommandError(f"{len(data) - offset} bytes after the batch")
    return Batch(tuple(commands), time=time)


# -- decoding -------------------------------------------------------------------------------


def decode_entry(data: bytes) -> tuple[Command, list[Span]]:
    """The command in an entry payload and where each command it holds is: one span
    per command of a batch, else the whole entry. Raises MalformedCommandError.

    What a replica applies: the publishes of a batch are read in place and not
    validated again (see :func:`_publish_from_log`).
    """
    if len(data) >= _HEAD.size and data[0] == VERSION and data[1] in (_BATCH_OPCODE, _CARRY_OPCODE):
        spans: list[Span] = []
        try:
            if data[1] == _BATCH_OPCODE:
                return _decode_batch(data, spans, log=True), spans
            return _decode_carry(data, spans), spans
        except MalformedCommandError:
            raise
        except (struct.error, UnicodeDecodeError, InvalidCommandError, TypeError) as error:
            raise MalformedCommandError(f"undecodable command: {error}") from None
    return decode(data), [(0, len(data))]


def publish_fields(
    data: bytes, offset: int, length: int
) -> tuple[bytes, tuple[tuple[str, str], ...], str | None, str | None]:
    """(body, headers, message_id, producer) of the Publish at ``data[offset:offset +
    length]``, read in place: the hot path of every delivery, which reads a stored
    message back from its entry. The command was validated when it was proposed
    and applied, so only its layout is checked here. Raises MalformedCommandError."""
    try:
        (
            version,
            opcode,
            _time,
            _producer_sequence,
            queue_length,
            producer_length,
            message_id_length,
            header_count,
            body_length,
        ) = _PUBLISH.unpack_from(data, offset)
        if version != VERSION or opcode != _PUBLISH_OPCODE:
            raise MalformedCommandError("not a publish")
        at = offset + _PUBLISH.size + queue_length
        producer: str | None = None
        if producer_length != _ABSENT16:
            producer = data[at : at + producer_length].decode()
            at += producer_length
        message_id: str | None = None
        if message_id_length != _ABSENT16:
            message_id = data[at : at + message_id_length].decode()
            at += message_id_length
        headers: tuple[tuple[str, str], ...] = ()
        if header_count:
            pairs = []
            for _ in range(header_count):
                name_length, value_length = _HEADER_PAIR.unpack_from(data, at)
                at += _HEADER_PAIR.size
                name_end = at + name_length
                end = name_end + value_length
                pairs.append((data[at:name_end].decode(), data[name_end:end].decode()))
                at = end
            headers = tuple(pairs)
        end = at + body_length
        if end != offset + length:
            raise MalformedCommandError("publish lengths do not add up to its place")
        return data[at:end], headers, message_id, producer
    except (struct.error, UnicodeDecodeError) as error:
        raise MalformedCommandError(f"undecodable publish: {error}") from None


def decode_publish(data: bytes) -> Publish:
    """The Publish command in ``data``. Raises MalformedCommandError for anything else."""
    command = decode(data)
    if type(command) is not Publish:
        raise MalformedCommandError(f"not a publish: {type(command).__name__}")
    return command


def decode(data: bytes) -> Command:
    """The command in an entry payload. Raises MalformedCommandError for anything else."""
    try:
        if len(data) < _HEAD.size:
            raise MalformedCommandError(f"an entry of {len(data)} bytes holds no command")
        if data[0] != VERSION:
            raise MalformedCommandError(f"unsupported command codec version {data[0]}")
        opcode = data[1]
        if opcode == _PUBLISH_OPCODE:
            return _decode_publish(data)
        if opcode == _BATCH_OPCODE:
            return _decode_batch(data)
        if opcode == _CARRY_OPCODE:
            return _decode_carry(data)
        if opcode == _ACK_MANY_OPCODE:
            return _decode_ack_many(data)
        layout = _BY_OPCODE.get(opcode)
        if layout is None:
            raise MalformedCommandError(f"unknown command opcode {opcode}")
        values = layout.struct.unpack_from(data, 0)
        kwargs: dict[str, Any] = {"time": values[2]}
        at = 3
        for name, kind in layout.fixed:
            width = len(kind.codes)
            kwargs[name] = kind.from_wire(values[at : at + width])
            at += width
        offset = layout.struct.size
        for name, kind in layout.variable:
            length = values[at]
            at += 1
            if length == _ABSENT32:
                kwargs[name] = None
                continue
            end = offset + length
            if end > len(data):
                raise MalformedCommandError("a field runs past the end of the entry")
            kwargs[name] = kind.from_wire(bytes(data[offset:end]))
            offset = end
        if offset != len(data):
            raise MalformedCommandError(f"{len(data) - offset} bytes after the command")
        command: Command = layout.command(**kwargs)
        return command
    except MalformedCommandError:
        raise
    except (struct.error, UnicodeDecodeError, InvalidCommandError, TypeError) as error:
        raise MalformedCommandError(f"undecodable command: {error}") from None


# A Publish's fields, set past the frozen dataclass's __setattr__ (C descriptors).
def _slot_setter(name: str) -> Callable[[Publish, object], None]:
    setter: Callable[[Publish, object], None] = getattr(Publish, name).__set__
    return setter


_SET_TIME = _slot_setter("time")
_SET_QUEUE = _slot_setter("queue")
_SET_BODY = _slot_setter("body")
_SET_HEADERS = _slot_setter("headers")
_SET_MESSAGE_ID = _slot_setter("message_id")
_SET_PRODUCER = _slot_setter("producer")
_SET_PRODUCER_SEQUENCE = _slot_setter("producer_sequence")
_new_publish = object.__new__


def _publish_from_log(data: bytes, offset: int, length: int) -> Publish:
    """The Publish at ``data[offset:offset + length]`` of a committed entry, read in
    place and built without its constructor's checks: a leader validated it when
    it proposed it (every Publish in a log was constructed, hence valid), and the
    log's checksums guard its bytes. The checks were a third of what a follower
    spent applying a publish; every replica decodes alike, so it stays
    deterministic whatever an entry holds."""
    time, producer_sequence, queue, body, headers, message_id, producer = _publish_parts(
        data, offset, length
    )
    command: Publish = _new_publish(Publish)
    _SET_TIME(command, time)
    _SET_QUEUE(command, queue)
    _SET_BODY(command, body)
    _SET_HEADERS(command, headers)
    _SET_MESSAGE_ID(command, message_id)
    _SET_PRODUCER(command, producer)
    _SET_PRODUCER_SEQUENCE(command, producer_sequence)
    return command


def _publish_parts(
    data: bytes, offset: int, length: int
) -> tuple[int, int, str, bytes, tuple[tuple[str, str], ...], str | None, str | None]:
    """(time, producer_sequence, queue, body, headers, message_id, producer) of the
    Publish at ``data[offset:offset + length]``. Raises MalformedCommandError."""
    try:
        _version, _opcode, time, producer_sequence, queue_length = _PUBLISH_HEAD.unpack_from(
            data, offset
        )
        at = offset + _PUBLISH.size
        queue = data[at : at + queue_length].decode()
    except (struct.error, UnicodeDecodeError) as error:
        raise MalformedCommandError(f"undecodable publish: {error}") from None
    body, headers, message_id, producer = publish_fields(data, offset, length)
    return time, producer_sequence, queue, body, headers, message_id, producer


def _decode_publish(data: bytes) -> Publish:
    time, producer_sequence, queue, body, headers, message_id, producer = _publish_parts(
        data, 0, len(data)
    )
    return Publish(queue, bytes(body), headers, message_id, producer, producer_sequence, time=time)
