"""Checkpoints: restart points kept ahead of where the log starts, and their promotion."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from herald.raft import HardState, Snapshot
from herald.storage import DiskFaults, SimFileSystem, WalLogStore
from herald.storage.files import checkpoint_name, snapshot_name

from .scripts import DATA_DIR, entries, load, snapshot

BIG = 1 << 40


def store_with_log(fs: SimFileSystem, last: int = 100, **kw: int) -> WalLogStore:
    store = WalLogStore(fs, DATA_DIR, segment_size=4096, **kw)
    load(store)
    store.write(HardState(1, 1, 0), [], None)
    for first in range(1, last + 1, 10):
        store.write(None, entries(first, min(first + 9, last), 1), None)
        store.sync()
    return store


def names(fs: SimFileSystem, prefix: str) -> list[str]:
    return [name for name in fs.list_dir(DATA_DIR) if name.startswith(prefix)]


def keep(store: WalLogStore, checkpoint: Snapshot) -> None:
    """Save ``checkpoint`` and see it through: started, written, kept."""
    store.save_checkpoint(checkpoint)
    store.finish_checkpoint()


def test_a_checkpoint_is_started_by_a_sync_written_beside_the_log_and_kept_by_the_next() -> None:
    fs = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))
    store = store_with_log(fs)
    store.save_checkpoint(snapshot(60, 1))
    assert names(fs, "ckpt-") == []  # not on the loop
    assert store.checkpoint_wants_sync and not store.checkpoint_wants_writes
    store.sync()  # starts its file
    assert names(fs, "ckpt-") == [f"{checkpoint_name(60)}.tmp"]
    assert store.checkpoint_wants_writes and not store.checkpoint_wants_sync
    store.write_checkpoint()  # what the checkpoint thread does: written and published
    assert names(fs, "ckpt-") == [checkpoint_name(60)]
    assert not store.checkpoint_wants_writes and store.checkpoint_wants_sync
    assert store.promote(BIG) == 0  # published, not kept yet: nothing may lean on it
    store.sync()  # kept
    assert not store.checkpoint_wants_sync
    store.close()
    state = load(WalLogStore(fs, DATA_DIR, segment_size=4096))
    assert state.snapshot is None  # the log still starts at the beginning ...
    assert state.checkpoint == snapshot(60, 1)  # ... and the state restarts from here
    assert state.entries == tuple(entries(1, 100, 1))


def test_a_checkpoint_published_and_not_yet_kept_restores_after_a_crash() -> None:
    fs = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))
    store = store_with_log(fs)
    store.save_checkpoint(snapshot(60, 1))
    store.sync()
    store.write_checkpoint()
    fs.crash()  # before the sync that would keep it
    state = load(WalLogStore(fs, DATA_DIR, segment_size=4096))
    assert state.checkpoint == snapshot(60, 1)
    assert state.entries == tuple(entries(1, 100, 1))


def test_a_checkpoint_being_written_survives_the_compaction_of_older_ones() -> None:
    """A promotion between its publication and the sync that keeps it deletes the
    checkpoints nothing keeps: not this one."""
    fs = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))
    store = store_with_log(fs, keep_snapshots=1)
    keep(store, snapshot(40, 1))
    store.save_checkpoint(snapshot(70, 1))
    store.sync()
    store.write_checkpoint()  # 70 published, not kept
    assert store.promote(50) == 40  # compacts: everything not kept goes ...
    assert names(fs, "ckpt-") == [checkpoint_name(70)]  # ... but the one in hand
    store.sync()
    assert store.promote(BIG) == 70
    assert store.read_snapshot(70) == snapshot(70, 1)


def test_a_checkpoint_overtaken_by_a_received_snapshot_is_dropped_when_written() -> None:

    fs = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))
    store = store_with_log(fs)
    store.save_checkpoint(snapshot(60, 1))
    store.sync()
    received: Snapshot = snapshot(150, 2)
    store.write(HardState(2, 1, 150), [], received)
    store.sync()  # the log now starts at 150
    store.write_checkpoint()
    store.sync()
    assert names(fs, "ckpt-") == []
    store.close()
    state = load(WalLogStore(fs, DATA_DIR, segment_size=4096))
    assert state.snapshot == received
    assert state.checkpoint is None


def test_a_newer_checkpoint_replaces_one_not_yet_written() -> None:
    fs = SimFileSystem(random.Random(1))
    store = store_with_log(fs)
    store.save_checkpoint(snapshot(50, 1))
    store.save_checkpoint(snapshot(70, 1))
    store.finish_checkpoint()
    assert names(fs, "ckpt-") == [checkpoint_name(70)]


def test_promotion_takes_the_newest_checkpoint_below_the_pin() -> None:
    fs = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))
    store = store_with_log(fs, keep_snapshots=2)
    for index in (30, 60, 90):
        keep(store, snapshot(index, 1))
    assert names(fs, "ckpt-") == [checkpoint_name(60), checkpoint_name(90)]  # two kept
    assert store.promote(50) == 0  # 30 is gone: nothing kept lies below 50
    assert store.promote(85) == 60
    assert names(fs, "snap-") == [snapshot_name(60)]
    assert names(fs, "ckpt-") == [checkpoint_name(90)]
    assert store.read_snapshot(60) == snapshot(60, 1)
    assert store.read_snapshot(90) == snapshot(90, 1)
    store.release(60)
    store.close()
    state = load(WalLogStore(fs, DATA_DIR, segment_size=4096))
    assert state.snapshot == snapshot(60, 1)
    assert state.checkpoint == snapshot(90, 1)
    assert state.entries == tuple(entries(61, 100, 1))


def test_a_checkpoint_beyond_the_log_is_not_restored() -> None:
    """A repair that cuts the log back below a checkpoint must not leave the state
    ahead of the log."""
    fs = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))
    store = store_with_log(fs, last=40)
    keep(store, snapshot(40, 1))
    store.close()
    fs.remove(f"{DATA_DIR}/{sorted(names(fs, 'wal-'))[-1]}")  # the tail segment is lost
    fs.sync_dir(DATA_DIR)
    reopened = WalLogStore(fs, DATA_DIR, segment_size=4096, repair=True)
    state = load(reopened)
    assert state.last_index < 40
    assert state.checkpoint is None
    # Nor may it become where the log starts (raft seeds 72 and 193 promoted it).
    assert reopened.promote(1 << 62) == 0


def test_obsolete_and_damaged_checkpoints_are_passed_over() -> None:
    fs = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))
    store = store_with_log(fs)
    keep(store, snapshot(60, 1))
    keep(store, snapshot(80, 1))
    store.close()
    fs.corrupt(f"{DATA_DIR}/{checkpoint_name(80)}", 30)
    reopened = WalLogStore(fs, DATA_DIR, segment_size=4096)
    state = load(reopened)
    assert state.checkpoint == snapshot(60, 1)  # the older one, with the log
    assert reopened.report is not None
    assert reopened.report.corrupt_snapshots == (f"{DATA_DIR}/{checkpoint_name(80)}",)


def test_read_snapshot_names_what_is_not_kept() -> None:
    store = store_with_log(SimFileSystem(random.Random(1)))
    with pytest.raises(Exception, match="no snapshot is kept at index 7"):
        store.read_snapshot(7)


def test_a_large_checkpoint_is_written_in_slices_beside_the_log_and_a_crash_half_way_loses_nothing() -> (  # noqa: E501
    None
):
    """A checkpoint larger than ``checkpoint_slice`` goes to disk a slice per
    ``write_checkpoint``, between the log's syncs, which never wait for it. Until
    its last slice it is only a temporary file: a crash then restarts from the log
    as if it had never been taken; the log's own records are durable at every sync."""
    from herald.raft import SnapshotMeta

    fs = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))
    store = store_with_log(fs, checkpoint_slice=1000)
    state = bytes(range(256)) * 12  # 3,072 bytes: four slices
    meta = SnapshotMeta(index=60, term=1)
    store.save_checkpoint_parts(meta, [state[:100], memoryview(state)[100:]])
    store.sync()
    written = 0
    for sync in range(3):
        store.write_checkpoint()
        store.write(None, entries(101 + sync, 101 + sync, 1), None)
        store.sync()
        assert store.durable_index == 101 + sync
        assert names(fs, "ckpt-") == [f"{checkpoint_name(60)}.tmp"]
        size = len(fs.read(f"{DATA_DIR}/{checkpoint_name(60)}.tmp"))
        assert size > written
        written = size
    # A crash now: the half-written checkpoint is gone at load, nothing else is.
    fs.crash()
    restarted = load(WalLogStore(fs, DATA_DIR, segment_size=4096))
    assert restarted.checkpoint is None
    assert names(fs, "ckpt-") == []
    assert restarted.entries == tuple(entries(1, 103, 1))
    # Written to the end, it is whole and restores.
    fs2 = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))
    store = store_with_log(fs2, checkpoint_slice=1000)
    store.save_checkpoint_parts(meta, [state[:100], memoryview(state)[100:]])
    store.sync()
    for _ in range(4):
        store.write_checkpoint()
    assert not store.checkpoint_wants_writes
    store.sync()
    assert names(fs2, "ckpt-") == [checkpoint_name(60)]
    store.close()
    assert load(WalLogStore(fs2, DATA_DIR, segment_size=4096)).checkpoint == Snapshot(meta, state)


