"""Reading the log back from its segments: the cache, restarts, damage, read errors, threads."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import pytest

from herald.errors import CorruptLogError, StorageIOError, UsageError
from herald.raft import Entry, HardState
from herald.storage import DiskFaults, OsFileSystem, SimFileSystem, WalLogStore

from .scripts import DATA_DIR, entries, load, snapshot

BIG = 1 << 40


def fresh(fs: SimFileSystem | OsFileSystem, directory: str = DATA_DIR, **kw: int) -> WalLogStore:
    store = WalLogStore(fs, directory, **kw)
    load(store)
    store.write(HardState(1, 1, 0), [], None)
    return store


def test_what_was_written_reads_back_from_the_cache_without_touching_the_files() -> None:
    store = fresh(SimFileSystem(random.Random(1)))
    written = entries(1, 30, 1)
    for first in range(0, 30, 10):
        store.write(None, written[first : first + 10], None)
        store.sync()
    assert store.entries(1, 31, BIG) == written
    assert store.reads == 0


def test_without_a_cache_every_record_is_read_back_from_its_segment() -> None:
    store = fresh(SimFileSystem(random.Random(1)), cache_bytes=0, segment_size=4096)
    written = entries(1, 60, 1)
    for first in range(0, 60, 5):
        store.write(None, written[first : first + 5], None)
        store.sync()
    assert store.entries(1, 61, BIG) == written
    assert store.reads == 12  # one per record, across several segments
    assert store.entries(23, 27, BIG) == written[22:26]
    assert [store.term(i) for i in (1, 60)] == [1, 1]


def test_reads_respect_the_size_limit_but_return_at_least_one_entry() -> None:
    store = fresh(SimFileSystem(random.Random(1)))
    written = entries(1, 10, 1, size=100)
    store.write(None, written, None)
    store.sync()
    assert store.entries(1, 11, 0) == written[:1]
    assert store.entries(1, 11, 3 * 116) == written[:3]


def test_a_replaced_suffix_reads_as_the_new_entries() -> None:
    store = fresh(SimFileSystem(random.Random(1)), cache_bytes=0)
    store.write(None, entries(1, 10, 1), None)
    store.sync()
    store.write(HardState(2, 2, 0), entries(6, 8, 2), None)  # a new leader's entries
    store.sync()
    got = store.entries(1, 9, BIG)
    assert got == entries(1, 5, 1) + entries(6, 8, 2)
    with pytest.raises(UsageError):
        store.entries(9, 10, BIG)


def test_after_a_restart_the_entries_are_read_from_disk() -> None:
    fs = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))
    store = fresh(fs, segment_size=4096)
    written = entries(1, 80, 1)
    for first in range(0, 80, 8):
        store.write(None, written[first : first + 8], None)
        store.sync()
    store.save_snapshot(snapshot(40, 1))
    store.close()
    again = WalLogStore(fs, DATA_DIR, segment_size=4096)
    state = again.load()
    assert (state.snapshot, state.last_index) == (snapshot(40, 1), 80)
    assert again.entries(41, 81, BIG) == written[40:]
    assert again.reads > 0
    assert again.term(40) == 1  # the snapshot's


def test_released_entries_are_forgotten_and_their_segments_go() -> None:
    fs = SimFileSystem(random.Random(1))
    store = fresh(fs, segment_size=4096, keep_snapshots=1)
    for first in range(1, 200, 10):
        store.write(None, entries(first, first + 9, 1), None)
        store.sync()
    segments = [name for name in fs.list_dir(DATA_DIR) if name.startswith("wal-")]
    store.save_snapshot(snapshot(150, 1))
    store.release(120)
    left = [name for name in fs.list_dir(DATA_DIR) if name.startswith("wal-")]
    assert len(left) < len(segments)
    with pytest.raises(UsageError):
        store.entries(120, 121, BIG)
    assert store.entries(121, 200, BIG) == entries(121, 199, 1)


def test_a_record_damaged_after_it_was_written_stops_the_store(tmp_path: Path) -> None:
    directory = str(tmp_path / "data")
    store = fresh(OsFileSystem(), directory, cache_bytes=0)
    store.write(None, entries(1, 20, 1), None)
    store.sync()
    segment = os.path.join(directory, sorted(os.listdir(directory))[-1])
    assert segment.endswith(".log")
    with open(segment, "r+b") as file:
        file.seek(os.path.getsize(segment) - 40)
        byte = file.read(1)
        file.seek(-1, os.SEEK_CUR)
        file.write(bytes([byte[0] ^ 0x10]))
    with pytest.raises(CorruptLogError, match="checksum"):
        store.entries(1, 21, BIG)
    with pytest.raises(StorageIOError, match="failed earlier"):
        store.write(None, entries(21, 21, 1), None)
    store.close()


def test_a_read_error_is_retried_and_reported_only_if_it_persists() -> None:
    fs = SimFileSystem(random.Random(1))
    store = fresh(fs, cache_bytes=0)
    store.write(None, entries(1, 5, 1), None)
    store.sync()
    fs.faults = DiskFaults(read_error=0.3)
    failed = 0
    for _ in range(50):
        try:
            assert store.entries(1, 6, BIG) == entries(1, 5, 1)
        except StorageIOError:
            failed += 1  # three misses in a row: 2.7% of reads
    assert fs.injected["read_error"] > 10 and failed <= 5
    fs.faults = DiskFaults(read_error=1.0)
    with pytest.raises(StorageIOError, match="EIO"):
        store.entries(1, 6, BIG)
    fs.faults = DiskFaults()
    assert store.entries(1, 6, BIG) == entries(1, 5, 1)  # a read error does not poison


def test_reads_while_the_fsync_thread_appends(tmp_path: Path) -> None:
    """The runtime syncs on its own thread while the loop reads the log."""
    store = fresh(OsFileSystem(), str(tmp_path / "data"), cache_bytes=4096, segment_size=1 << 16)
    store.write(None, entries(1, 1, 1), None)
    store.sync()
    durable = [1]
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for first in range(2, 2000, 20):
                store.write(None, entries(first, first + 19, 1), None)
                store.sync()
                durable[0] = first + 19
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    thread = threading.Thread(target=writer)
    thread.start()
    rng = random.Random(5)
    checked = 0
    while thread.is_alive() or checked < 50:
        last = durable[0]
        lo = rng.randint(1, last)
        got: list[Entry] = store.entries(lo, last + 1, BIG)
        assert got == entries(lo, last, 1)
        checked += 1
    thread.join()
    assert not errors
    store.close()
