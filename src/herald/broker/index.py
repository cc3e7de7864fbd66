"""The broker's per-queue indexes, held in arrays: what a retained message costs in memory.

:class:`MessageIndex` knows, for each message a queue retains, where its publish
is in the log (entry index, offset and length), its size for the queue's
limits, its publish time and how many groups have not settled it yet: 32 bytes
a message, in ``array`` columns, in chunks of 4096 consecutive sequences. A
chunk whose messages are all settled is dropped; a chunk left with only a few
live messages (a long-lived lease among many settled ones) is kept sparse, so
memory follows what is retained, not the span of sequences.

:class:`Backlog` is a group's never-delivered sequences as ranges of
consecutive sequences: one range while messages are delivered in order.

Both iterate in increasing sequence order, whatever their internal layout, and
:mod:`herald.broker.snapshot` writes them as runs of consecutive sequences, so
two replicas that hold the same messages write the same bytes.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Final, TypeAlias

__all__ = ["CHUNK", "COLUMNS", "Backlog", "MessageIndex", "Run"]

_BITS: Final = 12
#: Sequences per chunk.
CHUNK: Final = 1 << _BITS
_MASK: Final = CHUNK - 1
#: A complete chunk with fewer live messages than this goes sparse.
_SPARSE_BELOW: Final = CHUNK // 16
#: The columns, their array type codes, in the order runs are written.
COLUMNS: Final = (
    ("entry", "q"),
    ("offset", "I"),
    ("length", "I"),
    ("size", "I"),
    ("time", "q"),
    ("refs", "I"),
)
_BIG_ENDIAN: Final = sys.byteorder == "big"
if array("I").itemsize != 4 or array("q").itemsize != 8:  # pragma: no cover - exotic C ints
    raise ImportError("herald.broker.index needs 4-byte 'I' and 8-byte 'q' arrays")

#: One retained message: (entry, offset, length, size, publish time, refs).
Record = tuple[int, int, int, int, int, int]


#: A run's column: an array, or a view into a chunk's (read at once, never kept).
Column: TypeAlias = "array[int] | memoryview"


class Run:
    """Consecutive retained sequences ``first .. first + len - 1`` and their columns.

    The runs :meth:`MessageIndex.runs` yields are *views* into the index's arrays
    where a chunk has no holes: no copy is made to write them, and they are only
    valid until the index changes (the snapshot writer reads them at once).
    """

    __slots__ = ("columns", "first")

    def __init__(self, first: int, columns: tuple[Column, ...]) -> None:
        self.first = first
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns[0])

    def to_bytes(self) -> list[bytes | Column]:
        """The columns as little-endian buffers, in :data:`COLUMNS` order (the arrays
        or views themselves where the machine is little-endian: no copy)."""
        if not _BIG_ENDIAN:
            return list(self.columns)
        out: list[bytes | Column] = []
        for (_name, code), column in zip(COLUMNS, self.columns, strict=True):
            swapped = array(code, column)
            swapped.byteswap()
            out.append(swapped.tobytes())
        return out

    @classmethod
    def from_bytes(cls, first: int, count: int, blobs: list[bytes] | list[bytes | Column]) -> Run:
        columns = []
        for (_name, code), blob in zip(COLUMNS, blobs, strict=True):
            column = array(code)
            column.frombytes(memoryview(blob).cast("B"))
            if _BIG_ENDIAN:
                column.byteswap()
            if len(column) != count:
                raise ValueError("a run's columns differ in length")
            columns.append(column)
        return cls(first, tuple(columns))


class _Dense:
    """A chunk as six arrays of CHUNK slots; a slot is live iff its entry is nonzero."""

    __slots__ = ("cached", "columns", "frozen", "high", "live", "low", "lowest")

    def __init__(self) -> None:
        self.columns = tuple(
            array(code, bytes(CHUNK * array(code).itemsize)) for _, code in COLUMNS
        )
        #: A checkpoint being written may still read these arrays: the next change
        #: copies them first (copy on write; see MessageIndex.runs).
        self.frozen = False
        #: What the last checkpoint wrote for this chunk, while nothing changed
        #: since (see checkpoint_parts): None after any change.
        self.cached: ChunkParts | None = None
        self.live = 0
        # Live slots lie within [low, high): a hint that keeps scans short.
        self.low = CHUNK
        self.high = 0
        #: The lowest live entry index (0: none live), or -1: not known, recount.
        #: The pin asks every chunk at every checkpoint; a minimum over 4096
        #: slots costs ~0.1 ms, so only chunks that changed it pay.
        self.lowest = 0

    @classmethod
    def adopt(cls, columns: tuple[array[int], ...], lowest: int) -> _Dense:
        """A full chunk made of ``columns`` themselves (CHUNK slots each, every one
        live, ``lowest`` the least entry): a restore's runs become chunks without
        zeroing and copying 128 KiB each."""
        chunk = cls.__new__(cls)
        chunk.columns = columns
        chunk.frozen = False
        chunk.cached = None
        chunk.live = CHUNK
        chunk.low = 0
        chunk.high = CHUNK
        chunk.lowest = lowest
        return chunk

    def get(self, slot: int) -> Record | None:
        columns = self.columns
        entry = columns[0][slot]
        if not entry:
            return None
        return (
            entry,
            columns[1][slot],
            columns[2][slot],
            columns[3][slot],
            columns[4][slot],
            columns[5][slot],
        )

    def writable(self) -> tuple[array[int], ...]:
        """The columns, to change: copies of them if a checkpoint may read them
        (128 KiB copied, once per chunk and checkpoint, and only if it changes)."""
        self.cached = None
        if self.frozen:
            self.columns = tuple(column[:] for column in self.columns)
            self.frozen = False
        return self.columns

    def taken(self, slot: int) -> bool:
        return self.columns[0][slot] != 0

    def put(self, slot: int, record: Record) -> None:
        # Every publish on every replica passes here: spelled out column by
        # column (and with add's check of the slot building no record), an add
        # costs ~1.1 us, not the ~2.3 us of a loop over zip(columns, record).
        if self.frozen:
            columns = self.writable()
        else:
            self.cached = None
            columns = self.columns
        entries, offsets, lengths, sizes, times, refs = columns
        entry, offsets[slot], lengths[slot], sizes[slot], times[slot], refs[slot] = record
        old = entries[slot]
        entries[slot] = entry
        if not old:
            self.live += 1
            self.low = min(self.low, slot)
            if slot >= self.high:
                self.high = slot + 1
        self._entry_changed(old, entry)

    def set_place(self, slot: int, entry: int, offset: int, length: int) -> None:
        """The live slot's publish is now at ``entry`` (a Carry moved it)."""
        columns = self.writable()
        old = columns[0][slot]
        columns[0][slot], columns[1][slot], columns[2][slot] = entry, offset, length
        self._entry_changed(old, entry)

    def _entry_changed(self, old: int, new: int) -> None:
        lowest = self.lowest
        if lowest < 0:
            return
        if old and old == lowest:
            self.lowest = -1  # the lowest may have gone up: recount when asked
        elif not lowest or new < lowest:
            self.lowest = new

    def remove(self, slot: int) -> None:
        columns = self.writable()
        if columns[0][slot] == self.lowest:
            self.lowest = -1
        for column in columns:
            column[slot] = 0
        self.live -= 1
        # Keep [low, high) tight, so a chunk consumed in order stays one run.
        entries = self.columns[0]
        low, high = self.low, self.high
        while low < high and not entries[low]:
            low += 1
        while high > low and not entries[high - 1]:
            high -= 1
        self.low, self.high = (low, high) if low < high else (CHUNK, 0)

    def fill(self, slot: int, columns: tuple[Column, ...], start: int, stop: int) -> None:
        """Slots ``slot ..`` take ``columns[start:stop]`` (all of them free; on restore)."""
        end = slot + stop - start
        for mine, theirs in zip(self.writable(), columns, strict=True):
            piece = theirs[start:stop]
            mine[slot:end] = piece if isinstance(piece, array) else array(mine.typecode, piece)
        self.live += stop - start
        self.low = min(self.low, slot)
        self.high = max(self.high, end)
        self.lowest = -1

    def lowest_entry(self) -> int:
        lowest = self.lowest
        if lowest >= 0:
            return lowest
        entries = self.columns[0]
        if self.live == self.high - self.low:
            lowest = min(entries[self.low : self.high]) if self.live else 0
        else:
            lowest = min((entry for entry in entries[self.low : self.high] if entry), default=0)
        self.lowest = lowest
        return lowest

    def slots(self) -> Iterator[int]:
        entries = self.columns[0]
        if self.live == self.high - self.low:
            return iter(range(self.low, self.high))
        return (slot for slot in range(self.low, self.high) if entries[slot])

    def checkpoint_parts(self, base: int) -> ChunkParts:
        """:func:`chunk_parts` of this chunk's frozen runs, kept until it changes:
        a chunk nothing touched since the last checkpoint costs the next one
        nothing (a backlog of ten million is 2,442 chunks, nearly all of them
        unchanged from one checkpoint to the next)."""
        cached = self.cached
        if cached is None:
            cached = self.cached = chunk_parts(self.runs(base, True))
        return cached

    def runs(self, base: int, freeze: bool) -> Iterator[Run]:
        """The live slots as runs of consecutive ones (a chunk without holes as
        views into its arrays: no copy; with ``freeze``, views that stay valid,
        the chunk copying its arrays before it next changes)."""
        low, high = self.low, self.high
        columns = self.columns
        if self.live == high - low:
            if high > low:
                if freeze:
                    self.frozen = True
                yield Run(base + low, tuple(memoryview(column)[low:high] for column in columns))
            return
        entries = columns[0]
        start = -1
        for slot in range(low, high + 1):
            if slot < high and entries[slot]:
                if start < 0:
                    start = slot
            elif start >= 0:
                yield Run(base + start, tuple(column[start:slot] for column in columns))
                start = -1


