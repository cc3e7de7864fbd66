"""Segments of the write-ahead log: scanning one for valid records, and appending to the last.

Scanning is the hot path of recovery, so it works on one ``bytes`` object per
segment (read in one call) with ``struct.unpack_from`` and ``zlib.crc32`` over
``memoryview`` slices: no per-record system call, no per-record copy.

The writer owns the open (last) segment. Records go to it in large appends;
when it would outgrow the segment size it is fsynced and closed before the
next one is created, so every segment but the last is complete and durable:
damage in any of them is corruption, never a torn write.
"""

from __future__ import annotations

import re
import struct
from array import array
from dataclasses import dataclass
from typing import Final

from . import format as fmt
from .files import segment_name
from .fs import FileHandle, FileSystem, join

__all__ = [
    "INCOMPLETE",
    "ScanResult",
    "SegmentInfo",
    "SegmentWriter",
    "describe_records",
    "find_valid_record",
    "scan_records",
]

INCOMPLETE: Final = "incomplete"  # the file ends inside the record
ZEROS: Final = "zeros"  # from the damage on, the file holds only zero bytes
CHECKSUM: Final = "checksum"  # a complete record whose checksum does not match

_MIN_BODY: Final = 16  # the smallest record body (COMMIT)
_KNOWN_TYPES: Final = frozenset((fmt.ENTRIES, fmt.COMMIT, fmt.SNAPSHOT))
_NON_ZERO = re.compile(rb"[^\x00]")


@dataclass(slots=True)
class SegmentInfo:
    """A segment on disk: its sequence number, path and the highest log index it holds."""

    seq: int
    path: str
    max_index: int = 0


@dataclass(slots=True)
class ScanResult:
    """The valid records of a segment, in order, and where and why the scan stopped."""

    records: list[tuple[int, int, int]]  # (record type, record offset, body end)
    end: int  # the offset just past the last valid record (8-aligned)
    damage: str | None  # None: the file ended cleanly after the last record
    kind: str = ""  # INCOMPLETE, ZEROS or CHECKSUM when damaged


def scan_records(data: bytes, start: int, *, verify: bool = True) -> ScanResult:
    """Walk the records of ``data`` from ``start`` until the end or the first bad one.

    ``verify=False`` skips the checksums: for records this process just encoded
    (the writer describing what it appends), not for anything read back."""
    size = len(data)
    view = memoryview(data)
    unpack = fmt.RECORD_HEADER.unpack_from
    crc32 = fmt.crc32
    records: list[tuple[int, int, int]] = []
    append = records.append
    position = start
    while position < size:
        if position + 8 > size:
            return _damaged(data, records, position, "incomplete record header", INCOMPLETE)
        stored, length = unpack(data, position)
        end = position + 8 + length
        following = (end + 7) & ~7
        if length < _MIN_BODY:
            return _damaged(data, records, position, f"bad record length {length}", CHECKSUM)
        if following > size:
            reason = f"record of {length} bytes runs past the end of the file"
            if _whole_but_for_its_length(data, view, position, stored):
                # Not a torn write: the record is all there, only its length field
                # is wrong (a flipped bit). It may have been synced and acknowledged.
                reason += ", but its checksum fits a shorter length: a damaged length"
                return _damaged(data, records, position, reason, CHECKSUM)
            return _damaged(data, records, position, reason, INCOMPLETE)
        if verify and crc32(view[position + 4 : end]) != stored:
            return _damaged(data, records, position, "record checksum mismatch", CHECKSUM)
        append((data[position + 8], position, end))
        position = following
    return ScanResult(records, position, None)


def describe_records(
    data: bytes, records: list[tuple[int, int, int]], shift: int = 0
) -> tuple[array[int], int, str]:
    """What recovery needs of each record, without its data: a flat ``array`` of
    ``[ENTRIES, offset, end, first, count, term * count]``, ``[COMMIT, offset, end,
    commit]`` and ``[SNAPSHOT, offset, end, index, term]`` (offsets plus ``shift``).

    Returns the description of the records up to the first malformed one, that
    one's offset and why (-1 and "" if none is).
    """
    flat = array("q")
    one_entry = fmt.ONE_ENTRY_HEAD.unpack_from
    one_size = fmt.ONE_ENTRY_HEAD.size
    kinds = len(fmt.KINDS)
    for record_type, offset, end in records:
        body = offset + 8
        at, stop = offset + shift, end + shift
        if record_type == fmt.ENTRIES:
            _type, _flags, _pad, count, first, term, length, kind = one_entry(data, body)
            if count == 1 and body + one_size + length == end and kind < kinds:
                flat.extend((fmt.ENTRIES, at, stop, first, 1, term))
                continue
            try:
                first, count, terms = fmt.entries_terms(data, body, end)
            except (ValueError, IndexError, struct.error) as error:
                return flat, offset, f"malformed entries record: {error}"
            flat.extend((fmt.ENTRIES, at, stop, first, count))
            flat.extend(terms)
        elif record_type == fmt.COMMIT:
            flat.extend((fmt.COMMIT, at, stop, fmt.decode_commit(data, body)))
        elif record_type == fmt.SNAPSHOT:
            index, term = fmt.decode_snapshot_marker(data, body)
            flat.extend((fmt.SNAPSHOT, at, stop, index, term))
        else:
            return flat, offset, f"unknown record type {record_type}"
    return flat, -1, ""


