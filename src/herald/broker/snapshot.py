"""The broker's state as bytes: a deterministic, versioned serialization.

Replicas that applied the same log produce byte-identical snapshots. What makes
that true:

- every dictionary is written in its insertion order, which is a function of
  the log, and :func:`load` re-inserts in that order, so a restored replica's
  dictionaries are ordered exactly like those of a replica that never
  restarted;
- what the state keeps in a layout that depends on its history rather than
  on its content is not written but rebuilt: the retry heaps (from the
  READY messages), each consumer's set of leases (from the leases), and the
  timer heap (one timer per lease, delayed nack, consumer, key index and
  producer table; the stale timers a live replica may still carry never act,
  see :mod:`herald.broker.machine`);
- integers are fixed-width little-endian, strings UTF-8 with a length prefix.

Layout (all integers little-endian; ``str`` is a u32 length and UTF-8 bytes,
``str?`` the same with length 0xFFFFFFFF for None)::

    magic "HBRKSNAP"  version u32 (3)
    now u64  next_token u64  next_incarnation u64  queue count u32
    per queue:
      name str  options 8 x u64 (0: None)  incarnation u64  next_sequence u64
      counters 15 x u64
      run count u32, per run of consecutive retained sequences: first u64,
          count u32, then per column (entry index u64, offset u32, length u32,
          size u32, publish time u64, refs u32) its ``count`` values: where each
          message's publish is in the log, its size for the queue's limits and
          the groups that have not settled it. No bodies: they stay in the log.
      key count u32, per key: key str, sequence u64, expiry u64 (0: no TTL)
      producer count u32, per producer: name str, last_sequence u64,
          last_seen u64, outcome count u32 + outcome each (the outcomes of
          last_sequence - count + 1 .. last_sequence)
      group count u32, per group: name str, origin u64, first_token u64,
          backlog range count u32 + (low u64, high u64) each, [low, high),
          pending count u32, per pending: sequence u64, attempts u32, base u32,
              status u8, token u64, deadline u64, consumer str, available_at u64,
              reason u8 (0: None), history (below)
          consumer count u32, per consumer: name str, mode u8,
              session_timeout u64, last_seen u64, incarnation u64
      dead letter count u32, per letter: group str, message, attempts u32,
          reason u8, time u64, history
    message (of a dead letter): sequence u64, publish_time u64, entry index u64,
        offset u32 and length u32 of its publish in the entry's data, size u32.
    history: count u32, per attempt: attempt u32, token u64, consumer str,
        delivered_at u64, deadline u64, outcome str
    outcome: kind u8, then for kind 0 (a receipt) the queue sequence u64; for
        kind 1 (a refusal) the error's class name str (of herald.errors),
        message str, attribute count u32, per attribute: name str, kind u8
        (0: str, 1: int), value str (an int in decimal)

A snapshot that does not decode raises :class:`~herald.errors.BrokerSnapshotError`.
Versions 1 and 2 held every message's body and are refused with a
:class:`~herald.errors.BrokerSnapshotError` that says so.
"""

from __future__ import annotations

import heapq
import struct
from array import array
from typing import Final

import herald.errors as _errors
from herald.errors import BrokerError, BrokerSnapshotError, InvalidOptionsError, InvariantError

from .index import COLUMNS, Run
from .model import (
    DeadLetter,
    DeadLetterReason,
    DeliveryMode,
    DeliveryRecord,
    QueueOptions,
    RedeliveryReason,
)
from .state import (
    COUNTER_FIELDS,
    DELAYED,
    LEASED,
    READY,
    T_DELAY,
    T_KEYS,
    T_LEASE,
    T_PRODUCERS,
    T_SESSION,
    Attempt,
    BrokerState,
    Consumer,
    Group,
    Outcome,
    Pending,
    Producer,
    Queue,
    Refusal,
    Timer,
)
from .stored import EntryReader, MessageRef

__all__ = ["MAGIC", "READABLE", "VERSION", "dump", "dump_parts", "load"]

MAGIC: Final = b"HBRKSNAP"
VERSION: Final = 3
#: Versions :func:`load` reads. Versions 1 and 2 held every message's body, which
#: now stays in the log; their entries' positions were never recorded, so they
#: cannot be read into this state.
READABLE: Final = (3,)

