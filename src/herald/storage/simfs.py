"""The simulated disk: a deterministic FileSystem that loses, tears, reorders and rots data.

FAULT MODEL (a contract between the simulated disk, the storage layer and the
simulator's checkers; every rate is drawn from the run's seed, every draw comes
from the injected ``random.Random``)

What the disk does
  1. *Unsynced data is volatile.* Appends reach the page cache (reads see them
     at once) and reach the media only at ``FileHandle.sync``. Creates, renames
     and removals reach the media only at ``sync_dir`` of their directory.
     ``truncate`` and ``make_dirs`` are durable when they return.
  2. *Crash (power loss), always on.* ``crash()`` drops the page cache. Of the
     changes not yet durable, a prefix survives in the order they were made,
     cut at a seed-drawn point; with ``torn_writes`` the first change past the
     cut, if an append, survives torn at any byte (a prefix of it). Within one
     file, unsynced appends therefore survive as a prefix, as with ext4's
     ordered mode.
  3. *Misordered crash* (``misorder``: the chance per crash). Each file and
     each directory is cut independently: a later unsynced write to one file
     survives while an earlier one to another does not; a rename or create
     whose directory was not fsynced may vanish while the file's data stays, or
     survive while its unsynced data is lost.
  4. *Lost write* (``lost_write``, per append). The append reports success and
     is readable until the next crash, but never reaches the media: after a
     crash its bytes read as zeros (the size was updated, the data not).
  5. *Bit flip* (``bit_flip``, per append reaching the media). One bit of the
     stored copy is flipped; reads see it after the next crash.
  6. *Read error* (``read_error``, per read). ``read`` or ``read_range`` fails with EIO
     (:class:`~herald.errors.StorageIOError`); a retry may succeed.
  7. *Failed fsync* (``fsync_error``, per file sync). The sync raises, and the
     file's unsynced appends are dropped from the media although the cache
     still shows them (Linux's behaviour): a store must not retry and trust.

What the storage layer promises in return
  - Everything a completed ``sync`` covered is recovered, as long as the
    media kept it (faults 1-3 never lose it).
  - A torn tail is truncated; a crash anywhere leaves a log that recovers, to
    a state reached by a prefix of the writes since the last sync.
  - Damage before the tail (a lost write or flipped bit followed by valid
    data, or in any segment but the last, in the hard state, or in a snapshot
    with no older one to fall back to) is never silently dropped: ``load``
    refuses with a typed error naming file and offset, unless the operator
    passed ``repair=True``, and then it says what it discarded.
  - After a failed fsync the store refuses all further work (restart, recover).

What the cluster must survive, and what it must refuse
  - Torn tails and misordered crashes on any number of nodes, at any time:
    nothing acknowledged depends on unsynced data.
  - Detected corruption, read errors and failed fsyncs on a minority of
    nodes: those nodes stop (or, repaired, must not vote until a leader has
    caught them up); the majority goes on.
  - Corruption on a majority of nodes: the cluster must stop making progress
    rather than serve or acknowledge wrong data.
  - A lost write or bit flip that strikes the *last* record written before a
    crash is not taken for a torn write: zeros, a checksum that fails, and a
    length field that runs past the end although the record is whole (its
    checksum fits a shorter length: raft seed 769) make the node recover
    before it votes again.
  - Known blind spot: a synced record of which only a prefix survives (a
    drive that acknowledged a flush it had not done) looks exactly like a
    torn write and is truncated as one (reported in ``RecoveryReport.tail``).
    A single copy of a log cannot tell the two apart; such a node silently
    forgets acknowledged entries, and Raft is only safe if that happens to
    fewer nodes than a quorum can lose. The simulator must count such a node
    as faulty.

Deterministic: no clock, no global random; dictionaries are only iterated in
insertion order and ``list_dir`` sorts.
"""

from __future__ import annotations

import posixpath
import random
from dataclasses import dataclass, field
from typing import final

from herald.errors import LockedError, StorageIOError

from .fs import DirLock, FileHandle

__all__ = ["DiskFaults", "SimFileSystem", "SimulatedCrash"]