def _width(flat: array[int], position: int) -> int:
    """How many of ``flat``'s numbers the record described at ``position`` takes."""
    record_type = flat[position]
    if record_type == fmt.ENTRIES:
        return 5 + flat[position + 4]
    return 4 if record_type == fmt.COMMIT else 5


def _last_record_type(flat: array[int]) -> int:
    position = last = 0
    while position < len(flat):
        last = flat[position]
        position += _width(flat, position)
    return last


def squeeze_commits(flat: array[int]) -> tuple[array[int], bool]:
    """``flat`` with only its last COMMIT record, moved to the end (replay keeps only
    the last commit index, and most records are commits: one per sync), and
    whether it has one."""
    out = array("q")
    commit: array[int] | None = None
    position = 0
    size = len(flat)
    while position < size:
        record_type = flat[position]
        width = _width(flat, position)
        if record_type == fmt.COMMIT:
            commit = flat[position : position + width]
        else:
            out.extend(flat[position : position + width])
        position += width
    if commit is not None:
        out.extend(commit)
    return out, commit is not None


def _damaged(
    data: bytes, records: list[tuple[int, int, int]], position: int, reason: str, kind: str
) -> ScanResult:
    if _NON_ZERO.search(data, position) is None:
        kind = ZEROS
    return ScanResult(records, position, reason, kind)


def _whole_but_for_its_length(data: bytes, view: memoryview, position: int, stored: int) -> bool:
    """The bytes from ``position`` to the end are one complete record whose length
    field alone is wrong: some length that fills the rest of the file (as a record
    and its padding would) makes the checksum match. A write torn short never
    does: the checksum covers bytes that never reached the file."""
    room = len(data) - position - 8
    pack = fmt.RECORD_LENGTH.pack
    for length in range(max(_MIN_BODY, room - 7), room + 1):
        if fmt.crc32(view[position + 8 : position + 8 + length], fmt.crc32(pack(length))) == stored:
            return True
    return False


def _valid_at(data: bytes, view: memoryview, position: int) -> bool:
    stored, length = fmt.RECORD_HEADER.unpack_from(data, position)
    end = position + 8 + length
    return (
        length >= _MIN_BODY
        and ((end + 7) & ~7) <= len(data)
        and data[position + 8] in _KNOWN_TYPES
        and fmt.crc32(view[position + 4 : end]) == stored
    )


def find_valid_record(data: bytes, damaged_at: int) -> int | None:
    """The offset of a valid record after the bad one at ``damaged_at``, if there is any.

    This is what tells a torn tail (nothing valid after the damage: the last
    write was cut short) from corruption (valid data after it). Records are
    8-aligned, so only aligned offsets are tried; runs of zeros are skipped at
    C speed. The record the damaged header points to is tried first.
    """
    size = len(data)
    view = memoryview(data)
    first = damaged_at + 8
    if damaged_at + 8 <= size:
        _stored, length = fmt.RECORD_HEADER.unpack_from(data, damaged_at)
        hinted = (damaged_at + 8 + int(length) + 7) & ~7
        if hinted + 8 <= size and _valid_at(data, view, hinted):
            return hinted
    position = first
    while position + 8 <= size:
        if not any(view[position : position + 8]):
            match = _NON_ZERO.search(data, position)
            if match is None:
                return None
            position = max(position + 8, match.start() & ~7)
            continue
        if _valid_at(data, view, position):
            return position
        position += 8
    return None


