"""A clean shutdown leaves the segments' descriptions: the next start reads only the last one."""

from __future__ import annotations

import random

from herald.errors import CorruptLogError
from herald.raft import HardState
from herald.storage import DiskFaults, SimFileSystem, WalLogStore
from herald.storage.files import CLEAN_FILE

from .scripts import DATA_DIR, entries, load
from .test_logstore import RecordingFileSystem


def written(fs: SimFileSystem, last: int = 300) -> WalLogStore:
    store = WalLogStore(fs, DATA_DIR, segment_size=4096)
    load(store)
    store.write(HardState(1, 1, 0), [], None)
    for first in range(1, last + 1, 10):
        store.write(HardState(1, 1, first), entries(first, first + 9, 1), None)
        store.sync()
    return store


def segment_reads(fs: RecordingFileSystem) -> list[str]:
    return [name for op, name in fs.calls if op == "read" and name.startswith("wal-")]


def test_after_a_clean_close_the_log_is_replayed_unread_and_the_marker_goes() -> None:
    sim = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))
    store = written(sim)
    assert len(store._require_writer().segments) > 3
    store.close(clean=True)
    assert CLEAN_FILE in sim.list_dir(DATA_DIR)
    # What a start that reads every segment finds ...
    scanned = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))
    written(scanned).close()
    expected = load(WalLogStore(scanned, DATA_DIR, segment_size=4096))
    # ... a start after a clean close finds reading only the last one.
    segments = sorted(name for name in sim.list_dir(DATA_DIR) if name.startswith("wal-"))
    fs = RecordingFileSystem(sim)
    reopened = WalLogStore(fs, DATA_DIR, segment_size=4096)
    state = load(reopened)
    assert segment_reads(fs) == [segments[-1]]
    assert state.entries == expected.entries == tuple(entries(1, 300, 1))
    assert state.hard_state == expected.hard_state
    # The terms Raft matches logs by come from the descriptions, not the data.
    assert [reopened.term(i) for i in range(1, 301)] == [e.term for e in expected.entries]
    assert CLEAN_FILE not in sim.list_dir(DATA_DIR)  # gone before anything is written
    # It goes on as usual, and a crash now reads everything again.
    reopened.write(None, entries(301, 310, 1), None)
    reopened.sync()
    reopened.close()
    fs.calls.clear()
    again = load(WalLogStore(fs, DATA_DIR, segment_size=4096))
    assert segment_reads(fs)
    assert again.entries == tuple(entries(1, 310, 1))


def test_writes_not_yet_durable_stay_not_durable() -> None:
    """The marker describes only sealed segments (each synced before its successor
    existed); the last one is read at start, so what a crash took from it is gone
    as after any crash."""
    sim = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))
    store = written(sim)
    store.write(None, entries(301, 302, 1), None)  # not synced
    store.close(clean=True)
    sim.crash()
    state = load(WalLogStore(sim, DATA_DIR, segment_size=4096))
    assert state.entries == tuple(entries(1, 300, 1))


def test_a_damaged_or_stale_marker_is_not_trusted() -> None:
    sim = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))
    written(sim).close(clean=True)
    path = f"{DATA_DIR}/{CLEAN_FILE}"
    sim.corrupt(path, 40)
    fs = RecordingFileSystem(sim)
    state = load(WalLogStore(fs, DATA_DIR, segment_size=4096))
    assert len(segment_reads(fs)) > 1  # read after all
    assert state.entries == tuple(entries(1, 300, 1))


def test_damage_while_stopped_is_found_when_read_and_then_at_the_next_start() -> None:
    """The trade a clean start makes (as Kafka's): a sealed segment damaged while the
    node was stopped is not read at that start; reading its entries finds it, and the
    next start, without a marker, reads and refuses it."""
    sim = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))
    written(sim).close(clean=True)
    first = sorted(n for n in sim.list_dir(DATA_DIR) if n.startswith("wal-"))[0]
    sim.corrupt(f"{DATA_DIR}/{first}", 200)
    store = WalLogStore(sim, DATA_DIR, segment_size=4096)
    store.load()  # without reading an entry back
    try:
        store.entries(1, 11, 1 << 40)
    except CorruptLogError:
        pass
    else:
        raise AssertionError("reading the damaged record should fail")
    store.close()
    try:
        load(WalLogStore(sim, DATA_DIR, segment_size=4096))
    except CorruptLogError as error:
        assert first in error.path
    else:
        raise AssertionError("the next start should read and refuse the damaged segment")


def test_a_segment_is_described_with_its_last_commit_only() -> None:
    """Most records are commit records (one per sync) and replay keeps only the last
    one: the writer keeps only that, so the description costs the entries, not the
    syncs."""
    from herald.storage import format as fmt

    sim = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))
    store = written(sim)
    sealed = store._require_writer().describe_sealed()
    assert sealed
    for _seq, _size, flat in sealed:
        commits = entries_seen = 0
        position = 0
        while position < len(flat):
            kind = flat[position]
            if kind == fmt.ENTRIES:
                entries_seen += 1
                position += 5 + flat[position + 4]
            elif kind == fmt.COMMIT:
                commits += 1
                position += 4
            else:
                position += 5
        assert commits <= 1 and entries_seen > 0