#: How a checkpoint writes one chunk: its number of runs, and per run ``first
#: u64, count u32`` and the columns, as buffers to write one after another.
ChunkParts: TypeAlias = "tuple[int, list[bytes | memoryview]]"
_RUN_HEAD: Final = struct.Struct("<QI")


def chunk_parts(runs: Iterable[Run]) -> ChunkParts:
    """The runs as a checkpoint writes them (see ChunkParts)."""
    parts: list[bytes | memoryview] = []
    count = 0
    for run in runs:
        count += 1
        parts.append(_RUN_HEAD.pack(run.first, len(run)))
        for column in run.to_bytes():
            parts.append(column if isinstance(column, bytes) else memoryview(column).cast("B"))
    return count, parts


class _Sparse:
    """A chunk with few live slots: a dict of them (slots kept in increasing order)."""

    __slots__ = ("records",)

    def __init__(self, records: dict[int, Record]) -> None:
        self.records = records

    @property
    def live(self) -> int:
        return len(self.records)

    def get(self, slot: int) -> Record | None:
        return self.records.get(slot)

    def taken(self, slot: int) -> bool:
        return slot in self.records

    def put(self, slot: int, record: Record) -> None:
        records = self.records
        if slot in records or not records or slot > next(reversed(records)):
            records[slot] = record
            return
        # Keep the slots in increasing order (rare: a redriven message comes back).
        records[slot] = record
        self.records = dict(sorted(records.items()))

    def remove(self, slot: int) -> None:
        del self.records[slot]

    def slots(self) -> Iterator[int]:
        return iter(list(self.records))

    def lowest_entry(self) -> int:
        return min((record[0] for record in self.records.values()), default=0)

    def runs(self, base: int, freeze: bool) -> Iterator[Run]:
        """Consecutive slots as one run, as a dense chunk would give them (new
        arrays: valid for good)."""
        run: list[Record] = []
        start = -1
        for slot, record in self.records.items():
            if run and slot != start + len(run):
                yield _run_of(base + start, run)
                run = []
            if not run:
                start = slot
            run.append(record)
        if run:
            yield _run_of(base + start, run)


