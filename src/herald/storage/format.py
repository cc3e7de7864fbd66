"""The on-disk formats of the write-ahead log, the hard state and snapshots, in one place.

Every file starts with the same 16 bytes, fixed for all versions to come::

    magic (8 bytes)  format version (u32 LE)  flags (u32 LE, 0)

so that any version of Herald can tell its own files from foreign ones and
refuse, with :class:`~herald.errors.UnsupportedFormatError`, a version it does
not know instead of misreading it. What follows depends on the file:

**Segment** (``wal-<seq>.log``): the 16-byte prefix, then ``seq`` (u64) and a
CRC of the 24 bytes before it (u32) and 4 bytes of padding: 32 bytes. Then
records, each 8-byte aligned::

    crc (u32)  length (u32)  body (length bytes)  zero padding to a multiple of 8

``crc`` covers the length field and the body, so a damaged length is caught
like damaged data. The body starts with a type byte:

- ``ENTRIES``: ``type u8, kind-flags u8, pad u16, count u32, first index u64``,
  then ``count`` terms (u64), ``count`` data lengths (u32), ``count`` kinds
  (u8) and the data of every entry, back to back. One record per write, so a
  batch of entries costs one checksum and is decoded with a handful of
  ``struct.unpack_from`` calls, not one per entry. The entries are contiguous;
  a record whose first index is at or below the log's last index replaces the
  stored entries from that index on (the log is append-only on disk;
  truncation of a suffix is a record, as in etcd's WAL).
- ``COMMIT``: the commit index (u64). Cheap: no fsync of its own.
- ``SNAPSHOT``: index and term (u64, u64) of a snapshot received from a leader,
  durable in its own file before this record is written: the log is reset to
  end at that index.

**Hard state** (``hardstate``): the 16-byte prefix, term, vote, commit (u64
each), CRC of all bytes before it. Replaced atomically (temporary file, fsync,
rename, directory fsync), so it is never torn: any damage is corruption.

**Snapshot** (``snap-<index>.snap``): the 16-byte prefix, index, term (u64),
voter count (u32), voters (u64 each), data length (u64), data, CRC of all bytes
before it. Written atomically like the hard state.

Checksum: CRC-32 (``zlib.crc32``, the IEEE polynomial). It is in the standard
library, so no dependency; it runs in C at several GB/s (the bottleneck of
recovery is building ``Entry`` objects, not checksums); and it detects every
burst error up to 32 bits and every odd number of flipped bits, which covers
torn writes and bit rot. CRC-32C (Castagnoli) has a slightly larger Hamming
distance at these record sizes and hardware support, but would mean a C
extension dependency for no difference a test could show; xxhash is faster
still but a hash, not an error-detecting code with guarantees. The format
version pins the choice: a switch is a new version.
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from itertools import accumulate, pairwise, repeat
from typing import Final

from herald.errors import CorruptionError, UnsupportedFormatError
from herald.raft.types import ConfState, Entry, EntryKind, HardState, Snapshot, SnapshotMeta

__all__ = [
    "COMMIT",
    "ENTRIES",
    "FORMAT_VERSION",
    "HARD_STATE_MAGIC",
    "HARD_STATE_SIZE",
    "KINDS",
    "ONE_ENTRY_HEAD",
    "RECORD_HEADER",
    "RECORD_LENGTH",
    "SEGMENT_HEADER_SIZE",
    "SEGMENT_MAGIC",
    "SNAPSHOT",
    "SNAPSHOT_MAGIC",
    "crc32",
    "decode_entries",
    "decode_hard_state",
    "decode_snapshot",
    "encode_commit",
    "encode_entries",
    "encode_hard_state",
    "encode_segment_header",
    "encode_snapshot",
    "encode_snapshot_marker",
    "entries_span",
    "entries_terms",
    "padded",
    "read_segment_header",
]

crc32 = zlib.crc32

FORMAT_VERSION: Final = 1

SEGMENT_MAGIC: Final = b"HRLDWAL\x00"
HARD_STATE_MAGIC: Final = b"HRLDHST\x00"
SNAPSHOT_MAGIC: Final = b"HRLDSNP\x00"

_PREFIX = struct.Struct("<8sII")  # magic, version, flags: the same in every file, forever
_SEGMENT_HEADER = struct.Struct("<8sIIQI4x")
SEGMENT_HEADER_SIZE: Final = _SEGMENT_HEADER.size  # 32

#: crc (u32), length (u32) of every record.
RECORD_HEADER: Final = struct.Struct("<II")
#: The length field alone (the checksum covers it, then the body).
RECORD_LENGTH: Final = struct.Struct("<I")

# Record types (the first byte of a body).
ENTRIES: Final = 1
COMMIT: Final = 2
SNAPSHOT: Final = 3

_ENTRIES_HEAD = struct.Struct("<BBHIQ")  # type, kind flags, pad, count, first index
_ONE_ENTRY = struct.Struct("<QIB")  # term, data length, kind: the count == 1 fast path
#: The whole head of an ENTRIES record holding one entry, read in one call by
#: recovery's fast path: type, flags, pad, count, first index, term, length, kind.
ONE_ENTRY_HEAD: Final = struct.Struct("<BBHIQQIB")
_COMMIT = struct.Struct("<B7xQ")
_MARKER = struct.Struct("<B7xQQ")
_ALL_NORMAL = 1  # kind flag: every entry is NORMAL, so the kinds need no decoding

_HARD_STATE_BODY = struct.Struct("<8sIIQQQ")
HARD_STATE_SIZE: Final = _HARD_STATE_BODY.size + 4

_SNAPSHOT_HEAD = struct.Struct("<8sIIQQI")
_U64 = struct.Struct("<Q")
_BIG_ENDIAN: Final = sys.byteorder == "big"
_U32 = struct.Struct("<I")

KINDS: Final = tuple(EntryKind(value) for value in range(max(EntryKind) + 1))
_KINDS = KINDS
_NORMAL: Final = EntryKind.NORMAL


def padded(length: int) -> int:
    """The size a record with a ``length``-byte body takes on disk."""
    return (8 + length + 7) & ~7


def _record(body: bytes) -> bytes:
    length = len(body)
    head = _U32.pack(length)
    pad = b"\0" * (padded(length) - 8 - length)
    return _U32.pack(crc32(body, crc32(head))) + head + body + pad


def check_prefix(data: bytes, magic: bytes, path: str) -> None:
    """Verify the common 16-byte prefix; raise the error that fits what is wrong."""
    if len(data) < _PREFIX.size:
        raise CorruptionError(path, len(data), "file too short for its header")
    found_magic, version, _flags = _PREFIX.unpack_from(data, 0)
    if found_magic != magic:
        raise CorruptionError(path, 0, f"bad magic {found_magic!r}, expected {magic!r}")
    if version != FORMAT_VERSION:
        raise UnsupportedFormatError(path, version, FORMAT_VERSION)


# -- segments -------------------------------------------------------------------------------


def encode_segment_header(seq: int) -> bytes:
    head = _SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0, seq, 0)
    return head[:24] + _U32.pack(crc32(head[:24])) + b"\0" * 4


def read_segment_header(data: bytes, path: str) -> int:
    """The sequence number in a segment's header. Raises CorruptionError or
    UnsupportedFormatError."""
    check_prefix(data, SEGMENT_MAGIC, path)
    if len(data) < SEGMENT_HEADER_SIZE:
        raise CorruptionError(path, len(data), "segment shorter than its header")
    _magic, _version, _flags, seq, stored = _SEGMENT_HEADER.unpack_from(data, 0)
    if crc32(data[:24]) != stored:
        raise CorruptionError(path, 0, "segment header checksum mismatch")
    return int(seq)


def encode_entries(entries: Sequence[Entry]) -> bytes:
    """One ENTRIES record for contiguous ``entries`` (at least one)."""
    count = len(entries)
    first = entries[0].index
    if count == 1:
        entry = entries[0]
        flags = _ALL_NORMAL if entry.kind == _NORMAL else 0
        body = b"".join(
            (
                _ENTRIES_HEAD.pack(ENTRIES, flags, 0, 1, first),
                _ONE_ENTRY.pack(entry.term, len(entry.data), entry.kind),
                entry.data,
            )
        )
        return _record(body)
    kinds = bytes([entry.kind for entry in entries])
    flags = _ALL_NORMAL if kinds.count(0) == count else 0
    datas = [entry.data for entry in entries]
    body = b"".join(
        (
            _ENTRIES_HEAD.pack(ENTRIES, flags, 0, count, first),
            struct.pack(f"<{count}Q", *[entry.term for entry in entries]),
            struct.pack(f"<{count}I", *map(len, datas)),
            kinds,
            *datas,
        )
    )
    return _record(body)


def entries_span(data: bytes, body: int) -> tuple[int, int]:
    """(first index, count) of the ENTRIES record whose body starts at ``body``."""
    _type, _flags, _pad, count, first = _ENTRIES_HEAD.unpack_from(data, body)
    return first, count


def term_at(data: bytes, body: int, index: int) -> int:
    """The term of entry ``index`` inside the ENTRIES record at ``body`` (which holds it)."""
    _type, _flags, _pad, _count, first = _ENTRIES_HEAD.unpack_from(data, body)
    (term,) = _U64.unpack_from(data, body + _ENTRIES_HEAD.size + 8 * (index - first))
    return int(term)


def entries_terms(data: bytes, body: int, end: int) -> tuple[int, int, array[int]]:
    """(first index, count, terms) of the ENTRIES record ``data[body:end]``, without
    decoding its entries; checks that the entries' lengths fill the record exactly.

    Raises ValueError (or struct.error) for an inconsistent record.
    """
    _type, _flags, _pad, count, first = _ENTRIES_HEAD.unpack_from(data, body)
    position = body + _ENTRIES_HEAD.size
    if count == 0:
        raise ValueError("empty entries record")
    if count == 1:
        term, length, kind = _ONE_ENTRY.unpack_from(data, position)
        if position + _ONE_ENTRY.size + length != end or kind >= len(_KINDS):
            raise ValueError("entry length disagrees with record length")
        return first, 1, array("q", (term,))
    lengths_at = position + 8 * count
    data_at = lengths_at + 4 * count + count
    if data_at > end:
        raise ValueError("entries record shorter than its head")
    terms = array("q", data[position:lengths_at])
    lengths = array("I", data[lengths_at : lengths_at + 4 * count])
    if _BIG_ENDIAN:
        terms.byteswap()
        lengths.byteswap()
    if data_at + sum(lengths) != end:
        raise ValueError("entry lengths disagree with record length")
    return first, count, terms


def decode_entries(data: bytes, body: int, end: int, skip: int = 0) -> list[Entry]:
    """Decode the ENTRIES record whose body is ``data[body:end]``, minus its first ``skip``.

    The record passed its checksum, so its layout is trusted as far as it is
    self-consistent; an inconsistent one raises ValueError (the caller reports
    corruption: a checksum collision or a writer bug).
    """
    _type, flags, _pad, count, first = _ENTRIES_HEAD.unpack_from(data, body)
    position = body + _ENTRIES_HEAD.size
    if count == 1:
        term, length, kind = _ONE_ENTRY.unpack_from(data, position)
        start = position + _ONE_ENTRY.size
        if start + length != end:
            raise ValueError("entry length disagrees with record length")
        if skip:
            return []
        return [Entry(term, first, data[start:end], _KINDS[kind])]
    terms = struct.unpack_from(f"<{count}Q", data, position)
    position += 8 * count
    lengths = struct.unpack_from(f"<{count}I", data, position)
    position += 4 * count
    kind_bytes = data[position : position + count]
    position += count
    bounds = list(accumulate(lengths, initial=position))
    if bounds[-1] != end:
        raise ValueError("entry lengths disagree with record length")
    if skip:
        terms = terms[skip:]
        bounds = bounds[skip:]
        kind_bytes = kind_bytes[skip:]
    datas = [data[lo:hi] for lo, hi in pairwise(bounds)]
    kinds = repeat(_NORMAL) if flags & _ALL_NORMAL else [_KINDS[k] for k in kind_bytes]
    first += skip
    return list(map(Entry, terms, range(first, first + len(datas)), datas, kinds))


def encode_commit(commit: int) -> bytes:
    return _record(_COMMIT.pack(COMMIT, commit))


def decode_commit(data: bytes, body: int) -> int:
    return int(_COMMIT.unpack_from(data, body)[1])


def encode_snapshot_marker(index: int, term: int) -> bytes:
    return _record(_MARKER.pack(SNAPSHOT, index, term))


def decode_snapshot_marker(data: bytes, body: int) -> tuple[int, int]:
    _type, index, term = _MARKER.unpack_from(data, body)
    return int(index), int(term)


# -- hard state -------------------------------------------------------------------------


def encode_hard_state(hard_state: HardState) -> bytes:
    body = _HARD_STATE_BODY.pack(
        HARD_STATE_MAGIC,
        FORMAT_VERSION,
        0,
        hard_state.term,
        hard_state.vote,
        hard_state.commit,
    )
    return body + _U32.pack(crc32(body))


def decode_hard_state(data: bytes, path: str) -> HardState:
    """Raises CorruptionError or UnsupportedFormatError."""
    check_prefix(data, HARD_STATE_MAGIC, path)
    if len(data) != HARD_STATE_SIZE:
        raise CorruptionError(path, min(len(data), HARD_STATE_SIZE), "hard state has wrong size")
    body_size = _HARD_STATE_BODY.size
    (stored,) = _U32.unpack_from(data, body_size)
    if crc32(data[:body_size]) != stored:
        raise CorruptionError(path, 0, "hard state checksum mismatch")
    _magic, _version, _flags, term, vote, commit = _HARD_STATE_BODY.unpack_from(data, 0)
    return HardState(term=term, vote=vote, commit=commit)


# -- snapshots --------------------------------------------------------------------------


def encode_snapshot(snapshot: Snapshot) -> bytes:
    return b"".join(encode_snapshot_parts(snapshot.meta, (snapshot.data,)))


def encode_snapshot_parts(
    meta: SnapshotMeta, state: Sequence[bytes | memoryview]
) -> list[bytes | memoryview]:
    """The snapshot file of the state that is ``state`` concatenated, as buffers to
    write one after the other: header, the state's own buffers, checksum. A state
    of many megabytes is neither copied nor joined, and the checksum runs over it
    without holding the GIL, so the fsync thread that writes a checkpoint leaves
    the event loop alone."""
    head = snapshot_head(meta, sum(len(part) for part in state))
    crc = crc32(head)
    for part in state:
        crc = crc32(part, crc)
    return [head, *state, snapshot_trailer(crc)]


def snapshot_head(meta: SnapshotMeta, length: int) -> bytes:
    """The bytes a snapshot file of a ``length``-byte state starts with."""
    voters = meta.conf.voters
    return b"".join(
        (
            _SNAPSHOT_HEAD.pack(
                SNAPSHOT_MAGIC, FORMAT_VERSION, 0, meta.index, meta.term, len(voters)
            ),
            struct.pack(f"<{len(voters)}Q", *voters),
            _U64.pack(length),
        )
    )


def snapshot_trailer(crc: int) -> bytes:
    """The bytes a snapshot file ends with: ``crc``, the CRC-32 of everything before."""
    return _U32.pack(crc)


def _check_whole(data: bytes, magic: bytes, path: str, minimum: int, what: str) -> int:
    """Verify a file's prefix, its least size and the checksum at its end; its size."""
    check_prefix(data, magic, path)
    size = len(data)
    if size < minimum:
        raise CorruptionError(path, size, f"{what} shorter than its header")
    (stored,) = _U32.unpack_from(data, size - 4)
    if crc32(memoryview(data)[: size - 4]) != stored:
        raise CorruptionError(path, 0, f"{what} checksum mismatch")
    return size