def test_a_checkpoint_written_on_its_own_thread_beside_the_log_restores_whole(
    tmp_path: Path,
) -> None:
    """The real runtime's arrangement on real files: one thread syncs the log
    while another writes the checkpoint a slice at a time."""
    import threading

    from herald.raft import SnapshotMeta
    from herald.storage import OsFileSystem

    directory = str(tmp_path / "data")
    store = WalLogStore(OsFileSystem(), directory, segment_size=1 << 16, checkpoint_slice=4096)
    load(store)
    store.write(HardState(1, 1, 0), entries(1, 50, 1), None)
    store.sync()
    state = random.Random(3).randbytes(300_000)  # 74 slices
    meta = SnapshotMeta(index=50, term=1)
    store.save_checkpoint_parts(meta, [state[:1000], memoryview(state)[1000:]])
    store.sync()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            while store.checkpoint_wants_writes:
                store.write_checkpoint()
        except BaseException as error:  # pragma: no cover - reported below
            failures.append(error)

    writer = threading.Thread(target=write)
    writer.start()
    index = 51
    while writer.is_alive() or index < 120:
        store.write(HardState(1, 1, index - 1), entries(index, index, 1), None)
        store.sync()
        index += 1
    writer.join()
    assert not failures
    store.sync()
    assert not store.checkpoint_wants_sync
    assert store.promote(BIG) == 50
    store.close()
    restarted = load(WalLogStore(OsFileSystem(), directory, segment_size=1 << 16))
    assert restarted.snapshot == Snapshot(meta, state)
    assert restarted.entries[-1].index == index - 1


