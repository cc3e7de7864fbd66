"""Planted damage gets its documented outcome: torn tails truncated, corruption refused or repaired.

Each test damages the media of a simulated disk the way a real disk can (a
flipped bit, a lost write, a cut-off write, a missing or rolled-back file) and
checks that recovery tells a torn tail from corruption, names the file and the
offset, and with ``repair=True`` says what it threw away.
"""

from __future__ import annotations

import random
import struct
import zlib

import pytest

from herald.errors import (
    CorruptHardStateError,
    CorruptLogError,
    CorruptSnapshotError,
    UnsupportedFormatError,
)
from herald.raft import Entry, HardState
from herald.storage import SimFileSystem, WalLogStore
from herald.storage import format as fmt
from herald.storage.files import HARD_STATE_FILE, segment_name, snapshot_name
from herald.storage.fs import join
from herald.storage.wal import scan_records

from .scripts import DATA_DIR, entries, load, snapshot

BATCH = 10


def new_fs() -> SimFileSystem:
    return SimFileSystem(random.Random(7))


def open_store(fs: SimFileSystem, **options: object) -> WalLogStore:
    return WalLogStore(fs, DATA_DIR, segment_size=4096, **options)  # type: ignore[arg-type]


def populate(fs: SimFileSystem, last: int = 120) -> list[Entry]:
    """Write entries 1..last, one synced record per BATCH entries, over several segments."""
    store = open_store(fs)
    load(store)
    written: list[Entry] = []
    for first in range(1, last + 1, BATCH):
        batch = entries(first, min(first + BATCH - 1, last), 1)
        store.write(HardState(1, 1, 0) if first == 1 else None, batch, None)
        store.sync()
        written.extend(batch)
    store.close()
    return written


def segments(fs: SimFileSystem) -> list[str]:
    return [join(DATA_DIR, name) for name in fs.list_dir(DATA_DIR) if name.startswith("wal-")]


def record_offsets(fs: SimFileSystem, path: str) -> list[int]:
    scan = scan_records(fs.media(path), fmt.SEGMENT_HEADER_SIZE)
    assert scan.damage is None
    return [offset for _type, offset, _end in scan.records]


def first_index_at(fs: SimFileSystem, path: str, offset: int) -> int:
    first, _count = fmt.entries_span(fs.media(path), offset + 8)
    return first


def raw_record(body: bytes) -> bytes:
    """A record with a valid checksum around any body (to plant well-formed nonsense)."""
    head = struct.pack("<I", len(body))
    pad = b"\0" * ((8 - (8 + len(body)) % 8) % 8)
    return struct.pack("<I", zlib.crc32(body, zlib.crc32(head))) + head + body + pad


# -- torn tails -------------------------------------------------------------------------


def test_populate_spans_several_segments() -> None:
    fs = new_fs()
    populate(fs)
    assert len(segments(fs)) >= 3


def test_flipped_byte_in_the_last_record_is_a_torn_tail() -> None:
    fs = new_fs()
    written = populate(fs)
    last_segment = segments(fs)[-1]
    offset = record_offsets(fs, last_segment)[-1]
    fs.corrupt(last_segment, offset + 40)
    store = open_store(fs)
    state = load(store)
    assert state.entries == tuple(written[:-BATCH])
    assert not state.repaired
    assert store.report is not None and store.report.tail is not None
    assert store.report.tail.kind == "checksum"
    assert store.report.tail.offset == offset
    assert len(fs.media(last_segment)) == offset  # truncated on disk
    # The store appends right after the surviving records.
    store.write(None, written[-BATCH:], None)
    store.sync()
    store.close()
    assert load(open_store(fs)).entries == tuple(written)


def test_write_cut_short_is_a_torn_tail() -> None:
    fs = new_fs()
    written = populate(fs)
    last_segment = segments(fs)[-1]
    offset = record_offsets(fs, last_segment)[-1]
    fs.truncate(last_segment, offset + 50)
    store = open_store(fs)
    assert load(store).entries == tuple(written[:-BATCH])
    assert store.report is not None and store.report.tail is not None
    assert store.report.tail.kind == "incomplete"


def test_cut_inside_a_record_header_is_a_torn_tail() -> None:
    fs = new_fs()
    written = populate(fs)
    last_segment = segments(fs)[-1]
    offset = record_offsets(fs, last_segment)[-1]
    fs.truncate(last_segment, offset + 5)
    assert load(open_store(fs)).entries == tuple(written[:-BATCH])


