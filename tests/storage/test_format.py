"""The bytes on disk: records round-trip, and every damaged byte of a record is caught."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.errors import CorruptionError, UnsupportedFormatError
from herald.raft import ConfState, Entry, EntryKind, HardState, Snapshot, SnapshotMeta
from herald.storage import format as fmt
from herald.storage.wal import find_valid_record, scan_records

HEADER = fmt.encode_segment_header(1)

entry_lists = st.integers(1, 1000).flatmap(
    lambda first: st.lists(
        st.tuples(st.integers(0, 2**40), st.sampled_from(list(EntryKind)), st.binary(max_size=64)),
        min_size=1,
        max_size=20,
    ).map(
        lambda items: [
            Entry(term, first + offset, data, kind)
            for offset, (term, kind, data) in enumerate(items)
        ]
    )
)


@settings(max_examples=100, deadline=None)
@given(entry_lists, st.data())
def test_entries_round_trip(batch: list[Entry], data: st.DataObject) -> None:
    segment = HEADER + fmt.encode_entries(batch)
    scan = scan_records(segment, fmt.SEGMENT_HEADER_SIZE)
    assert scan.damage is None and scan.end == len(segment) and len(scan.records) == 1
    record_type, offset, end = scan.records[0]
    assert record_type == fmt.ENTRIES
    assert fmt.entries_span(segment, offset + 8) == (batch[0].index, len(batch))
    assert fmt.decode_entries(segment, offset + 8, end) == batch
    skip = data.draw(st.integers(0, len(batch) - 1), label="skip")
    assert fmt.decode_entries(segment, offset + 8, end, skip) == batch[skip:]
    for entry in batch:
        assert fmt.term_at(segment, offset + 8, entry.index) == entry.term


def test_records_are_eight_byte_aligned() -> None:
    for size in range(20):
        record = fmt.encode_entries([Entry(1, 1, b"x" * size)])
        assert len(record) % 8 == 0
        assert fmt.padded(len(record) - 8) >= len(record)


def test_every_flipped_byte_of_a_record_is_caught() -> None:
    """The checksum covers the length and the whole body: no byte can change unnoticed."""
    record = fmt.encode_entries([Entry(3, 7, b"payload"), Entry(3, 8, b"", EntryKind.NOOP)])
    body_end = 8 + struct.unpack_from("<I", record, 4)[0]
    for position in range(body_end):  # the padding after the body carries no meaning
        for xor in (0x01, 0x80, 0xFF):
            damaged = bytearray(HEADER + record)
            damaged[32 + position] ^= xor
            scan = scan_records(bytes(damaged), fmt.SEGMENT_HEADER_SIZE)
            assert scan.damage is not None, (position, xor)
            assert scan.records == []


def test_valid_record_is_found_after_damage_and_not_in_garbage() -> None:
    first = fmt.encode_entries([Entry(1, 1, b"a" * 40)])
    second = fmt.encode_commit(1)
    segment = bytearray(HEADER + first + second)
    segment[40] ^= 1
    assert find_valid_record(bytes(segment), 32) == 32 + len(first)
    garbage = HEADER + bytes(range(256)) * 4 + bytes(4096)
    assert find_valid_record(garbage, 32) is None


def test_hard_state_round_trip_and_checks() -> None:
    state = HardState(term=5, vote=3, commit=99)
    data = fmt.encode_hard_state(state)
    assert len(data) == fmt.HARD_STATE_SIZE
    assert fmt.decode_hard_state(data, "hs") == state
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x10
        with pytest.raises((CorruptionError, UnsupportedFormatError)):
            fmt.decode_hard_state(bytes(damaged), "hs")


def test_snapshot_round_trip_and_checks() -> None:
    snap = Snapshot(SnapshotMeta(10, 2, ConfState((1, 2, 3))), b"state" * 10)
    data = fmt.encode_snapshot(snap)
    assert fmt.decode_snapshot(data, "s") == snap
    for position in range(0, len(data), 3):
        damaged = bytearray(data)
        damaged[position] ^= 0x04
        with pytest.raises((CorruptionError, UnsupportedFormatError)):
            fmt.decode_snapshot(bytes(damaged), "s")
    with pytest.raises(CorruptionError):
        fmt.decode_snapshot(data[:-1], "s")


@pytest.mark.parametrize(
    ("data", "decode"),
    [
        (fmt.encode_segment_header(1), fmt.read_segment_header),
        (fmt.encode_hard_state(HardState(1, 1, 1)), fmt.decode_hard_state),
        (fmt.encode_snapshot(Snapshot(SnapshotMeta(1, 1))), fmt.decode_snapshot),
    ],
)
def test_every_file_refuses_an_unknown_version_and_foreign_magic(
    data: bytes, decode: object
) -> None:
    assert callable(decode)
    newer = data[:8] + struct.pack("<I", fmt.FORMAT_VERSION + 1) + data[12:]
    with pytest.raises(UnsupportedFormatError) as caught:
        decode(newer, "f")
    assert caught.value.version == fmt.FORMAT_VERSION + 1
    assert "format version 2" in str(caught.value)
    with pytest.raises(CorruptionError, match="bad magic"):
        decode(b"NOTOURS!" + data[8:], "f")
    with pytest.raises(CorruptionError, match="too short"):
        decode(data[:5], "f")