#: The most a snapshot file's head (everything before its data) may take: the
#: fixed head, a voter list of up to 500 voters and the data's length.
SNAPSHOT_HEAD_MAX: Final = 4096


def decode_snapshot(data: bytes, path: str) -> Snapshot:
    """Raises CorruptionError or UnsupportedFormatError."""
    size = _check_whole(data, SNAPSHOT_MAGIC, path, _SNAPSHOT_HEAD.size + 12, "snapshot")
    meta, position = snapshot_layout(data, size, path)
    return Snapshot(meta, data[position : size - 4])


def snapshot_layout(head: bytes, size: int, path: str) -> tuple[SnapshotMeta, int]:
    """A snapshot file's meta and where its data starts, from the file's first
    bytes (at least :data:`SNAPSHOT_HEAD_MAX` of them, or all) and its size; the
    data runs to the 4-byte checksum at the end. Checks everything but the
    checksum. Raises CorruptionError or UnsupportedFormatError."""
    check_prefix(head, SNAPSHOT_MAGIC, path)
    if size < _SNAPSHOT_HEAD.size + 12 or len(head) < _SNAPSHOT_HEAD.size:
        raise CorruptionError(path, size, "snapshot shorter than its header")
    _magic, _version, _flags, index, term, voter_count = _SNAPSHOT_HEAD.unpack_from(head, 0)
    position = _SNAPSHOT_HEAD.size
    if position + 8 * voter_count + 12 > min(size, max(len(head), SNAPSHOT_HEAD_MAX)):
        raise CorruptionError(path, position, "snapshot voter list runs past the end")
    if position + 8 * voter_count + 8 > len(head):
        raise CorruptionError(path, position, "snapshot head runs past the bytes read")
    voters = struct.unpack_from(f"<{voter_count}Q", head, position)
    position += 8 * voter_count
    (length,) = _U64.unpack_from(head, position)
    position += 8
    if position + length != size - 4:
        raise CorruptionError(path, position, "snapshot data length disagrees with file size")
    return SnapshotMeta(index=index, term=term, conf=ConfState(tuple(voters))), position