def test_zero_filled_tail_is_a_torn_tail() -> None:
    fs = new_fs()
    written = populate(fs)
    last_segment = segments(fs)[-1]
    size = len(fs.media(last_segment))
    fs.overwrite(last_segment, size, bytes(3000))
    store = open_store(fs)
    assert load(store).entries == tuple(written)
    assert store.report is not None and store.report.tail is not None
    assert store.report.tail.kind == "zeros"


def test_segment_whose_creation_was_cut_short_is_removed() -> None:
    fs = new_fs()
    written = populate(fs)
    path = join(DATA_DIR, segment_name(99))
    handle = fs.create(path)
    handle.append(fmt.encode_segment_header(99)[:13])
    store = open_store(fs)
    assert load(store).entries == tuple(written)
    assert store.report is not None and store.report.tail is not None
    assert store.report.tail.kind == "header"
    assert not fs.exists(path)


# -- corruption before the tail ---------------------------------------------------------


def test_flipped_byte_mid_log_is_refused_with_file_and_offset() -> None:
    fs = new_fs()
    populate(fs)
    last_segment = segments(fs)[-1]
    offset = record_offsets(fs, last_segment)[0]
    fs.corrupt(last_segment, offset + 100)
    before = {path: fs.media(path) for path in segments(fs)}
    with pytest.raises(CorruptLogError) as caught:
        load(open_store(fs))
    assert caught.value.path == last_segment
    assert caught.value.offset == offset
    assert last_segment in str(caught.value) and str(offset) in str(caught.value)
    # Refusing changed nothing on disk, and released the directory.
    assert {path: fs.media(path) for path in segments(fs)} == before
    with pytest.raises(CorruptLogError):
        load(open_store(fs))


def test_mid_log_corruption_is_repaired_only_when_asked() -> None:
    fs = new_fs()
    written = populate(fs)
    last_segment = segments(fs)[-1]
    offset = record_offsets(fs, last_segment)[0]
    lost_from = first_index_at(fs, last_segment, offset)
    fs.corrupt(last_segment, offset + 100)
    store = open_store(fs, repair=True)
    state = load(store)
    assert state.repaired
    assert state.discarded_from_index == lost_from
    assert state.entries == tuple(written[: lost_from - 1])
    assert store.report is not None and store.report.discarded is not None
    assert store.report.discarded.path == last_segment
    assert store.report.discarded.offset == offset
    # The repaired log is a valid log: writable, and it opens without the flag.
    store.write(None, entries(lost_from, lost_from + 2, 2), None)
    store.write(HardState(2, 0, 0), [], None)
    store.sync()
    store.close()
    again = load(open_store(fs))
    assert not again.repaired
    assert again.entries[-1].index == lost_from + 2


def test_damage_in_a_sealed_segment_is_corruption_even_at_its_end() -> None:
    fs = new_fs()
    populate(fs)
    sealed = segments(fs)[0]
    offset = record_offsets(fs, sealed)[-1]
    fs.corrupt(sealed, offset + 30)
    with pytest.raises(CorruptLogError, match="sealed segment") as caught:
        load(open_store(fs))
    assert (caught.value.path, caught.value.offset) == (sealed, offset)


def test_repairing_a_sealed_segment_drops_every_later_segment() -> None:
    fs = new_fs()
    written = populate(fs)
    first, *later = segments(fs)
    offset = record_offsets(fs, first)[-1]
    lost_from = first_index_at(fs, first, offset)
    fs.corrupt(first, offset + 30)
    store = open_store(fs, repair=True)
    state = load(store)
    assert state.discarded_from_index == lost_from
    assert state.entries == tuple(written[: lost_from - 1])
    assert store.report is not None and store.report.discarded is not None
    assert store.report.discarded.removed_segments == tuple(later)
    assert all(not fs.exists(path) for path in later)


def test_lost_write_followed_by_valid_records_is_corruption() -> None:
    fs = new_fs()
    populate(fs)
    last_segment = segments(fs)[-1]
    offsets = record_offsets(fs, last_segment)
    fs.overwrite(last_segment, offsets[0], bytes(offsets[1] - offsets[0]))
    with pytest.raises(CorruptLogError, match="followed by valid records") as caught:
        load(open_store(fs))
    assert caught.value.offset == offsets[0]