_U8 = struct.Struct("<B")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_REF = struct.Struct("<QQQIII")  # sequence, publish time, index, offset, length, size
_COLUMN_WIDTHS = tuple(struct.calcsize("<" + code) for _name, code in COLUMNS)
_RUN_BYTES = sum(_COLUMN_WIDTHS)  # per message of a run
_ABSENT = 0xFFFFFFFF
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
_OPTIONS = struct.Struct("<8Q")
_COUNTERS = struct.Struct(f"<{len(COUNTER_FIELDS)}Q")
_MODES = (DeliveryMode.AT_LEAST_ONCE, DeliveryMode.AT_MOST_ONCE)
_REASONS = (None, *RedeliveryReason)
_DEAD_REASONS = tuple(DeadLetterReason)
_STATUSES = (LEASED, READY, DELAYED)
_RECEIPT = 0
_REFUSAL = 1
_TEXT = 0
_INT = 1
#: A refusal names its error class; only the broker's errors of herald.errors are read.
_ERROR_CLASSES: Final[dict[str, type[BrokerError]]] = {
    name: value
    for name in _errors.__all__
    if isinstance(value := getattr(_errors, name, None), type) and issubclass(value, BrokerError)
}


# -- writing ---------------------------------------------------------------------------------------


class _Writer:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        # Arrays and views: index columns, copied once, by the final join.
        self.parts: list[bytes | array[int] | memoryview | _Written] = []

    def u8(self, value: int) -> None:
        self.parts.append(_U8.pack(value))

    def u32(self, value: int) -> None:
        self.parts.append(_U32.pack(value))

    def u64(self, value: int) -> None:
        self.parts.append(_U64.pack(value))

    def blob(self, value: bytes) -> None:
        self.parts.append(_U32.pack(len(value)))
        self.parts.append(value)

    def text(self, value: str) -> None:
        self.blob(value.encode())

    def opt_str(self, value: str | None) -> None:
        if value is None:
            self.parts.append(_U32.pack(_ABSENT))
        else:
            self.blob(value.encode())


class _Written(list[bytes | memoryview]):
    """A chunk's runs as the index keeps them for checkpoints (ChunkParts):
    handed on as they are."""

    __slots__ = ()


def dump(state: BrokerState) -> bytes:
    """Serialize the state (deterministically; see the module docstring)."""
    return b"".join(_write(state, freeze=False).parts)  # type: ignore[arg-type]  # no _Written


#: A buffer at least this large is handed on as it is, not joined with the rest
#: (a full chunk's columns are 16 and 32 KiB).
_LARGE: Final = 4 * 1024


def dump_parts(state: BrokerState) -> list[bytes | memoryview]:
    """The bytes :func:`dump` returns, as a list of buffers to write one after the
    other: the index columns are views into the state's own arrays (frozen: the
    index copies a chunk before it next changes it), the rest is joined into a
    few bytes objects. Taking it copies no index, so a checkpoint of a million
    messages costs the event loop well under a millisecond of copying, and the
    buffers stay valid while another thread writes them."""
    parts: list[bytes | memoryview] = []
    small: list[bytes | array[int] | memoryview] = []
    for part in _write(state, freeze=True).parts:
        if isinstance(part, _Written):
            if small:
                parts.append(b"".join(small))
                small = []
            parts.extend(part)
            continue
        if isinstance(part, bytes) or memoryview(part).nbytes < _LARGE:
            small.append(part)
            continue
        if small:
            parts.append(b"".join(small))
            small = []
        parts.append(memoryview(part).cast("B"))
    if small:
        parts.append(b"".join(small))
    return parts


def _write(state: BrokerState, *, freeze: bool) -> _Writer:
    w = _Writer()
    w.parts.append(MAGIC)
    w.u32(VERSION)
    w.u64(state.now)
    w.u64(state.next_token)
    w.u64(state.next_incarnation)
    w.u32(len(state.queues))
    for queue in state.queues.values():
        _dump_queue(w, queue, freeze)
    return w


