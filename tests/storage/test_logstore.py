"""WalLogStore's API contract: group commit, the durable index, ordering, errors, the host."""

from __future__ import annotations

import random

import pytest

from herald.errors import LockedError, StorageIOError, UsageError
from herald.node.host import NodeHost
from herald.raft import Config, HardState
from herald.sim.world import DigestStateMachine
from herald.storage import DiskFaults, SimFileSystem, WalLogStore
from herald.storage.files import snapshot_name
from herald.storage.fs import DirLock, FileHandle

from .scripts import DATA_DIR, entries, load, snapshot


class RecordingFileSystem:
    """Passes every call to a SimFileSystem and records (operation, path)."""

    def __init__(self, inner: SimFileSystem) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []

    def _record(self, operation: str, path: str) -> None:
        self.calls.append((operation, path.rsplit("/", 1)[-1]))

    def make_dirs(self, path: str) -> None:
        self.inner.make_dirs(path)

    def list_dir(self, path: str) -> list[str]:
        return self.inner.list_dir(path)

    def exists(self, path: str) -> bool:
        return self.inner.exists(path)

    def read(self, path: str) -> bytes:
        self._record("read", path)
        return self.inner.read(path)

    def size(self, path: str) -> int:
        return self.inner.size(path)

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        self._record("read_range", path)
        return self.inner.read_range(path, offset, length)

    def create(self, path: str) -> FileHandle:
        self._record("create", path)
        return RecordingHandle(self, self.inner.create(path))

    def open_append(self, path: str) -> FileHandle:
        return RecordingHandle(self, self.inner.open_append(path))

    def truncate(self, path: str, size: int) -> None:
        self._record("truncate", path)
        self.inner.truncate(path, size)

    def rename(self, source: str, target: str) -> None:
        self._record("rename", target)
        self.inner.rename(source, target)

    def remove(self, path: str) -> None:
        self._record("remove", path)
        self.inner.remove(path)

    def sync_dir(self, path: str) -> None:
        self._record("sync_dir", path)
        self.inner.sync_dir(path)

    def lock(self, path: str) -> DirLock:
        return self.inner.lock(path)

    def since(self, mark: int) -> list[tuple[str, str]]:
        return self.calls[mark:]


class RecordingHandle:
    def __init__(self, fs: RecordingFileSystem, inner: FileHandle) -> None:
        self.fs = fs
        self.inner = inner

    @property
    def path(self) -> str:
        return self.inner.path

    def append(self, data: bytes | memoryview) -> None:
        self.fs._record("append", self.inner.path)
        self.inner.append(data)

    def sync(self) -> None:
        self.fs._record("fsync", self.inner.path)
        self.inner.sync()

    def close(self) -> None:
        self.inner.close()


def recording_store(**options: object) -> tuple[WalLogStore, RecordingFileSystem]:
    fs = RecordingFileSystem(SimFileSystem(random.Random(3)))
    store = WalLogStore(fs, DATA_DIR, segment_size=1 << 16, **options)  # type: ignore[arg-type]
    load(store)
    return store, fs


def test_group_commit_many_writes_one_append_one_fsync() -> None:
    store, fs = recording_store()
    store.write(HardState(1, 1, 0), entries(1, 1, 1), None)
    store.sync()
    mark = len(fs.calls)
    for index in range(2, 102):
        store.write(HardState(1, 1, index - 1), entries(index, index, 1), None)
    assert fs.since(mark) == []  # nothing reached the disk yet
    assert store.durable_index == 1
    store.sync()
    assert [op for op, _ in fs.since(mark)] == ["append", "fsync"]
    assert store.durable_index == 101


def test_durable_index_moves_only_when_sync_returns() -> None:
    inner = SimFileSystem(random.Random(1))
    store = WalLogStore(inner, DATA_DIR)
    load(store)
    store.write(HardState(1, 1, 0), entries(1, 10, 1), None)
    assert store.durable_index == 0 and store.last_index == 10
    inner.arm_crash(3)  # hard state: create, append, (fsync crashes)
    with pytest.raises(Exception, match="power loss"):
        store.sync()
    assert store.durable_index == 0