def _run_of(first: int, records: list[Record]) -> Run:
    return Run(
        first,
        tuple(
            array(code, [record[position] for record in records])
            for position, (_name, code) in enumerate(COLUMNS)
        ),
    )


_Chunk = _Dense | _Sparse


class MessageIndex:
    """The messages one queue retains, by sequence. ``bytes``: the sum of their sizes."""

    __slots__ = ("_chunks", "bytes", "count", "next_sequence")

    def __init__(self) -> None:
        # Chunk number -> chunk, in increasing order (chunks are made in order;
        # one made out of order is sorted in, see _new_chunk).
        self._chunks: dict[int, _Chunk] = {}
        self.count = 0
        self.bytes = 0
        #: No sequence at or above this has been added yet: a chunk below the
        #: chunk it falls in is complete.
        self.next_sequence = 1

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __contains__(self, sequence: int) -> bool:
        chunk = self._chunks.get(sequence >> _BITS)
        return chunk is not None and chunk.get(sequence & _MASK) is not None

    def get(self, sequence: int) -> Record | None:
        chunk = self._chunks.get(sequence >> _BITS)
        return None if chunk is None else chunk.get(sequence & _MASK)

    def record(self, sequence: int) -> Record:
        """The message's record. Raises KeyError if it is not retained."""
        found = self.get(sequence)
        if found is None:
            raise KeyError(sequence)
        return found

    # -- changes -----------------------------------------------------------------------

    def add(self, sequence: int, record: Record) -> None:
        """Retain a message (or put back one that was released: a redrive)."""
        if record[0] <= 0:
            raise ValueError(f"message {sequence} needs a log index, not {record[0]}")
        number = sequence >> _BITS
        chunk = self._chunks.get(number)
        if chunk is None:
            chunk = self._new_chunk(number)
        slot = sequence & _MASK
        if chunk.taken(slot):
            raise ValueError(f"message {sequence} is retained already")
        if sequence >= self.next_sequence:
            self.next_sequence = sequence + 1
        chunk.put(slot, record)
        self.count += 1
        self.bytes += record[3]

    def set_refs(self, sequence: int, refs: int) -> None:
        number, slot = sequence >> _BITS, sequence & _MASK
        chunk = self._chunks[number]
        record = chunk.get(slot)
        if record is None:
            raise KeyError(sequence)
        if isinstance(chunk, _Dense):
            chunk.writable()[5][slot] = refs
        else:
            chunk.records[slot] = (*record[:5], refs)

    def move(self, sequence: int, entry: int, offset: int, length: int) -> None:
        """The message's publish is now at ``entry`` (a Carry copied it there)."""
        number, slot = sequence >> _BITS, sequence & _MASK
        chunk = self._chunks[number]
        record = chunk.get(slot)
        if record is None or entry <= 0:
            raise KeyError(sequence)
        if isinstance(chunk, _Dense):
            chunk.set_place(slot, entry, offset, length)
        else:
            chunk.records[slot] = (entry, offset, length, *record[3:])

    def older_than(self, entry: int, limit: int) -> list[tuple[int, Record]] | None:
        """The retained messages whose publish is in an entry before ``entry``, in
        sequence order; None if there are more than ``limit`` of them."""
        found: list[tuple[int, Record]] = []
        for number, chunk in self._chunks.items():
            if chunk.lowest_entry() >= entry:
                continue
            base = number << _BITS
            for slot in chunk.slots():
                record = chunk.get(slot)
                if record is not None and record[0] < entry:
                    if len(found) == limit:
                        return None
                    found.append((base + slot, record))
        return found

    def release(self, sequence: int, *, keep: bool) -> None:
        """One reference fewer; the message goes when none is left, unless ``keep``.
        Raises KeyError if it is not retained."""
        number, slot = sequence >> _BITS, sequence & _MASK
        chunk = self._chunks.get(number)
        if isinstance(chunk, _Dense):
            if not chunk.columns[0][slot]:
                raise KeyError(sequence)
            refs = chunk.writable()[5]
            left = refs[slot] - 1
            if left > 0 or keep:
                refs[slot] = max(left, 0)
                return
            self.remove(sequence)
            return
        record = self.record(sequence)
        if record[5] - 1 > 0 or keep:
            self.set_refs(sequence, max(record[5] - 1, 0))
        else:
            self.remove(sequence)

    def refs(self, sequence: int) -> int:
        return self.record(sequence)[5]

    def add_ref_to_all(self) -> None:
        """Every retained message gains a reference (a new group).

        A chunk without holes whose messages all have the same count (the usual
        case: every group has them still, or none has) is rewritten in C, so a
        new group on a backlog of a million messages costs the loop well under
        a millisecond per 100,000 messages, not a Python step per message.
        """
        for chunk in self._chunks.values():
            if isinstance(chunk, _Dense):
                refs = chunk.writable()[5]
                low, high = chunk.low, chunk.high
                count = high - low
                if count and chunk.live == count:
                    piece = refs[low:high]
                    first = piece[0]
                    if piece.count(first) == count:
                        refs[low:high] = array("I", [first + 1]) * count
                        continue
                for slot in chunk.slots():
                    refs[slot] += 1
            else:
                chunk.records = {
                    slot: (*record[:5], record[5] + 1) for slot, record in chunk.records.items()
                }

    def remove(self, sequence: int) -> Record:
        """Forget a retained message; returns its record. Raises KeyError."""
        number, slot = sequence >> _BITS, sequence & _MASK
        chunk = self._chunks.get(number)
        record = None if chunk is None else chunk.get(slot)
        if chunk is None or record is None:
            raise KeyError(sequence)
        chunk.remove(slot)
        self.count -= 1
        self.bytes -= record[3]
        complete = (number + 1) << _BITS <= self.next_sequence
        if not chunk.live and complete:
            del self._chunks[number]
        elif complete and isinstance(chunk, _Dense) and chunk.live < _SPARSE_BELOW:
            self._chunks[number] = _Sparse(
                {s: r for s in chunk.slots() if (r := chunk.get(s)) is not None}
            )
        return record

    def clear(self) -> None:
        self._chunks.clear()
        self.count = 0
        self.bytes = 0

    # -- reads -------------------------------------------------------------------------

    def ranges(self) -> Iterator[tuple[int, int]]:
        """The retained sequences as ranges ``[low, high)``, increasing (one per run:
        a chunk without holes is one range, found without a step per message)."""
        for run in self.runs():
            yield run.first, run.first + len(run)

    def sequences(self) -> Iterator[int]:
        """The retained sequences, increasing."""
        for number, chunk in list(self._chunks.items()):
            base = number << _BITS
            for slot in chunk.slots():
                yield base + slot

    def runs(self, *, freeze: bool = False) -> Iterator[Run]:
        """The retained messages as runs of consecutive sequences, increasing, split
        at chunk boundaries. Those are fixed by the sequence numbers alone, so two
        indexes that hold the same messages yield the same runs, whatever their
        history (and no run is copied to join it with the next).

        A run may be a view into the index's arrays, valid until the index next
        changes. With ``freeze`` every run stays valid for good: a chunk a run
        views copies its arrays before its next change (copy on write), so a
        checkpoint can be written by another thread while the loop goes on, and
        taking it costs the loop no copy of the index at all.
        """
        for number, chunk in self._chunks.items():
            yield from chunk.runs(number << _BITS, freeze)

    def checkpoint_parts(self) -> Iterator[ChunkParts]:
        """Per chunk, :meth:`runs` with ``freeze`` as a checkpoint writes them (see
        ChunkParts); an unchanged dense chunk's from the last checkpoint."""
        for number, chunk in self._chunks.items():
            if type(chunk) is _Dense:
                yield chunk.checkpoint_parts(number << _BITS)
            else:
                yield chunk_parts(chunk.runs(number << _BITS, True))

    def pin(self) -> int:
        """The lowest log index a retained message is in (0: none is retained).

        Not simply the first message's: a redriven message comes back with its
        old, lower entry. A minimum over the entry columns, in C for the chunks
        without holes.
        """
        lowest = 0
        for chunk in self._chunks.values():
            entry = chunk.lowest_entry()
            if entry and (not lowest or entry < lowest):
                lowest = entry
        return lowest

    def load_run(self, run: Run) -> None:
        """Add the messages of ``run``, none of them retained yet (on restore): whole
        slices of the columns at a time, so a restart does not pay per message. A
        run that is one whole chunk gives the index its arrays: the caller must
        not change them afterwards."""
        columns = run.columns
        sizes = columns[3]
        lowest = min(columns[0], default=1)
        if lowest <= 0:
            raise ValueError(f"a message of the run at {run.first} has no log index")
        total = len(run)
        number = run.first >> _BITS
        if (
            total == CHUNK
            and not run.first & _MASK
            and number not in self._chunks
            and all(type(column) is array for column in columns)
        ):
            # A whole chunk (what a checkpoint of a long backlog is made of):
            # its columns become the chunk's own.
            self._insert_chunk(number, _Dense.adopt(columns, lowest))  # type: ignore[arg-type]
            self.count += total
            self.bytes += sum(sizes)
            self.next_sequence = max(self.next_sequence, run.first + total)
            return
        start = 0
        while start < total:
            sequence = run.first + start
            number, slot = sequence >> _BITS, sequence & _MASK
            stop = min(total, start + CHUNK - slot)
            chunk = self._chunks.get(number)
            if chunk is None:
                chunk = self._new_chunk(number)
            if isinstance(chunk, _Dense) and (chunk.live == 0 or slot >= chunk.high):
                chunk.fill(slot, columns, start, stop)
            else:
                for position in range(start, stop):
                    at = (run.first + position) & _MASK
                    if chunk.get(at) is not None:
                        raise ValueError(f"message {run.first + position} appears twice")
                    e, o, n, z, t, f = (column[position] for column in columns)
                    chunk.put(at, (e, o, n, z, t, f))
            self.count += stop - start
            self.bytes += sum(sizes[start:stop])
            self.next_sequence = max(self.next_sequence, run.first + stop)
            start = stop

    def _new_chunk(self, number: int) -> _Chunk:
        return self._insert_chunk(number, _Dense())

    def _insert_chunk(self, number: int, chunk: _Chunk) -> _Chunk:
        chunks = self._chunks
        last = next(reversed(chunks), None)
        chunks[number] = chunk
        if last is not None and number < last:
            self._chunks = dict(sorted(chunks.items()))
        return chunk

    def count_between(self, low: int, high: int) -> int:
        """How many sequences in ``[low, high)`` are retained (counted in C over the
        columns of dense chunks)."""
        count = 0
        sequence = low
        while sequence < high:
            number, slot = sequence >> _BITS, sequence & _MASK
            stop = min(high, (number + 1) << _BITS)
            chunk = self._chunks.get(number)
            if isinstance(chunk, _Dense):
                piece = chunk.columns[0][slot : slot + stop - sequence]
                count += len(piece) - piece.count(0)
            elif chunk is not None:
                end_slot = slot + stop - sequence
                count += sum(1 for s in chunk.records if slot <= s < end_slot)
            sequence = stop
        return count

    def refs_all(self, refs: int) -> bool:
        """Every retained message has ``refs`` references."""
        for chunk in self._chunks.values():
            if isinstance(chunk, _Dense):
                column = chunk.columns[5][chunk.low : chunk.high]
                entries = chunk.columns[0][chunk.low : chunk.high]
                # Free slots hold zeros in every column.
                free = entries.count(0)
                if refs == 0:
                    if column.count(0) != len(column):
                        return False
                elif column.count(refs) != len(column) - free:
                    return False
            elif any(record[5] != refs for record in chunk.records.values()):
                return False
        return True

    def check(self) -> None:
        """Raise ValueError if the counts disagree with the contents (per chunk, in C)."""
        count = 0
        total = 0
        previous = -1
        for number, chunk in self._chunks.items():
            if number <= previous:
                raise ValueError("chunks out of order")
            previous = number
            if isinstance(chunk, _Dense):
                entries = chunk.columns[0]
                live = CHUNK - entries.count(0)
                if live != chunk.live:
                    raise ValueError(f"chunk {number}: {chunk.live} live, {live} held")
                if live and (entries[chunk.low] == 0 or entries[chunk.high - 1] == 0):
                    raise ValueError(f"chunk {number}: bounds {chunk.low}..{chunk.high}")
                count += live
                total += sum(chunk.columns[3])
            else:
                count += len(chunk.records)
                total += sum(record[3] for record in chunk.records.values())
        if (count, total) != (self.count, self.bytes):
            raise ValueError(f"counts {self.count}/{self.bytes}, contents {count}/{total}")