def _dump_queue(w: _Writer, queue: Queue, freeze: bool) -> None:
    w.text(queue.name)
    w.parts.append(_OPTIONS.pack(*(getattr(queue.options, name) or 0 for name in _OPTION_FIELDS)))
    w.u64(queue.incarnation)
    w.u64(queue.next_sequence)
    w.parts.append(_COUNTERS.pack(*queue.counters.values()))

    if freeze:
        chunks = list(queue.messages.checkpoint_parts())
        w.u32(sum(count for count, _parts in chunks))
        for _count, parts in chunks:
            w.parts.append(_Written(parts))
    else:
        runs = list(queue.messages.runs())
        w.u32(len(runs))
        for run in runs:
            w.u64(run.first)
            w.u32(len(run))
            w.parts.extend(run.to_bytes())

    w.u32(len(queue.keys))
    if queue.options.dedup_ttl is None:
        for key, sequence in queue.keys.items():
            w.text(key)
            w.u64(sequence)
            w.u64(0)
    else:
        for key, expiry in zip(queue.key_order, queue.key_expiry, strict=True):
            w.text(key)
            w.u64(queue.keys[key])
            w.u64(expiry)

    w.u32(len(queue.producers))
    for name, producer in queue.producers.items():
        w.text(name)
        w.u64(producer.last_sequence)
        w.u64(producer.last_seen)
        w.u32(len(producer.outcomes))
        for outcome in producer.outcomes:
            _dump_outcome(w, outcome)

    w.u32(len(queue.groups))
    for group in queue.groups.values():
        w.text(group.name)
        w.u64(group.origin)
        w.u64(group.first_token)
        ranges = group.backlog.ranges()
        w.u32(len(ranges))
        w.parts.append(struct.pack(f"<{2 * len(ranges)}Q", *(n for pair in ranges for n in pair)))
        w.u32(len(group.pending))
        for sequence, pending in group.pending.items():
            w.u64(sequence)
            w.u32(pending.attempts)
            w.u32(pending.base)
            w.u8(pending.status)
            w.u64(pending.token)
            w.u64(pending.deadline)
            w.text(pending.consumer)
            w.u64(pending.available_at)
            w.u8(_REASONS.index(pending.reason))
            _dump_history(w, [attempt.freeze() for attempt in pending.history])
        w.u32(len(group.consumers))
        for consumer in group.consumers.values():
            w.text(consumer.name)
            w.u8(_MODES.index(consumer.mode))
            w.u64(consumer.session_timeout)
            w.u64(consumer.last_seen)
            w.u64(consumer.incarnation)

    w.u32(len(queue.dead_letters))
    for (group_name, _sequence), letter in queue.dead_letters.items():
        w.text(group_name)
        _dump_ref(w, letter.stored, letter.size)
        w.u32(letter.attempts)
        w.u8(_DEAD_REASONS.index(letter.reason))
        w.u64(letter.time)
        _dump_history(w, letter.history)


def _dump_outcome(w: _Writer, outcome: Outcome) -> None:
    if not isinstance(outcome, Refusal):
        w.u8(_RECEIPT)
        w.u64(outcome)
        return
    w.u8(_REFUSAL)
    w.text(outcome.kind.__name__)
    w.text(outcome.message)
    w.u32(len(outcome.attributes))
    for name, value in outcome.attributes:
        w.text(name)
        if isinstance(value, str):
            w.u8(_TEXT)
            w.text(value)
        else:
            w.u8(_INT)
            w.text(str(value))


def _dump_ref(w: _Writer, ref: MessageRef, size: int) -> None:
    w.parts.append(
        _REF.pack(ref.sequence, ref.publish_time, ref.index, ref.offset, ref.length, size)
    )


def _dump_history(w: _Writer, history: tuple[DeliveryRecord, ...] | list[DeliveryRecord]) -> None:
    w.u32(len(history))
    for record in history:
        w.u32(record.attempt)
        w.u64(record.token)
        w.text(record.consumer)
        w.u64(record.delivered_at)
        w.u64(record.deadline)
        w.text(record.outcome)


# -- reading ---------------------------------------------------------------------------------------


class _Reader:
    __slots__ = ("data", "offset")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise BrokerSnapshotError("the broker snapshot ends early")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def fixed(self, layout: struct.Struct) -> tuple[int, ...]:
        values: tuple[int, ...] = layout.unpack(self.take(layout.size))
        return values

    def u8(self) -> int:
        return self.fixed(_U8)[0]

    def u32(self) -> int:
        return self.fixed(_U32)[0]

    def u64(self) -> int:
        return self.fixed(_U64)[0]

    def blob(self) -> bytes:
        return self.take(self.u32())

    def text(self) -> str:
        return self.blob().decode()

    def opt_str(self) -> str | None:
        length = self.u32()
        return None if length == _ABSENT else self.take(length).decode()

    def count(self, item_size: int = 1) -> int:
        """A count of items of at least ``item_size`` bytes each; refuses absurd ones."""
        count = self.u32()
        if count * item_size > len(self.data) - self.offset:
            raise BrokerSnapshotError(f"a count of {count} runs past the end of the snapshot")
        return count


def load(data: bytes, reader: EntryReader) -> BrokerState:
    """Rebuild a state from :func:`dump`'s bytes; its messages read their bodies with
    ``reader``. Raises BrokerSnapshotError."""
    try:
        return _load(_Reader(data), reader)
    except BrokerSnapshotError:
        raise
    except (
        UnicodeDecodeError,
        InvalidOptionsError,
        InvariantError,
        IndexError,
        KeyError,
        ValueError,
    ) as error:
        raise BrokerSnapshotError(f"the broker snapshot does not decode: {error}") from None