def test_term_or_vote_change_rewrites_the_hard_state_atomically_before_the_log() -> None:
    store, fs = recording_store()
    mark = len(fs.calls)
    store.write(HardState(2, 1, 0), entries(1, 3, 2), None)
    store.sync()
    assert fs.since(mark) == [
        ("create", "hardstate.tmp"),
        ("append", "hardstate.tmp"),
        ("fsync", "hardstate.tmp"),
        ("rename", "hardstate"),
        ("sync_dir", "data"),
        ("append", "wal-0000000001.log"),
        ("fsync", "wal-0000000001.log"),
    ]
    mark = len(fs.calls)
    store.write(HardState(2, 1, 3), [], None)  # commit only: a log record, no file rewrite
    store.sync()
    assert [op for op, _ in fs.since(mark)] == ["append", "fsync"]


def test_received_snapshot_is_durable_before_the_log_announces_it() -> None:
    store, fs = recording_store()
    store.write(HardState(1, 1, 0), entries(1, 3, 1), None)
    store.sync()
    mark = len(fs.calls)
    store.write(HardState(2, 0, 50), entries(51, 52, 2), snapshot(50, 2))
    # Header, state and checksum, appended one after the other (never joined).
    assert fs.since(mark) == [
        ("create", f"{snapshot_name(50)}.tmp"),
        ("append", f"{snapshot_name(50)}.tmp"),
        ("append", f"{snapshot_name(50)}.tmp"),
        ("append", f"{snapshot_name(50)}.tmp"),
    ]
    store.sync()
    ops = fs.since(mark)
    assert ops.index(("rename", snapshot_name(50))) < ops.index(("append", "wal-0000000001.log"))
    assert ops.index(("rename", "hardstate")) < ops.index(("rename", snapshot_name(50)))


def test_segments_are_removed_only_after_the_covering_snapshot_is_durable() -> None:
    fs = RecordingFileSystem(SimFileSystem(random.Random(3)))
    store = WalLogStore(fs, DATA_DIR, segment_size=4096, keep_snapshots=1)
    load(store)
    store.write(HardState(1, 1, 0), [], None)
    for first in range(1, 200, 10):
        store.write(None, entries(first, first + 9, 1), None)
        store.sync()
    mark = len(fs.calls)
    store.save_snapshot(snapshot(150, 1))
    ops = fs.since(mark)
    wal_removes = [name for op, name in ops if op == "remove" and name.startswith("wal-")]
    assert not wal_removes, "nobody said the entries will not be read again"
    store.release(150)
    ops = fs.since(mark)
    removes = [i for i, (op, name) in enumerate(ops) if op == "remove" and name.startswith("wal-")]
    assert removes, "old segments should go"
    published = ops.index(("rename", snapshot_name(150)))
    assert ops[published + 1] == ("sync_dir", "data")
    assert published < min(removes)


def test_save_snapshot_does_not_make_buffered_writes_durable() -> None:
    inner = SimFileSystem(random.Random(3), DiskFaults(torn_writes=False))
    store = WalLogStore(inner, DATA_DIR, flush_bytes=64)
    load(store)
    store.write(HardState(1, 1, 0), entries(1, 10, 1), None)
    store.sync()
    store.write(None, entries(11, 20, 1), None)  # reaches the file (flush_bytes), not synced
    store.save_snapshot(snapshot(5, 1))
    inner.crash(lose_all=True)
    state = load(WalLogStore(inner, DATA_DIR))
    assert state.snapshot == snapshot(5, 1)
    assert state.entries[-1].index == 10


def test_snapshot_retention_keeps_the_newest_two() -> None:
    inner = SimFileSystem(random.Random(3))
    store = WalLogStore(inner, DATA_DIR)
    load(store)
    store.write(HardState(1, 1, 0), entries(1, 50, 1), None)
    store.sync()
    for index in (10, 20, 30, 40):
        store.save_snapshot(snapshot(index, 1))
    assert [n for n in inner.list_dir(DATA_DIR) if n.startswith("snap-")] == [
        snapshot_name(30),
        snapshot_name(40),
    ]
    store.save_snapshot(snapshot(35, 1))  # older than the newest: ignored
    assert len([n for n in inner.list_dir(DATA_DIR) if n.startswith("snap-")]) == 2