class Backlog:
    """A group's never-delivered sequences, increasing, as ranges [low, high)."""

    __slots__ = ("_ranges", "count")

    def __init__(self, sequences: Iterable[int] = ()) -> None:
        self._ranges: deque[list[int]] = deque()
        self.count = 0
        for sequence in sequences:
            self.append(sequence)

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __iter__(self) -> Iterator[int]:
        for low, high in list(self._ranges):
            yield from range(low, high)

    def __getitem__(self, position: int) -> int:
        """Only the first sequence (position 0) is asked for."""
        if position != 0 or not self._ranges:
            raise IndexError(position)
        return self._ranges[0][0]

    def append(self, sequence: int) -> None:
        ranges = self._ranges
        if ranges:
            last = ranges[-1]
            if sequence == last[1]:
                last[1] += 1
                self.count += 1
                return
            if sequence < last[1]:
                raise ValueError(f"backlog sequence {sequence} after {last[1] - 1}")
        ranges.append([sequence, sequence + 1])
        self.count += 1

    def popleft(self) -> int:
        first = self._ranges[0]
        sequence = first[0]
        first[0] += 1
        if first[0] == first[1]:
            self._ranges.popleft()
        self.count -= 1
        return sequence

    def pop(self) -> int:
        """Take the last sequence off."""
        last = self._ranges[-1]
        last[1] -= 1
        if last[0] == last[1]:
            self._ranges.pop()
        self.count -= 1
        return last[1]

    def clear(self) -> None:
        self._ranges.clear()
        self.count = 0

    def ranges(self) -> list[tuple[int, int]]:
        return [(low, high) for low, high in self._ranges]

    @classmethod
    def of_ranges(cls, ranges: Iterable[tuple[int, int]]) -> Backlog:
        """A backlog of the sequences in ``ranges`` (increasing, not overlapping)."""
        backlog = cls()
        for low, high in ranges:
            backlog.add_range(low, high)
        return backlog

    def add_range(self, low: int, high: int) -> None:
        """Append [low, high) (on restore, or a new group: after everything held)."""
        if high <= low or (self._ranges and low < self._ranges[-1][1]):
            raise ValueError(f"backlog range {low}..{high} out of order")
        if self._ranges and self._ranges[-1][1] == low:
            self._ranges[-1][1] = high
        else:
            self._ranges.append([low, high])
        self.count += high - low