def _load(r: _Reader, reader: EntryReader) -> BrokerState:
    if r.take(len(MAGIC)) != MAGIC:
        raise BrokerSnapshotError("not a broker snapshot")
    version = r.u32()
    if version in (1, 2):
        raise BrokerSnapshotError(
            f"broker snapshot version {version} was written by a Herald that kept message "
            "bodies in memory; this one reads them from the log and cannot use it "
            "(start the node with an empty data directory to rejoin its cluster)"
        )
    if version not in READABLE:
        raise BrokerSnapshotError(f"broker snapshot version {version} is not supported")
    state = BrokerState()
    state.now = r.u64()
    state.next_token = r.u64()
    state.next_incarnation = r.u64()
    for _ in range(r.count()):
        queue = _load_queue(r, reader)
        if queue.name in state.queues:
            raise BrokerSnapshotError(f"queue {queue.name!r} appears twice")
        state.queues[queue.name] = queue
    if r.offset != len(r.data):
        raise BrokerSnapshotError("bytes after the end of the broker snapshot")
    state.timers = _rebuild_timers(state)
    state.check()
    return state


def _load_queue(r: _Reader, reader: EntryReader) -> Queue:
    name = r.text()
    values: dict[str, int | None] = dict(zip(_OPTION_FIELDS, r.fixed(_OPTIONS), strict=True))
    for optional in ("max_length", "max_bytes", "dedup_ttl", "producer_ttl"):
        if values[optional] == 0:
            values[optional] = None
    options = QueueOptions(**values)  # type: ignore[arg-type]
    queue = Queue(name, options, r.u64())
    queue.next_sequence = r.u64()
    for field, value in zip(COUNTER_FIELDS, r.fixed(_COUNTERS), strict=True):
        setattr(queue.counters, field, value)

    previous_end = 0
    for _ in range(r.count(12)):
        first = r.u64()
        count = r.count(_RUN_BYTES)
        if count == 0 or first < previous_end or first == 0:
            raise BrokerSnapshotError(f"a run of {count} messages at {first} out of order")
        if first + count > queue.next_sequence:
            raise BrokerSnapshotError(f"a run of messages at {first} beyond the next sequence")
        blobs = [r.take(count * width) for width in _COLUMN_WIDTHS]
        queue.messages.load_run(Run.from_bytes(first, count, blobs))
        previous_end = first + count
    # Every chunk's lowest entry, now: the first pin asks for all of them, and
    # that is 0.2 s at ten million messages, better paid here than in a pause.
    queue.messages.pin()

    for _ in range(r.count(8)):
        key = r.text()
        queue.keys[key] = r.u64()
        expiry = r.u64()
        if (expiry == 0) != (options.dedup_ttl is None):
            raise BrokerSnapshotError(f"key {key!r} has an expiry that contradicts the TTL")
        if options.dedup_ttl is not None:
            queue.key_order.append(key)
            queue.key_expiry.append(expiry)

    for _ in range(r.count(8)):
        producer_name = r.text()
        producer = Producer(r.u64(), r.u64())
        window = r.count(9)
        outcomes: list[Outcome] = [_load_outcome(r) for _ in range(window)]
        if not 0 < window <= min(options.producer_window, producer.last_sequence):
            raise BrokerSnapshotError(f"producer {producer_name!r}: {window} outcomes")
        producer.outcomes = outcomes
        queue.producers[producer_name] = producer

    for _ in range(r.count(8)):
        group = Group(r.text(), r.u64(), r.u64())
        range_count = r.count(16)
        bounds = struct.unpack(f"<{2 * range_count}Q", r.take(16 * range_count))
        for low, high in zip(bounds[::2], bounds[1::2], strict=True):
            # Ranges are cheap to write and costly to walk: every sequence in one
            # must be a retained message, so no range may outgrow the queue.
            if high > queue.next_sequence or high - low > len(queue.messages):
                raise BrokerSnapshotError(f"backlog range {low}..{high} of {group.name!r}")
            group.backlog.add_range(low, high)
        if len(group.backlog) > len(queue.messages):
            raise BrokerSnapshotError(f"the backlog of {group.name!r} outgrows the queue")
        for _ in range(r.count(8)):
            sequence = r.u64()
            pending = Pending()
            pending.attempts = r.u32()
            pending.base = r.u32()
            pending.status = r.u8()
            if pending.status not in _STATUSES:
                raise BrokerSnapshotError(f"unknown delivery status {pending.status}")
            pending.token = r.u64()
            pending.deadline = r.u64()
            pending.consumer = r.text()
            pending.available_at = r.u64()
            pending.reason = _REASONS[r.u8()]
            pending.history = [
                Attempt(h.attempt, h.token, h.consumer, h.delivered_at, h.deadline, h.outcome)
                for h in _load_history(r)
            ]
            group.pending[sequence] = pending
        for _ in range(r.count(8)):
            consumer_name = r.text()
            mode = _MODES[r.u8()]
            consumer = Consumer(consumer_name, mode, r.u64(), r.u64(), r.u64())
            group.consumers[consumer_name] = consumer
        # Derived: the retry heap and each consumer's leases.
        for sequence, pending in group.pending.items():
            if pending.status == READY:
                group.retry.append(sequence)
            elif pending.status == LEASED:
                holder = group.consumers.get(pending.consumer)
                if holder is None:
                    raise BrokerSnapshotError(f"a lease held by unknown {pending.consumer!r}")
                holder.leases[sequence] = None
        group.retry.sort()
        if group.name in queue.groups:
            raise BrokerSnapshotError(f"group {group.name!r} appears twice")
        queue.groups[group.name] = group

    for _ in range(r.count(8)):
        group_name = r.text()
        ref, size = _load_ref(r, reader)
        letter = DeadLetter(
            queue.name,
            group_name,
            ref,
            size,
            r.u32(),
            _DEAD_REASONS[r.u8()],
            r.u64(),
            _load_history(r),
        )
        queue.dead_letters[(group_name, ref.sequence)] = letter
    return queue