def test_damaged_length_field_is_not_mistaken_for_a_torn_tail() -> None:
    """A length that makes a mid-log record run past the end must not hide what follows."""
    fs = new_fs()
    populate(fs)
    last_segment = segments(fs)[-1]
    offset = record_offsets(fs, last_segment)[0]
    fs.overwrite(last_segment, offset + 4, struct.pack("<I", 1 << 30))
    with pytest.raises(CorruptLogError) as caught:
        load(open_store(fs))
    assert caught.value.offset == offset


def test_impossible_record_length_is_caught() -> None:
    fs = new_fs()
    populate(fs)
    last_segment = segments(fs)[-1]
    offset = record_offsets(fs, last_segment)[0]
    fs.overwrite(last_segment, offset + 4, struct.pack("<I", 3))
    with pytest.raises(CorruptLogError, match="bad record length"):
        load(open_store(fs))


def test_missing_segment_is_a_gap() -> None:
    fs = new_fs()
    populate(fs)
    middle = segments(fs)[1]
    fs.remove(middle)
    with pytest.raises(CorruptLogError, match="entries jump from index 30 to 61"):
        load(open_store(fs))


def test_missing_first_segment_is_a_gap_at_the_start() -> None:
    fs = new_fs()
    populate(fs)
    fs.remove(segments(fs)[0])
    with pytest.raises(CorruptLogError, match="the log starts at index"):
        load(open_store(fs))


def test_record_of_unknown_type_is_refused() -> None:
    fs = new_fs()
    populate(fs)
    last_segment = segments(fs)[-1]
    size = len(fs.media(last_segment))
    fs.overwrite(last_segment, size, raw_record(bytes([9]) + bytes(23)) + fmt.encode_commit(1))
    with pytest.raises(CorruptLogError, match="unknown record type 9") as caught:
        load(open_store(fs))
    assert caught.value.offset == size


def test_malformed_entries_record_is_refused() -> None:
    fs = new_fs()
    populate(fs)
    last_segment = segments(fs)[-1]
    size = len(fs.media(last_segment))
    # Two entries claimed, lengths that do not add up to the record.
    body = struct.pack("<BBHIQ", fmt.ENTRIES, 1, 0, 2, 101) + struct.pack(
        "<2Q2I2B", 1, 1, 50, 50, 0, 0
    )
    fs.overwrite(last_segment, size, raw_record(body + b"x" * 10))
    with pytest.raises(CorruptLogError, match="malformed entries record"):
        load(open_store(fs))


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("magic", CorruptLogError),
        ("crc", CorruptLogError),
        ("seq", CorruptLogError),
        ("version", UnsupportedFormatError),
    ],
)
def test_damaged_segment_header(where: str, expected: type[Exception]) -> None:
    fs = new_fs()
    populate(fs)
    sealed = segments(fs)[0]
    header = bytearray(fs.media(sealed)[:32])
    if where == "magic":
        header[0] ^= 0xFF
    elif where == "crc":
        header[20] ^= 0x01
    elif where == "seq":
        # A consistent header (checksum fixed up) of another segment.
        header = bytearray(fmt.encode_segment_header(77))
    else:
        header[8:12] = struct.pack("<I", 2)
    fs.overwrite(sealed, 0, bytes(header))
    with pytest.raises(expected) as caught:
        load(open_store(fs, repair=(where == "version")))
    assert caught.value.path == sealed  # type: ignore[attr-defined]


# -- hard state -------------------------------------------------------------------------


HARD_STATE = join(DATA_DIR, HARD_STATE_FILE)


@pytest.mark.parametrize("repair", [False, True])
def test_flipped_byte_in_the_hard_state_is_refused_even_with_repair(repair: bool) -> None:
    fs = new_fs()
    populate(fs)
    fs.corrupt(HARD_STATE, 20)
    with pytest.raises(CorruptHardStateError) as caught:
        load(open_store(fs, repair=repair))
    assert caught.value.path == HARD_STATE
    assert "checksum" in str(caught.value)


def test_hard_state_of_unknown_version_is_refused() -> None:
    fs = new_fs()
    populate(fs)
    fs.overwrite(HARD_STATE, 8, struct.pack("<I", 9))
    with pytest.raises(UnsupportedFormatError) as caught:
        load(open_store(fs))
    assert caught.value.version == 9


def test_hard_state_of_wrong_size_is_refused() -> None:
    fs = new_fs()
    populate(fs)
    fs.truncate(HARD_STATE, fmt.HARD_STATE_SIZE - 3)
    with pytest.raises(CorruptHardStateError, match="wrong size"):
        load(open_store(fs))