# -- the clean-shutdown marker -------------------------------------------------------------

CLEAN_MAGIC: Final = b"HRLDCLN\x00"
_CLEAN_SEGMENT = struct.Struct("<QQQ")  # seq, size, number of int64s in its description


def encode_clean(segments: Sequence[tuple[int, int, array[int]]]) -> bytes:
    """The marker a clean shutdown leaves: for each segment, its sequence number,
    its size and the description of its records (see
    :func:`herald.storage.wal.describe_records`), then a checksum."""
    parts: list[bytes] = [_PREFIX.pack(CLEAN_MAGIC, FORMAT_VERSION, 0), _U32.pack(len(segments))]
    for seq, size, flat in segments:
        parts.append(_CLEAN_SEGMENT.pack(seq, size, len(flat)))
        column = array("q", flat)
        if _BIG_ENDIAN:
            column.byteswap()
        parts.append(column.tobytes())
    body = b"".join(parts)
    return body + _U32.pack(crc32(body))


def decode_clean(data: bytes, path: str) -> dict[int, tuple[int, array[int]]]:
    """seq -> (size, description). Raises CorruptionError or UnsupportedFormatError."""
    size = _check_whole(data, CLEAN_MAGIC, path, _PREFIX.size + 8, "clean marker")
    (count,) = _U32.unpack_from(data, _PREFIX.size)
    position = _PREFIX.size + 4
    out: dict[int, tuple[int, array[int]]] = {}
    for _ in range(count):
        if position + _CLEAN_SEGMENT.size > size - 4:
            raise CorruptionError(path, position, "clean marker runs past its end")
        seq, segment_size, length = _CLEAN_SEGMENT.unpack_from(data, position)
        position += _CLEAN_SEGMENT.size
        end = position + 8 * length
        if end > size - 4:
            raise CorruptionError(path, position, "clean marker runs past its end")
        flat = array("q", data[position:end])
        if _BIG_ENDIAN:
            flat.byteswap()
        out[seq] = (segment_size, flat)
        position = end
    if position != size - 4:
        raise CorruptionError(path, position, "clean marker has bytes after its segments")
    return out