@dataclass(frozen=True, slots=True)
class DiskFaults:
    """The rates of the faults in the module's contract; all off but crash tearing."""

    torn_writes: bool = True
    misorder: float = 0.0
    lost_write: float = 0.0
    bit_flip: float = 0.0
    read_error: float = 0.0
    fsync_error: float = 0.0

    @classmethod
    def draw(cls, rng: random.Random, *, media_faults: bool = True) -> DiskFaults:
        """A seed-drawn fault mix (swarm testing): each run gets its own rates."""
        return cls(
            torn_writes=rng.random() < 0.9,
            misorder=rng.choice((0.0, 0.0, 0.2, 0.5, 1.0)),
            lost_write=rng.choice((0.0, 0.0, 1e-4, 1e-3)) if media_faults else 0.0,
            bit_flip=rng.choice((0.0, 0.0, 1e-4, 1e-3)) if media_faults else 0.0,
            read_error=rng.choice((0.0, 0.0, 1e-3, 1e-2)) if media_faults else 0.0,
            fsync_error=rng.choice((0.0, 0.0, 1e-4, 1e-3)) if media_faults else 0.0,
        )


class SimulatedCrash(Exception):  # noqa: N818 - not an error: the power went out
    """Raised by an armed :class:`SimFileSystem` in place of the operation it was armed at."""


@dataclass(slots=True)
class _Inode:
    cache: bytearray = field(default_factory=bytearray)
    media: bytearray = field(default_factory=bytearray)


@dataclass(slots=True)
class _Append:
    inode: int
    offset: int
    data: bytes
    lost: bool


@dataclass(slots=True)
class _DirChange:
    directory: str
    changes: tuple[tuple[str, int | None], ...]  # (name, inode) links; None unlinks


_Pending = _Append | _DirChange


@final
class _SimFile:
    __slots__ = ("_fs", "_generation", "_inode", "_path")

    def __init__(self, fs: SimFileSystem, path: str, inode: int) -> None:
        self._fs = fs
        self._path = path
        self._inode = inode
        self._generation = fs.generation

    @property
    def path(self) -> str:
        return self._path

    def _check(self, operation: str) -> None:
        if self._generation != self._fs.generation:
            raise StorageIOError(self._path, operation, "file handle outlived a crash")

    def append(self, data: bytes | memoryview) -> None:
        self._check("write")
        self._fs._append(self._path, self._inode, data)

    def sync(self) -> None:
        self._check("fsync")
        self._fs._fsync(self._path, self._inode)

    def close(self) -> None:
        pass


@final
class _SimLock:
    __slots__ = ("_fs", "_generation", "_path")

    def __init__(self, fs: SimFileSystem, path: str) -> None:
        self._fs = fs
        self._path = path
        self._generation = fs.generation

    def release(self) -> None:
        if self._generation == self._fs.generation:
            self._fs._locks.discard(self._path)