def test_missing_hard_state_beside_a_log_is_refused() -> None:
    fs = new_fs()
    populate(fs)
    fs.remove(HARD_STATE)
    with pytest.raises(CorruptHardStateError, match="missing"):
        load(open_store(fs))


def test_rolled_back_hard_state_is_refused() -> None:
    """A hard state older than the log's terms (a lost rename, a restored backup)."""
    fs = new_fs()
    populate(fs)
    old = fs.media(HARD_STATE)
    store = open_store(fs)
    load(store)
    store.write(HardState(5, 5, 0), entries(101, 102, 5), None)
    store.sync()
    store.close()
    fs.overwrite(HARD_STATE, 0, old)
    with pytest.raises(CorruptHardStateError, match="older than the log"):
        load(open_store(fs))


def test_commit_past_the_log_is_clamped() -> None:
    """The hard state file's commit index is not trusted: the stream's is (0 here)."""
    fs = new_fs()
    populate(fs, last=20)
    fs.overwrite(HARD_STATE, 0, fmt.encode_hard_state(HardState(1, 1, 500)))
    store = open_store(fs)
    state = load(store)
    assert state.hard_state == HardState(1, 1, 0)
    assert store.report is not None and store.report.commit_clamped_from == 500


def test_commit_never_covers_entries_that_lost_records_replaced() -> None:
    """The hard state file is synced before the records of the same sync. If a
    crash keeps the file (commit 10, new term) but loses the records that replaced
    entries 8..10, the old entries 8..10 must not come back as committed."""
    fs = new_fs()
    store = open_store(fs)
    load(store)
    store.write(HardState(1, 1, 0), entries(1, 10, 1), None)
    store.write(HardState(1, 1, 5), [], None)
    store.sync()
    store.close()
    # What the lost sync would have done: term 2, entries 8..10 of term 2, commit 10.
    fs.overwrite(HARD_STATE, 0, fmt.encode_hard_state(HardState(2, 0, 10)))
    state = load(open_store(fs))
    assert state.hard_state.commit == 5
    assert [entry.term for entry in state.entries[7:]] == [1, 1, 1]


def test_commit_index_is_in_the_stream_even_with_a_term_change() -> None:
    fs = new_fs()
    store = open_store(fs)
    load(store)
    store.write(HardState(1, 1, 0), entries(1, 10, 1), None)
    store.sync()
    store.write(HardState(2, 2, 9), entries(11, 12, 2), None)
    store.sync()
    store.close()
    fs.overwrite(HARD_STATE, 0, fmt.encode_hard_state(HardState(2, 2, 0)))
    assert load(open_store(fs)).hard_state.commit == 9


# -- snapshots --------------------------------------------------------------------------


def with_snapshots(fs: SimFileSystem, indexes: tuple[int, ...]) -> list[Entry]:
    written = populate(fs, last=100)
    store = open_store(fs)
    load(store)
    for index in indexes:
        store.save_snapshot(snapshot(index, 1))
        store.release(index)  # as the host does once the snapshot is durable
    store.close()
    return written


def test_damaged_newest_snapshot_falls_back_to_the_older_one() -> None:
    fs = new_fs()
    written = with_snapshots(fs, (40, 70))
    newest = join(DATA_DIR, snapshot_name(70))
    fs.corrupt(newest, 30)
    store = open_store(fs)
    state = load(store)
    assert state.snapshot == snapshot(40, 1)
    assert state.entries == tuple(written[40:])
    assert not state.repaired  # nothing was lost: the older snapshot plus the log
    assert store.report is not None and store.report.corrupt_snapshots == (newest,)


def test_damaged_only_snapshot_is_refused() -> None:
    fs = new_fs()
    with_snapshots(fs, (70,))
    only = join(DATA_DIR, snapshot_name(70))
    fs.corrupt(only, 30)
    with pytest.raises(CorruptSnapshotError) as caught:
        load(open_store(fs, repair=True))
    assert caught.value.path == only


def test_snapshot_fallback_refused_when_the_log_no_longer_reaches_back() -> None:
    fs = new_fs()
    with_snapshots(fs, (40, 70))
    fs.remove(join(DATA_DIR, snapshot_name(40)))
    fs.corrupt(join(DATA_DIR, snapshot_name(70)), 30)
    with pytest.raises(CorruptSnapshotError):
        load(open_store(fs))