def test_finish_checkpoint_writes_the_saved_one_whole_now() -> None:
    fs = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))
    store = store_with_log(fs, checkpoint_slice=100)
    store.save_checkpoint(Snapshot(snapshot(90, 1).meta, bytes(1000)))
    store.finish_checkpoint()
    assert not store.checkpoint_wants_sync and not store.checkpoint_wants_writes
    assert names(fs, "ckpt-") == [checkpoint_name(90)]
    assert store.promote(BIG) == 90


def test_a_restart_reads_only_the_newest_whole_checkpoint_and_never_promotes_an_unread_one() -> (
    None
):
    """Reading every kept checkpoint at load doubled what a restart read (each is
    the whole index: 320 MB at ten million messages). Only the newest whole one
    is read; an older one is not kept, so it can never become where the log
    starts unread, and the next checkpoint replaces it."""
    fs = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))
    store = store_with_log(fs, keep_snapshots=2)
    for index in (60, 80):
        keep(store, snapshot(index, 1))
    store.close()
    fs.corrupt(f"{DATA_DIR}/{checkpoint_name(60)}", 30)  # the older: never read, never noticed
    reopened = WalLogStore(fs, DATA_DIR, segment_size=4096, keep_snapshots=2)
    state = load(reopened)
    assert state.checkpoint == snapshot(80, 1)
    assert reopened.report is None or not reopened.report.corrupt_snapshots
    assert reopened.promote(70) == 0  # the unread 60 is not a candidate
    keep(reopened, snapshot(95, 1))
    assert names(fs, "ckpt-") == [checkpoint_name(80), checkpoint_name(95)]
    assert reopened.promote(90) == 80
    assert reopened.read_snapshot(80) == snapshot(80, 1)


@pytest.mark.parametrize("damage", ["none", "data", "head", "trailer", "short"])
def test_a_large_snapshot_file_is_read_in_pieces_and_checked_whole(damage: str) -> None:
    """A snapshot file over 1 MiB is read as head, data and checksum apart (no
    copy of the data out of the whole file's bytes): it must come back the same,
    and damage anywhere in it must still be found."""
    from herald.errors import CorruptSnapshotError
    from herald.raft import ConfState, Snapshot, SnapshotMeta
    from herald.storage import format as fmt
    from herald.storage.files import read_snapshot, write_atomically

    fs = SimFileSystem(random.Random(1), DiskFaults(torn_writes=False))
    fs.make_dirs(DATA_DIR)
    data = random.Random(2).randbytes(3 << 20)
    taken = Snapshot(SnapshotMeta(index=77, term=3, conf=ConfState((1, 2, 3))), data)
    name = checkpoint_name(77)
    write_atomically(fs, DATA_DIR, name, fmt.encode_snapshot(taken))
    path = f"{DATA_DIR}/{name}"
    size = fs.size(path)
    if damage == "data":
        fs.corrupt(path, size // 2)
    elif damage == "head":
        fs.corrupt(path, 40)
    elif damage == "trailer":
        fs.corrupt(path, size - 2)
    elif damage == "short":
        whole = fs.read(path)
        fs.remove(path)
        write_atomically(fs, DATA_DIR, name, whole[:-100])
    if damage == "none":
        assert read_snapshot(fs, DATA_DIR, name) == taken
        return
    with pytest.raises(CorruptSnapshotError):
        read_snapshot(fs, DATA_DIR, name)