def test_failed_fsync_poisons_the_store() -> None:
    inner = SimFileSystem(random.Random(3))
    store = WalLogStore(inner, DATA_DIR)
    load(store)
    store.write(HardState(1, 1, 0), entries(1, 5, 1), None)
    store.sync()
    inner.faults = DiskFaults(fsync_error=1.0)
    store.write(None, entries(6, 10, 1), None)
    with pytest.raises(StorageIOError, match="fsync"):
        store.sync()
    assert store.durable_index == 5
    inner.faults = DiskFaults()
    with pytest.raises(StorageIOError, match="failed earlier"):
        store.sync()  # retrying would "succeed" on data the kernel already dropped
    with pytest.raises(StorageIOError, match="failed earlier"):
        store.write(None, entries(11, 11, 1), None)
    store.close()
    inner.crash()
    assert load(WalLogStore(inner, DATA_DIR)).entries[-1].index == 5


def test_read_error_at_load_is_a_typed_error_and_a_retry_may_succeed() -> None:
    inner = SimFileSystem(random.Random(3))
    store = WalLogStore(inner, DATA_DIR)
    load(store)
    store.write(HardState(1, 1, 0), entries(1, 5, 1), None)
    store.sync()
    store.close()
    inner.faults = DiskFaults(read_error=1.0)
    with pytest.raises(StorageIOError, match="read"):
        load(WalLogStore(inner, DATA_DIR))
    inner.faults = DiskFaults()
    assert len(load(WalLogStore(inner, DATA_DIR)).entries) == 5


def test_second_open_of_a_directory_is_refused() -> None:
    inner = SimFileSystem(random.Random(3))
    store = WalLogStore(inner, DATA_DIR)
    with pytest.raises(LockedError) as caught:
        WalLogStore(inner, DATA_DIR)
    assert caught.value.path == DATA_DIR
    store.close()
    WalLogStore(inner, DATA_DIR).close()


def test_usage_errors() -> None:
    inner = SimFileSystem(random.Random(3))
    store = WalLogStore(inner, DATA_DIR)
    with pytest.raises(UsageError, match="load"):
        store.write(None, entries(1, 1, 1), None)
    load(store)
    with pytest.raises(UsageError, match="once"):
        load(store)
    with pytest.raises(UsageError, match="gap"):
        store.write(None, entries(3, 4, 1), None)
    with pytest.raises(UsageError, match="contiguous"):
        store.write(None, entries(1, 1, 1) + entries(3, 3, 1), None)
    store.close()
    with pytest.raises(UsageError):
        store.sync()
    with pytest.raises(UsageError):
        WalLogStore(inner, DATA_DIR, segment_size=100)


def test_leftover_temporary_files_are_removed_at_load() -> None:
    inner = SimFileSystem(random.Random(3))
    inner.make_dirs(DATA_DIR)
    inner.create(f"{DATA_DIR}/hardstate.tmp").append(b"half")
    store = WalLogStore(inner, DATA_DIR)
    load(store)
    assert store.report is not None
    assert store.report.removed_temp_files == (f"{DATA_DIR}/hardstate.tmp",)
    assert not inner.exists(f"{DATA_DIR}/hardstate.tmp")


def test_entries_covered_by_a_snapshot_are_skipped_on_write() -> None:
    inner = SimFileSystem(random.Random(3))
    store = WalLogStore(inner, DATA_DIR)
    load(store)
    store.write(HardState(2, 0, 20), entries(21, 25, 2), snapshot(20, 2))
    store.write(None, entries(15, 27, 2), None)  # 15..20 are inside the snapshot
    store.sync()
    store.close()
    state = load(WalLogStore(inner, DATA_DIR))
    assert state.entries == tuple(entries(21, 27, 2))


# -- the node host on the WAL ----------------------------------------------------------------


def test_node_host_runs_on_the_wal_and_recovers_after_a_crash() -> None:
    inner = SimFileSystem(random.Random(11), DiskFaults(misorder=0.5))

    def start() -> tuple[NodeHost, DigestStateMachine]:
        machine = DigestStateMachine()
        host = NodeHost(
            Config(id=1, voters=(1,)),
            WalLogStore(inner, DATA_DIR, segment_size=4096),
            _NoTransport(),
            machine,
            random.Random(1),
            snapshot_entries=20,
            retain_entries=5,
        )
        return host, machine

    host, machine = start()
    host.node.campaign()
    host.process_all()
    for number in range(60):
        host.propose(f"message {number}".encode())
        host.process_all()
    applied = machine.count
    digest = machine.digest
    assert applied == 60
    inner.crash()
    host, machine = start()
    host.node.campaign()
    host.process_all()
    # Every proposal was applied only after its fsync, so all are recovered.
    assert machine.count == applied and machine.digest == digest


class _NoTransport:
    def send(self, messages: object) -> None:
        pass