def test_snapshot_of_unknown_version_is_refused() -> None:
    fs = new_fs()
    with_snapshots(fs, (40, 70))
    fs.overwrite(join(DATA_DIR, snapshot_name(70)), 8, struct.pack("<I", 2))
    with pytest.raises(UnsupportedFormatError):
        load(open_store(fs))


def test_snapshot_under_the_wrong_name_is_not_trusted() -> None:
    fs = new_fs()
    with_snapshots(fs, (40, 70))
    fs.overwrite(join(DATA_DIR, snapshot_name(70)), 0, fmt.encode_snapshot(snapshot(60, 1)))
    store = open_store(fs)
    assert load(store).snapshot == snapshot(40, 1)
    assert store.report is not None and len(store.report.corrupt_snapshots) == 1


def received(fs: SimFileSystem) -> None:
    """A follower that took a snapshot at 100 gets its log replaced by one from its leader."""
    populate(fs, last=120)
    store = open_store(fs)
    load(store)
    store.save_snapshot(snapshot(100, 1))
    store.write(HardState(3, 0, 150), entries(151, 155, 3), snapshot(150, 3))
    store.sync()
    store.close()


def test_received_snapshot_replaces_the_log() -> None:
    fs = new_fs()
    received(fs)
    state = load(open_store(fs))
    assert state.snapshot == snapshot(150, 3)
    assert state.entries == tuple(entries(151, 155, 3))


def test_missing_snapshot_the_log_was_reset_to_is_refused() -> None:
    fs = new_fs()
    received(fs)
    path = join(DATA_DIR, snapshot_name(150))
    fs.remove(path)
    with pytest.raises(CorruptSnapshotError, match="gone") as caught:
        load(open_store(fs))
    assert caught.value.path == path


def test_snapshot_disagreeing_with_the_log_about_its_term_is_refused() -> None:
    fs = new_fs()
    received(fs)
    path = join(DATA_DIR, snapshot_name(150))
    fs.overwrite(path, 0, fmt.encode_snapshot(snapshot(150, 2)))
    with pytest.raises(CorruptLogError, match="term"):
        load(open_store(fs))


def test_a_refused_start_changes_nothing_on_disk() -> None:
    """Recovery decides first and fixes last: a torn tail is not cut when it refuses."""
    fs = new_fs()
    populate(fs)
    last_segment = segments(fs)[-1]
    fs.truncate(last_segment, len(fs.media(last_segment)) - 7)  # a torn tail
    fs.create(f"{DATA_DIR}/hardstate.tmp").append(b"half")  # a leftover
    fs.corrupt(HARD_STATE, 20)
    before = {name: fs.media(join(DATA_DIR, name)) for name in fs.list_dir(DATA_DIR)}
    with pytest.raises(CorruptHardStateError):
        load(open_store(fs))
    assert {name: fs.media(join(DATA_DIR, name)) for name in fs.list_dir(DATA_DIR)} == before


def test_a_new_segment_never_starts_with_a_commit_index_its_entries_bring() -> None:
    """Regression (queue seed 2093): a write that rolled over to a new segment started
    it with the commit index of the very records it was about to append there. A
    repair that cut the new segment right after its start found that commit index
    with only the old, uncommitted entries left, and the node applied an entry that
    another node had committed differently."""
    fs = new_fs()
    store = open_store(fs)
    load(store)
    store.write(HardState(1, 1, 0), entries(1, 5, 1), None)
    store.write(HardState(1, 1, 3), [], None)  # 4 and 5 are not committed
    store.sync()
    # A new leader overwrites 4.. and commits it all, in one write that fills the segment.
    overwrite = [Entry(2, index, b"x" * 200) for index in range(4, 40)]
    store.write(HardState(2, 0, 39), overwrite, None)
    store.sync()
    store.close()
    _, second, *_ = segments(fs)
    offsets = record_offsets(fs, second)
    preamble = fs.media(second)[offsets[0] :]
    assert fmt.decode_commit(preamble, 8) <= 3  # the stream's commit before these records
    # Damage the record right after the preamble: the overwrite is cut away.
    fs.corrupt(second, offsets[1] + 30)
    store = open_store(fs, repair=True)
    state = load(store)
    assert [(e.index, e.term) for e in state.entries] == [(i, 1) for i in range(1, 6)]
    assert state.hard_state.commit == 3