def _load_outcome(r: _Reader) -> Outcome:
    kind = r.u8()
    if kind == _RECEIPT:
        return r.u64()
    if kind != _REFUSAL:
        raise BrokerSnapshotError(f"unknown producer outcome kind {kind}")
    class_name = r.text()
    error_class = _ERROR_CLASSES.get(class_name)
    if error_class is None:
        raise BrokerSnapshotError(f"a refusal by unknown error class {class_name!r}")
    message = r.text()
    attributes: list[tuple[str, str | int]] = []
    for _ in range(r.count(9)):
        name = r.text()
        value_kind = r.u8()
        if value_kind not in (_TEXT, _INT):
            raise BrokerSnapshotError(f"unknown attribute kind {value_kind}")
        text = r.text()
        if value_kind == _TEXT:
            attributes.append((name, text))
            continue
        number = int(text)
        if str(number) != text:  # one spelling per value, or replicas' bytes differ
            raise BrokerSnapshotError(f"attribute {name!r}: {text!r} is not a decimal integer")
        attributes.append((name, number))
    return Refusal(error_class, message, tuple(attributes))


def _load_ref(r: _Reader, reader: EntryReader) -> tuple[MessageRef, int]:
    sequence, publish_time, index, offset, length, size = r.fixed(_REF)
    if index == 0:
        raise BrokerSnapshotError(f"message {sequence} at log index 0")
    return MessageRef(sequence, index, offset, length, publish_time, reader), size


def _load_history(r: _Reader) -> tuple[DeliveryRecord, ...]:
    return tuple(
        DeliveryRecord(r.u32(), r.u64(), r.text(), r.u64(), r.u64(), r.text())
        for _ in range(r.count(32))
    )


def _rebuild_timers(state: BrokerState) -> list[Timer]:
    """One live timer per thing that waits for time, each at its exact due time."""
    timers: list[Timer] = []
    for queue in state.queues.values():
        q = queue.name
        if queue.key_expiry:
            timers.append((queue.key_expiry[0], T_KEYS, q, "", queue.incarnation, 0, ""))
        ttl = queue.options.producer_ttl
        if ttl is not None and queue.producers:
            first = next(iter(queue.producers.values()))
            timers.append((first.last_seen + ttl, T_PRODUCERS, q, "", queue.incarnation, 0, ""))
        for group in queue.groups.values():
            g = group.name
            for sequence, pending in group.pending.items():
                if pending.status == LEASED:
                    timers.append((pending.deadline, T_LEASE, q, g, sequence, pending.token, ""))
                elif pending.status == DELAYED:
                    timers.append(
                        (pending.available_at, T_DELAY, q, g, sequence, pending.token, "")
                    )
            for consumer in group.consumers.values():
                expires = consumer.last_seen + consumer.session_timeout
                timers.append((expires, T_SESSION, q, g, consumer.incarnation, 0, consumer.name))
    heapq.heapify(timers)
    return timers