class SegmentWriter:
    """Appends records to the last segment; rolls over to a new one when it is full.

    ``durable`` is the promise: after :meth:`sync` returns, every byte appended
    before it is on stable storage, and so is every segment file created.
    """

    def __init__(
        self,
        fs: FileSystem,
        directory: str,
        segments: list[SegmentInfo],
        handle: FileHandle,
        size: int,
        segment_size: int,
        described: dict[int, tuple[int, array[int]]] | None = None,
    ) -> None:
        self.fs = fs
        self.directory = directory
        self.segments = segments  # in order; the last one is open
        self.handle = handle
        self.size = size  # bytes in the open segment
        self.segment_size = segment_size
        self.commit = 0  # written at the start of each new segment
        self._dirty = False  # appended since the last sync
        self._directory_dirty = False  # created a segment since the last sync
        #: Segment -> (its size, the description of its records, with only its
        #: last COMMIT, at the end): what a clean shutdown leaves for the next
        #: start (see describe_sealed). None: unknown (recovery could not
        #: describe every segment), so none is left.
        self.described = described
        self._ends_in_commit: set[int] = set()
        for seq, (_size, flat) in (described or {}).items():
            if _last_record_type(flat) == fmt.COMMIT:
                self._ends_in_commit.add(seq)

    @classmethod
    def create(
        cls, fs: FileSystem, directory: str, seq: int, segment_size: int, preamble: bytes = b""
    ) -> SegmentWriter:
        """Start a fresh segment, durably (used when a directory holds none)."""
        path = join(directory, segment_name(seq))
        handle = fs.create(path)
        data = fmt.encode_segment_header(seq) + preamble
        handle.append(data)
        handle.sync()
        fs.sync_dir(directory)
        writer = cls(fs, directory, [SegmentInfo(seq, path)], handle, len(data), segment_size, {})
        writer._describe(seq, 0, data, fmt.SEGMENT_HEADER_SIZE)
        return writer

    @property
    def current(self) -> SegmentInfo:
        return self.segments[-1]

    def append(self, data: bytes, max_index: int) -> tuple[int, int]:
        """Append whole records; ``max_index`` is the highest log index among them.

        Returns where ``data`` went: the segment's sequence number and the offset.
        """
        if self.size > fmt.SEGMENT_HEADER_SIZE and self.size + len(data) > self.segment_size:
            self._roll_over()
        offset = self.size
        self.handle.append(data)
        self.size += len(data)
        self._dirty = True
        current = self.segments[-1]
        current.max_index = max(current.max_index, max_index)
        self._describe(current.seq, offset, data, 0)
        return current.seq, offset

    def _describe(self, seq: int, offset: int, data: bytes, start: int) -> None:
        """Add the records of ``data`` (written at ``offset`` of segment ``seq``) to
        the segment's description, and its new size."""
        described = self.described
        if described is None:
            return
        # Records it encoded itself: their layout is walked, their checksums
        # (computed a moment ago) are not computed again on the fsync thread.
        scan = scan_records(data, start, verify=False)
        flat, bad, _reason = describe_records(data, scan.records, offset)
        if scan.damage is not None or bad >= 0:
            self.described = None  # not what recovery would see: describe nothing
            return
        _size, old = described.get(seq, (0, array("q")))
        flat, has_commit = squeeze_commits(flat)
        if has_commit:
            if seq in self._ends_in_commit:
                del old[-4:]  # superseded by the newer one
            self._ends_in_commit.add(seq)
        elif seq in self._ends_in_commit:
            # Keep the commit last: the new records go before it.
            commit = old[-4:]
            del old[-4:]
            flat.extend(commit)
        old.extend(flat)
        described[seq] = (offset + len(data), old)

    def describe_sealed(self) -> list[tuple[int, int, array[int]]] | None:
        """(segment, size, description) of every sealed segment (all but the open
        one: each was synced before its successor was created), if known."""
        described = self.described
        if described is None:
            return None
        out = []
        for segment in self.segments[:-1]:
            found = described.get(segment.seq)
            if found is None:
                return None
            out.append((segment.seq, found[0], found[1]))
        return out

    def _roll_over(self) -> None:
        # The full segment is made durable before its successor exists, so a
        # damaged record in a segment that is not the last is always corruption.
        self.handle.sync()
        self.handle.close()
        seq = self.segments[-1].seq + 1
        path = join(self.directory, segment_name(seq))
        self.handle = self.fs.create(path)
        self.segments.append(SegmentInfo(seq, path))
        head = fmt.encode_segment_header(seq)
        if self.commit:
            head += fmt.encode_commit(self.commit)
        self.handle.append(head)
        self.size = len(head)
        self._directory_dirty = True
        if self.described is not None:
            self.described[seq] = (fmt.SEGMENT_HEADER_SIZE, array("q"))
            self._describe(seq, 0, head, fmt.SEGMENT_HEADER_SIZE)

    @property
    def dirty(self) -> bool:
        """Appended to, or created a segment, since the last sync."""
        return self._dirty or self._directory_dirty

    def sync(self) -> None:
        """fsync what was appended (and the directory, if a segment was created)."""
        if self._dirty:
            self.handle.sync()
            self._dirty = False
        if self._directory_dirty:
            self.fs.sync_dir(self.directory)
            self._directory_dirty = False

    def remove_through(self, index: int) -> list[str]:
        """Remove the oldest segments whose entries all lie at or below ``index``.

        Only call once a snapshot covering ``index`` is durable. The open
        segment is never removed; removal stops at the first segment that holds
        a higher index, so what remains is always a contiguous run.
        """
        removed: list[str] = []
        while len(self.segments) > 1 and self.segments[0].max_index <= index:
            segment = self.segments.pop(0)
            self.fs.remove(segment.path)
            removed.append(segment.path)
            if self.described is not None:
                self.described.pop(segment.seq, None)
                self._ends_in_commit.discard(segment.seq)
        if removed:
            self.fs.sync_dir(self.directory)
        return removed

    def close(self) -> None:
        self.handle.close()