@final
class SimFileSystem:
    """A :class:`~herald.storage.fs.FileSystem` with the faults of the module contract.

    ``operations`` counts the calls that change anything (create, append, sync,
    rename, remove, truncate, sync_dir); :meth:`arm_crash` makes the n-th such
    call raise :class:`SimulatedCrash` instead of happening, so a test can crash
    at every write boundary of a script.
    """

    def __init__(self, rng: random.Random, faults: DiskFaults | None = None) -> None:
        self.rng = rng
        self.faults = faults if faults is not None else DiskFaults()
        self.operations = 0
        self.generation = 0  # bumped by every crash or kill: old handles go stale
        self.crashes = 0
        self.injected: dict[str, int] = {}  # fault name -> count, for the run's stats
        self._crash_at: int | None = None
        self._inodes: dict[int, _Inode] = {}
        self._next_inode = 1
        self._dirs: dict[str, dict[str, int]] = {"/": {}}  # what the process sees
        self._durable_dirs: dict[str, dict[str, int]] = {"/": {}}  # what survives a crash
        self._pending: list[_Pending] = []
        self._locks: set[str] = set()

    # -- fault control ------------------------------------------------------------------

    def arm_crash(self, operation: int | None) -> None:
        """Make the ``operation``-th changing call from now on (1 = the next) raise
        :class:`SimulatedCrash` without happening; None disarms."""
        self._crash_at = None if operation is None else self.operations + operation

    def _tick(self) -> None:
        self.operations += 1
        if self._crash_at is not None and self.operations >= self._crash_at:
            self._crash_at = None
            raise SimulatedCrash(f"simulated power loss at operation {self.operations}")

    def _count(self, fault: str) -> None:
        self.injected[fault] = self.injected.get(fault, 0) + 1

    def _chance(self, rate: float) -> bool:
        return rate > 0.0 and self.rng.random() < rate

    def crash(self, *, lose_all: bool = False) -> None:
        """Power loss: keep what is durable plus a seed-drawn part of what is not."""
        self.crashes += 1
        self.generation += 1
        self._locks.clear()
        self._crash_at = None
        pending, self._pending = self._pending, []
        if pending and not lose_all:
            survivors = self._surviving(pending)
            for position, change in enumerate(pending):
                keep = survivors.get(position)
                if keep is None:
                    continue
                if isinstance(change, _DirChange):
                    self._apply_dir_change(change)
                else:
                    self._apply_append(change, keep)
        # Reachable files keep their media content; the rest is gone with the cache.
        reachable: set[int] = set()
        self._dirs = {}
        for directory, names in self._durable_dirs.items():
            self._dirs[directory] = dict(names)
            reachable.update(names.values())
        for number in list(self._inodes):
            if number in reachable:
                inode = self._inodes[number]
                inode.cache = bytearray(inode.media)
            else:
                del self._inodes[number]

    def _surviving(self, pending: list[_Pending]) -> dict[int, int]:
        """position -> how many bytes survive (for a directory change: any value)."""
        torn = self.faults.torn_writes
        result: dict[int, int] = {}
        if self._chance(self.faults.misorder):
            self._count("misordered_crash")
            streams: dict[tuple[str, int | str], list[int]] = {}
            for position, change in enumerate(pending):
                key: tuple[str, int | str] = (
                    ("dir", change.directory)
                    if isinstance(change, _DirChange)
                    else ("file", change.inode)
                )
                streams.setdefault(key, []).append(position)
            cuts = [
                (positions, self.rng.randint(0, len(positions))) for positions in streams.values()
            ]
        else:
            cuts = [(list(range(len(pending))), self.rng.randint(0, len(pending)))]
        for positions, cut in cuts:
            for position in positions[:cut]:
                change = pending[position]
                result[position] = len(change.data) if isinstance(change, _Append) else 0
            if torn and cut < len(positions):
                change = pending[positions[cut]]
                if isinstance(change, _Append) and change.data:
                    self._count("torn_write")
                    result[positions[cut]] = self.rng.randint(0, len(change.data) - 1)
        return result

    def kill(self) -> None:
        """The process dies (no power loss): locks and handles go, the page cache stays."""
        self.generation += 1
        self._locks.clear()
        self._crash_at = None

    def flush(self) -> None:
        """Make everything durable, as an orderly OS shutdown would."""
        pending, self._pending = self._pending, []
        for change in pending:
            if isinstance(change, _DirChange):
                self._apply_dir_change(change)
            else:
                self._apply_append(change, len(change.data))

    # -- test helpers: look at and damage the media directly ---------------------------

    def media(self, path: str) -> bytes:
        """What the media holds for ``path`` (follows the visible name)."""
        return bytes(self._inodes[self._lookup(path, "media")].media)

    def corrupt(self, path: str, offset: int, xor: int = 0x01) -> None:
        """Flip bits of one byte, on the media and in the cache (bit rot, then a reread)."""
        inode = self._inodes[self._lookup(path, "corrupt")]
        for copy in (inode.media, inode.cache):
            if offset < len(copy):
                copy[offset] ^= xor

    def overwrite(self, path: str, offset: int, data: bytes) -> None:
        """Replace bytes on the media and in the cache (a misdirected or lost write)."""
        inode = self._inodes[self._lookup(path, "overwrite")]
        for copy in (inode.media, inode.cache):
            copy[offset : offset + len(data)] = data

    @property
    def unsynced_changes(self) -> int:
        return len(self._pending)

    # -- the FileSystem interface -----------------------------------------------------------

    def make_dirs(self, path: str) -> None:
        path = posixpath.normpath(path)
        parts = [part for part in path.split("/") if part]
        current = "/"
        for part in parts:
            parent = current
            current = posixpath.join(current, part)
            if current not in self._dirs:
                if part in self._dirs[parent]:
                    raise StorageIOError(current, "mkdir", "a file has that name")
                self._dirs[current] = {}
                self._durable_dirs[current] = {}

    def list_dir(self, path: str) -> list[str]:
        names = self._dirs.get(posixpath.normpath(path))
        if names is None:
            raise StorageIOError(path, "list", "no such directory")
        return sorted(names)

    def exists(self, path: str) -> bool:
        path = posixpath.normpath(path)
        if path in self._dirs:
            return True
        directory, name = posixpath.split(path)
        return name in self._dirs.get(directory, {})

    def size(self, path: str) -> int:
        return len(self._inodes[self._lookup(path, "stat")].cache)

    def read(self, path: str) -> bytes:
        number = self._lookup(path, "read")
        if self._chance(self.faults.read_error):
            self._count("read_error")
            raise StorageIOError(path, "read", "simulated EIO")
        return bytes(self._inodes[number].cache)

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        number = self._lookup(path, "read")
        if self._chance(self.faults.read_error):
            self._count("read_error")
            raise StorageIOError(path, "read", "simulated EIO")
        return bytes(self._inodes[number].cache[offset : offset + length])

    def create(self, path: str) -> FileHandle:
        directory, name = self._split(path, "create")
        self._tick()
        number = self._next_inode
        self._next_inode += 1
        self._inodes[number] = _Inode()
        self._dirs[directory][name] = number
        self._pending.append(_DirChange(directory, ((name, number),)))
        return _SimFile(self, path, number)

    def open_append(self, path: str) -> FileHandle:
        return _SimFile(self, path, self._lookup(path, "open"))

    def truncate(self, path: str, size: int) -> None:
        number = self._lookup(path, "truncate")
        self._tick()
        self._sync_inode(number)
        inode = self._inodes[number]
        del inode.cache[size:]
        del inode.media[size:]

    def rename(self, source: str, target: str) -> None:
        directory, source_name = self._split(source, "rename")
        target_directory, target_name = self._split(target, "rename")
        if directory != target_directory:
            raise StorageIOError(source, "rename", "across directories")
        number = self._lookup(source, "rename")
        self._tick()
        names = self._dirs[directory]
        del names[source_name]
        names[target_name] = number
        self._pending.append(_DirChange(directory, ((target_name, number), (source_name, None))))

    def remove(self, path: str) -> None:
        directory, name = self._split(path, "remove")
        self._lookup(path, "remove")
        self._tick()
        del self._dirs[directory][name]
        self._pending.append(_DirChange(directory, ((name, None),)))

    def sync_dir(self, path: str) -> None:
        directory = posixpath.normpath(path)
        if directory not in self._dirs:
            raise StorageIOError(path, "fsync directory", "no such directory")
        self._tick()
        keep: list[_Pending] = []
        for change in self._pending:
            if isinstance(change, _DirChange) and change.directory == directory:
                self._apply_dir_change(change)
            else:
                keep.append(change)
        self._pending = keep

    def lock(self, path: str) -> DirLock:
        directory = posixpath.normpath(path)
        if directory not in self._dirs:
            raise StorageIOError(path, "lock", "no such directory")
        if directory in self._locks:
            raise LockedError(path)
        self._locks.add(directory)
        return _SimLock(self, directory)

    # -- internals ------------------------------------------------------------------------

    def _split(self, path: str, operation: str) -> tuple[str, str]:
        directory, name = posixpath.split(posixpath.normpath(path))
        if directory not in self._dirs:
            raise StorageIOError(path, operation, "no such directory")
        return directory, name

    def _lookup(self, path: str, operation: str) -> int:
        directory, name = self._split(path, operation)
        number = self._dirs[directory].get(name)
        if number is None:
            raise StorageIOError(path, operation, "no such file")
        return number

    def _append(self, path: str, number: int, data: bytes | memoryview) -> None:
        if number not in self._inodes:
            raise StorageIOError(path, "write", "file is gone")
        self._tick()
        inode = self._inodes[number]
        lost = self._chance(self.faults.lost_write)
        if lost:
            self._count("lost_write")
        self._pending.append(_Append(number, len(inode.cache), bytes(data), lost))
        inode.cache += data

    def _fsync(self, path: str, number: int) -> None:
        if number not in self._inodes:
            raise StorageIOError(path, "fsync", "file is gone")
        self._tick()
        if self._chance(self.faults.fsync_error):
            self._count("fsync_error")
            # The kernel marks the dirty pages clean: their data never reaches the
            # media, although reads keep seeing it until the cache is dropped.
            self._pending = [
                change
                for change in self._pending
                if not (isinstance(change, _Append) and change.inode == number)
            ]
            raise StorageIOError(path, "fsync", "simulated EIO")
        self._sync_inode(number)

    def _sync_inode(self, number: int) -> None:
        keep: list[_Pending] = []
        for change in self._pending:
            if isinstance(change, _Append) and change.inode == number:
                self._apply_append(change, len(change.data))
            else:
                keep.append(change)
        self._pending = keep

    def _apply_append(self, change: _Append, length: int) -> None:
        inode = self._inodes.get(change.inode)
        if inode is None or length <= 0:
            return
        media = inode.media
        end = change.offset + length
        if len(media) < end:
            media.extend(bytes(end - len(media)))
        if change.lost:
            media[change.offset : end] = bytes(length)
            return
        media[change.offset : end] = change.data[:length]
        if self._chance(self.faults.bit_flip):
            self._count("bit_flip")
            bit = self.rng.randrange(length * 8)
            media[change.offset + bit // 8] ^= 1 << (bit % 8)

    def _apply_dir_change(self, change: _DirChange) -> None:
        names = self._durable_dirs.setdefault(change.directory, {})
        for name, number in change.changes:
            if number is None:
                names.pop(name, None)
            else:
                names[name] = number
