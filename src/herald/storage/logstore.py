"""WalLogStore: the node host's durable LogStore, over a FileSystem and one data directory.

A data directory holds::

    LOCK                       flock'ed while a store has it open (OsFileSystem)
    hardstate                  term, vote, commit; replaced atomically
    snap-<index>.snap          the newest snapshots (two by default), each atomic
    wal-<seq>.log              the write-ahead log segments, oldest first
    *.tmp                      leftovers of interrupted atomic writes, removed at load

Life of a write (the Ready contract of :mod:`herald.raft.rawnode`):

- :meth:`WalLogStore.write` encodes records into a memory buffer and stages a
  received snapshot in a temporary file. Nothing is durable, nothing is promised.
- :meth:`WalLogStore.sync` makes it all durable in an order that keeps every
  crash point recoverable: the hard state file (if term or vote changed), then
  the snapshot file, each fsynced, renamed and its directory fsynced; then the
  buffered records go to the log in one append and one fsync, however many
  writes they came from (group commit). Only then does :attr:`durable_index`
  advance: it is the one promise the store makes, and nothing else moves it.
- :meth:`WalLogStore.save_snapshot` writes a locally taken snapshot atomically,
  then deletes snapshots beyond the newest ``keep_snapshots`` and the segments
  every kept snapshot covers, so the log always reaches back to the oldest
  kept snapshot, which recovery can fall back to if the newest is damaged.

A failed fsync (or any IO error while syncing) poisons the store: the data may
be gone from the media though still readable, so every later call raises
:class:`~herald.errors.StorageIOError` and the process must restart and
recover from what is really on disk.
"""

from __future__ import annotations

import contextlib
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeAlias, final

from herald.errors import (
    CorruptHardStateError,
    CorruptionError,
    CorruptLogError,
    StorageError,
    StorageIOError,
    UsageError,
)
from herald.node.host import DurableState
from herald.raft.types import Entry, HardState, Snapshot, SnapshotMeta

from . import format as fmt
from .files import (
    CLEAN_FILE,
    HARD_STATE_FILE,
    StagedFile,
    checkpoint_index,
    checkpoint_name,
    read_snapshot,
    segment_name,
    snapshot_index,
    snapshot_name,
    stage,
    write_atomically,
)
from .fs import DirLock, FileSystem, join
from .logindex import LogIndex, Place
from .recovery import Recovered, RecoveryReport, recover
from .wal import SegmentWriter

__all__ = ["DEFAULT_CACHE_BYTES", "DEFAULT_SEGMENT_SIZE", "RECOVERING_FILE", "WalLogStore"]

DEFAULT_SEGMENT_SIZE = 64 << 20
#: Decoded records kept in memory for reads: the tail just written, and what
#: was read back last.
DEFAULT_CACHE_BYTES = 8 << 20
#: Reads of a record are tried this often before an IO error counts: EIO on a
#: read is often transient, and a failed read costs the node a restart.
_READ_ATTEMPTS = 3
#: Present while the node must not vote after its log was cut back; holds the
#: term it had then, in the hard-state format.
RECOVERING_FILE = "recovering"
# Tails whose last record was complete but failed its checksum, or read back as
# zeros: a torn write can look like this, but so can a bit flip or a lost write
# in a record that was synced and acknowledged. One copy of a log cannot tell
# them apart, so the node treats them as a possible loss of acknowledged
# entries. (A tail that ends inside a record was never synced: plain torn write.)
_SUSPICIOUS_TAILS = frozenset({"checksum", "zeros"})
_FLUSH_BYTES = 4 << 20  # buffered records beyond this go to the file before sync

_LENGTH = struct.Struct("<I")  # a record's length field, 4 bytes into it

#: What the index learns when buffered records reach the file, in the order they
#: were written: an ENTRIES record (its offset in the buffer and its entries), or
#: a reset of the log to a received snapshot (no entries; its index and term).
_IndexOp: TypeAlias = tuple[int, Sequence[Entry] | None, int, int]

#: How much of a checkpoint one :meth:`WalLogStore.write_checkpoint` writes and
#: fdatasyncs. A checkpoint is many megabytes (30 MiB of index at a million
#: retained messages). Written whole, the log's fsyncs queued behind it waited for
#: all of it; written a slice per log sync, after the log's records, a third of
#: the syncs at 1M carried a megabyte more to the disk (publish p99 +10 ms,
#: throughput -5%). In slices of its own, on a thread of its own, it leaves the
#: log's syncs alone, and a stop waits for one slice at most.
DEFAULT_CHECKPOINT_SLICE = 1 << 20


@final
class _CheckpointWrite:
    """A checkpoint being written to its temporary file, a slice at a time."""

    __slots__ = ("crc", "done", "meta", "offset", "part", "parts", "staged")

    def __init__(
        self, meta: SnapshotMeta, staged: StagedFile, parts: list[memoryview], crc: int
    ) -> None:
        self.meta = meta
        self.staged = staged
        self.parts = parts  # the state's buffers, as bytes views
        self.part = 0  # the next part to write, from ...
        self.offset = 0  # ... this byte of it
        self.crc = crc  # of everything written so far
        #: Written whole and published (renamed to its name, durably); the next
        #: sync keeps it (or removes it, if a received snapshot overtook it).
        self.done = False


@final
class WalLogStore:
    """A :class:`~herald.node.host.LogStore` backed by a segmented, checksummed WAL.

    Opening locks the directory (:class:`~herald.errors.LockedError` if another
    store holds it). Call :meth:`load` once, before anything else; it runs
    recovery. Written records wait in memory until :meth:`sync`, or until
    ``flush_bytes`` of them have piled up. With ``repair=True``, damage in the
    log (never in the hard state or a needed snapshot) is cut away instead of
    refused, and ``load`` reports it in :attr:`DurableState.repaired`.
    """

    def __init__(
        self,
        fs: FileSystem,
        directory: str,
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        keep_snapshots: int = 2,
        repair: bool = False,
        flush_bytes: int = _FLUSH_BYTES,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        checkpoint_slice: int = DEFAULT_CHECKPOINT_SLICE,
    ) -> None:
        if segment_size < 4096:
            raise UsageError(f"segment_size {segment_size} is below 4096 bytes")
        if keep_snapshots < 1:
            raise UsageError("keep_snapshots must be at least 1")
        self.fs = fs
        self.directory = directory
        self.segment_size = segment_size
        self.keep_snapshots = keep_snapshots
        self.repair = repair
        self.flush_bytes = flush_bytes
        self.cache_bytes = cache_bytes
        if checkpoint_slice < 1:
            raise UsageError("checkpoint_slice must be at least 1 byte")
        self.checkpoint_slice = checkpoint_slice
        self._checkpoint_write: _CheckpointWrite | None = None
        #: Held by :meth:`write_checkpoint` for each slice (it may run on a thread
        #: of its own); the sync that starts or keeps a checkpoint only tries it.
        self._checkpoint_lock = threading.Lock()
        fs.make_dirs(directory)
        self._lock: DirLock | None = fs.lock(directory)
        self._writer: SegmentWriter | None = None
        self._failed: StorageError | None = None
        self.report: RecoveryReport | None = None
        # What has been written (possibly not durable yet).
        self._hard_state = HardState()
        self._base_index = 0  # the newest snapshot's index, staged ones included
        self._last_index = 0
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._buffer_max_index = 0
        #: The commit index of the last commit record handed to the writer, and of
        #: the last one in the buffer (None: the buffer holds none).
        self._stream_commit = 0
        self._buffer_commit: int | None = None
        self._pending_hard_state: HardState | None = None
        self._staged_snapshot: StagedFile | None = None
        self._staged_index = 0
        self._published_snapshot = False  # since the last sync
        self._snapshot_indexes: list[int] = []  # snapshot files on disk, newest first
        self._checkpoint_indexes: list[int] = []  # checkpoint files on disk, newest first
        #: Written by the next sync: the checkpoint's meta and its state's buffers.
        self._pending_checkpoint: tuple[SnapshotMeta, Sequence[bytes | memoryview]] | None = None
        # What is durable.
        self._durable_index = 0
        self._durable_hard_state = HardState()
        # Where the entries in the file are. The fsync thread moves records into
        # the file while the loop thread reads (see the runtime), so the index and
        # the cache are only touched under the lock.
        self._lock_index = threading.Lock()
        self._index = LogIndex()
        self._index_ops: list[_IndexOp] = []  # for the records in the buffer
        #: Entries up to this index will not be read again: their segments may go
        #: once a kept snapshot covers them too.
        self._released = 0
        self._cache: OrderedDict[tuple[int, int], list[Entry]] = OrderedDict()
        self._cache_sizes: dict[tuple[int, int], int] = {}
        self._cached = 0
        self.reads = 0  # records read back from the files (cache misses)

    # -- the promise ----------------------------------------------------------------------

    @property
    def durable_index(self) -> int:
        """The last log index as of the last completed :meth:`sync`: every entry up
        to it is durable. Only ``sync`` (and ``load``) move it."""
        return self._durable_index

    @property
    def durable_hard_state(self) -> HardState:
        return self._durable_hard_state

    @property
    def last_index(self) -> int:
        """The last index written, durable or not."""
        return self._last_index

    # -- reading the log back ------------------------------------------------------------

    def term(self, index: int) -> int:
        """The term of entry ``index`` in the file (the base snapshot's at its index).

        Raises UsageError for an index the file does not hold.
        """
        with self._lock_index:
            try:
                return self._index.term(index)
            except IndexError as error:
                raise UsageError(str(error)) from None

    def entries(self, lo: int, hi: int, max_size: int) -> list[Entry]:
        """Entries ``[lo, hi)`` as in the file (synced or not), at least one, within
        ``max_size`` bytes beyond the first (as :func:`herald.raft.storage.limit_size`).

        What the cache does not hold is read back from the segments and checked
        against its CRC. Raises UsageError outside the log, CorruptLogError (and
        the store fails) for a damaged record, StorageIOError if a record cannot
        be read.
        """
        self._check_usable()
        result: list[Entry] = []
        size = 0
        while lo < hi:
            with self._lock_index:
                try:
                    place = self._index.place(lo)
                except IndexError as error:
                    raise UsageError(str(error)) from None
                key = (place.segment, place.offset)
                decoded = self._cache.get(key)
                if decoded is not None:
                    self._cache.move_to_end(key)
            if decoded is None:
                decoded = self._read_record(place)
                with self._lock_index:
                    self._remember(key, decoded, place.end - place.offset)
            stop = min(hi, place.hi + 1)
            for entry in decoded[lo - place.first : stop - place.first]:
                size += len(entry.data) + 16
                if result and size > max_size:
                    return result
                result.append(entry)
            lo = stop
        return result

    def release(self, through: int) -> None:
        """Entries up to ``through`` will not be read again (a snapshot covers them):
        the index forgets them, and their segments go once a kept snapshot covers
        them too."""
        with self._lock_index:
            if through <= self._released:
                return
            self._released = through
            self._index.compact(min(through, self._index.last))
        if self._writer is not None and self._snapshot_indexes and self._failed is None:
            self._guarded(self._remove_segments)

    def _remove_segments(self) -> None:
        """Remove the segments every kept snapshot covers and nobody will read again."""
        oldest_kept = self._snapshot_indexes[: self.keep_snapshots][-1]
        self._require_writer().remove_through(min(oldest_kept, self._released))

    def _read_record(self, place: Place) -> list[Entry]:
        path = join(self.directory, segment_name(place.segment))
        length = place.end - place.offset
        for attempt in range(_READ_ATTEMPTS):
            try:
                data = self.fs.read_range(path, place.offset, length)
                break
            except StorageIOError:
                if attempt + 1 == _READ_ATTEMPTS:
                    raise
        self.reads += 1
        reason = ""
        if len(data) != length:
            reason = f"the record's {length} bytes end the file after {len(data)}"
        else:
            stored, body_length = fmt.RECORD_HEADER.unpack_from(data, 0)
            if body_length != length - 8 or fmt.crc32(memoryview(data)[4:]) != stored:
                reason = "the record no longer matches its checksum"
        if not reason:
            try:
                entries = fmt.decode_entries(data, 8, length)
            except (ValueError, IndexError, struct.error) as error:
                reason = f"malformed entries record: {error}"
            else:
                if entries and entries[0].index == place.first:
                    return entries
                reason = f"the record does not start at entry {place.first}"
        damaged = CorruptLogError(path, place.offset, f"read back: {reason}")
        self._failed = damaged
        raise damaged

    # -- LogStore ---------------------------------------------------------------------------

    def load(self) -> DurableState:
        """Recover the directory and return what is durable.

        Raises CorruptLogError, CorruptHardStateError, CorruptSnapshotError,
        UnsupportedFormatError or StorageIOError (see :mod:`herald.storage.recovery`).
        """
        if self._lock is None:
            raise UsageError("the store is closed")
        if self._writer is not None:
            raise UsageError("load() runs recovery and may be called once per open store")
        try:
            return self._load()
        except BaseException:
            # Refused or failed: free the directory so the operator can look, or
            # reopen it with repair=True.
            self.close()
            raise

    def _load(self) -> DurableState:
        recovered = recover(self.fs, self.directory, repair=self.repair, apply_fixes=False)
        # The marker first, then the cut: a crash between the two must leave a
        # marker behind, never a shorter log that looks clean.
        recovering_term = self._recovering_term(recovered)
        recovered.apply_fixes()
        self.report = recovered.report
        commit = recovered.hard_state.commit
        if recovered.segments:
            last = recovered.segments[-1]
            writer = SegmentWriter(
                self.fs,
                self.directory,
                recovered.segments,
                self.fs.open_append(last.path),
                recovered.tail_size,
                self.segment_size,
                recovered.described,
            )
        else:
            preamble = fmt.encode_commit(commit) if commit else b""
            writer = SegmentWriter.create(
                self.fs, self.directory, recovered.next_seq, self.segment_size, preamble
            )
        writer.commit = self._stream_commit = commit
        self._writer = writer
        snapshot = recovered.snapshot
        if recovered.reset_to_snapshot and snapshot is not None:
            # Entries written from now on follow the snapshot, not the old log
            # that ends before it or disagrees with it: say so in the log.
            marker = fmt.encode_snapshot_marker(snapshot.index, snapshot.term)
            self._guarded(lambda: self._append_and_sync(marker, snapshot.index))
        self._index = recovered.index
        self._hard_state = self._durable_hard_state = recovered.hard_state
        self._base_index = snapshot.index if snapshot is not None else 0
        self._last_index = self._index.last
        self._released = self._index.base
        self._durable_index = self._last_index
        self._snapshot_indexes = recovered.snapshot_indexes
        self._checkpoint_indexes = recovered.checkpoint_indexes
        discarded = recovered.report.discarded
        return DurableState(
            hard_state=recovered.hard_state,
            snapshot=snapshot,
            last_index=self._last_index,
            checkpoint=recovered.checkpoint,
            repaired=discarded is not None,
            discarded_from_index=discarded.from_index if discarded is not None else None,
            recovering_term=recovering_term,
        )

    def _recovering_term(self, recovered: Recovered) -> int:
        """Read, and if recovery cut the log back, raise the durable recovering marker."""
        path = join(self.directory, RECOVERING_FILE)
        term = 0
        damaged_marker = False
        if self.fs.exists(path):
            try:
                term = fmt.decode_hard_state(self.fs.read(path), path).term
            except CorruptionError as error:
                if not self.repair:
                    raise CorruptHardStateError(error.path, error.offset, error.reason) from error
                # Terms only grow, so the current one is a safe stand-in for the
                # term the damaged marker held (it can only end recovery later).
                damaged_marker = True
        tail = recovered.report.tail
        cut_back = (
            damaged_marker
            or recovered.report.discarded is not None
            or (tail is not None and tail.kind in _SUSPICIOUS_TAILS)
        )
        if cut_back and (recovered.hard_state.term > term or damaged_marker):
            term = recovered.hard_state.term
            marker = fmt.encode_hard_state(HardState(term=term))
            write = partial(write_atomically, self.fs, self.directory, RECOVERING_FILE, marker)
            self._guarded(write)
        return term

    def mark_recovered(self) -> None:
        """Durably drop the recovering marker: the node may vote again."""
        self._check_usable()
        path = join(self.directory, RECOVERING_FILE)
        if self.fs.exists(path):

            def drop() -> None:
                self.fs.remove(path)
                self.fs.sync_dir(self.directory)

            self._guarded(drop)

    def write(
        self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None
    ) -> None:
        """Record a Ready's state; entries replace stored ones from the first index on.

        Nothing is durable until :meth:`sync` returns. Raises UsageError for
        entries that would leave a gap, StorageIOError if the store failed.
        """
        self._check_usable()
        if snapshot is not None and snapshot.index > self._base_index:
            self._stage_snapshot(snapshot)
        if entries:
            self._write_entries(entries)
        if hard_state is not None and hard_state != self._hard_state:
            previous = self._hard_state
            self._hard_state = hard_state
            if (
                hard_state.term != previous.term
                or hard_state.vote != previous.vote
                or self._pending_hard_state is not None
            ):
                self._pending_hard_state = hard_state
            if hard_state.commit != previous.commit:
                # Always in the stream, after the entries it covers: recovery
                # trusts only the stream's commit index (see recovery.py).
                self._add(fmt.encode_commit(hard_state.commit), 0)
                self._buffer_commit = hard_state.commit
        if self._buffered >= self.flush_bytes:
            self._guarded(self._flush)

    def sync(self) -> None:
        """Make everything written so far durable; then advance :attr:`durable_index`.

        Raises StorageIOError (and poisons the store) if any write or fsync fails.
        """
        self._check_usable()
        self._guarded(self._sync)

    @property
    def checkpoint_wants_sync(self) -> bool:
        """The next :meth:`sync` has checkpoint work: start writing the one saved,
        or keep the one written whole (a host asks for a sync while it is idle)."""
        write = self._checkpoint_write
        return (self._pending_checkpoint is not None) if write is None else write.done

    @property
    def checkpoint_wants_writes(self) -> bool:
        """:meth:`write_checkpoint` has slices to write."""
        write = self._checkpoint_write
        return write is not None and not write.done

    def write_checkpoint(self) -> None:
        """Write and fdatasync the next ``checkpoint_slice`` bytes of the checkpoint
        being written; after its last slice, publish it (fsync, rename, directory
        fsync): from then on a restart may start from it. The next sync keeps it.

        The one call that may run on a thread of its own, beside everything else
        the store does (the real runtime runs it beside the loop and the fsync
        thread, so a large checkpoint never holds up the log's syncs). It touches
        nothing but the checkpoint's own file and the buffers it was given, which
        stay unchanged until it is written. Never two at once. Raises
        StorageIOError (and poisons the store).
        """
        self._check_usable()
        with self._checkpoint_lock:
            write = self._checkpoint_write
            if write is not None and not write.done:
                self._guarded(partial(self._write_slice, write))

    def finish_checkpoint(self) -> None:
        """Write the checkpoint saved, or being written, to its end and keep it, now
        (a clean stop: the next start replays only the log after it)."""
        self._check_usable()
        while self.checkpoint_wants_sync or self.checkpoint_wants_writes:
            self.write_checkpoint()
            self._guarded(self._advance_checkpoint)

    def save_checkpoint(self, checkpoint: Snapshot) -> None:
        """:meth:`save_checkpoint_parts` of a snapshot's state."""
        self.save_checkpoint_parts(checkpoint.meta, (checkpoint.data,))

    def save_checkpoint_parts(
        self, meta: SnapshotMeta, state: Sequence[bytes | memoryview]
    ) -> None:
        """Keep a locally taken state (``ckpt-<index>.snap``), the concatenation of
        the buffers ``state``, to restart from. The buffers must stay as they are
        until it is written (the broker's index copies on write what they view).

        The next sync starts its file; :meth:`write_checkpoint` writes it,
        ``checkpoint_slice`` bytes (fdatasynced) a call, and publishes it; the
        sync after that keeps it. A large state thus costs the event loop nothing
        but taking it, and the log's syncs nothing. A newer checkpoint taken
        before its writing starts replaces it; one taken while it is written
        waits for it. The log before it stays: the state may still read those
        entries, and only :meth:`promote` makes it where the log starts.
        Checkpoints beyond the newest ``keep_snapshots`` go.
        """
        self._check_usable()
        if meta.index > self._newest_kept():
            self._pending_checkpoint = (meta, state)

    def _newest_kept(self) -> int:
        """The index of the newest snapshot or checkpoint on disk (0: none)."""
        return max(self._checkpoint_indexes[:1] + self._snapshot_indexes[:1], default=0)

    def promote(self, below: int) -> int:
        """The newest kept checkpoint below index ``below`` becomes the snapshot the
        log starts at (renamed to ``snap-<index>.snap``, durably); older snapshots and
        checkpoints beyond what is kept go, and so do the segments nothing kept
        reaches any more. Returns its index, or 0 if no kept checkpoint qualifies.
        Raises StorageIOError."""
        self._check_usable()
        chosen = next((index for index in self._checkpoint_indexes if index < below), 0)
        if chosen:
            self._guarded(partial(self._promote, chosen))
        return chosen

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Durably store a locally taken snapshot the log may start at: a checkpoint,
        written now and promoted at once. Does not make unrelated buffered writes
        durable. Raises StorageIOError."""
        self._check_usable()
        if snapshot.index <= self._newest_kept():
            return
        self._guarded(lambda: self._save_checkpoint(snapshot.meta, (snapshot.data,)))
        self.promote(snapshot.index + 1)

    def read_snapshot(self, index: int) -> Snapshot:
        """The snapshot or checkpoint at ``index``, read back and verified.

        Raises UsageError if none is kept there, CorruptSnapshotError, StorageIOError.
        """
        if index in self._snapshot_indexes:
            name = snapshot_name(index)
        elif index in self._checkpoint_indexes:
            name = checkpoint_name(index)
        else:
            raise UsageError(f"no snapshot is kept at index {index}")
        return read_snapshot(self.fs, self.directory, name)

    def close(self, *, clean: bool = False) -> None:
        """Release the directory. Unsynced writes are dropped, as in a crash (a
        checkpoint half written stays a temporary file, removed at load).

        With ``clean`` (a graceful shutdown, after a final :meth:`sync`), leave
        the marker that lets the next
        start replay every sealed segment from its description instead of
        reading it (:data:`~herald.storage.files.CLEAN_FILE`; the last segment is
        always read): a restart then costs the tail, not the log. That start
        removes the marker before it writes anything, so a crash after it reads
        everything again. The trade, as Kafka's: a sealed segment damaged while
        the node was stopped is found when it is read
        (which stops the node; its next start reads and refuses it), not at
        that start.
        """
        if clean:
            self._leave_clean_marker()
        if self._staged_snapshot is not None:
            self._staged_snapshot.handle.close()
            self._staged_snapshot = None
        with self._checkpoint_lock:  # a slice being written finishes first
            write = self._checkpoint_write
            if write is not None and not write.done:
                write.staged.handle.close()
            self._checkpoint_write = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _leave_clean_marker(self) -> None:
        writer = self._writer
        if writer is None or self._failed is not None:
            return
        # Only the sealed segments: each was made durable before its successor
        # existed, whatever is still unsynced in the last one (read at start).
        segments = writer.describe_sealed()
        if segments is None:
            return
        # Without a marker the next start reads the log, as after a crash.
        with contextlib.suppress(StorageError):
            write_atomically(self.fs, self.directory, CLEAN_FILE, fmt.encode_clean(segments))

    # -- internals ------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise StorageIOError(
                self.directory, "use", f"the store failed earlier ({self._failed}); restart"
            )
        if self._writer is None or self._lock is None:
            raise UsageError("load() the store before writing to it (and do not close it)")

    def _require_writer(self) -> SegmentWriter:
        if self._writer is None:
            raise UsageError("load() the store before writing to it (and do not close it)")
        return self._writer

    def _guarded(self, action: Callable[[], None]) -> None:
        try:
            action()
        except StorageError as error:
            self._failed = error
            raise

    def _add(self, record: bytes, max_index: int) -> None:
        self._buffer.append(record)
        self._buffered += len(record)
        self._buffer_max_index = max(self._buffer_max_index, max_index)

    def _write_entries(self, entries: Sequence[Entry]) -> None:
        first = entries[0].index
        last = entries[-1].index
        if last - first + 1 != len(entries):
            raise UsageError(f"entries {first}..{last} are not contiguous")
        if first <= self._base_index:
            # Already covered by a snapshot: only what lies beyond it matters.
            entries = entries[self._base_index + 1 - first :]
            if not entries:
                return
            first = entries[0].index
        if first > self._last_index + 1:
            raise UsageError(f"entries start at {first}, after a gap (last is {self._last_index})")
        self._index_ops.append((self._buffered, entries, 0, 0))
        self._add(fmt.encode_entries(entries), last)
        self._last_index = last

    def _stage_snapshot(self, snapshot: Snapshot) -> None:
        if self._staged_snapshot is not None:
            # A second snapshot before a sync: the first one goes to disk now
            # (early durability is allowed), so each marker names a real file.
            self._guarded(self._flush)
        name = snapshot_name(snapshot.index)
        self._staged_snapshot = stage(
            self.fs,
            self.directory,
            name,
            fmt.encode_snapshot_parts(snapshot.meta, (snapshot.data,)),
        )
        self._staged_index = snapshot.index
        self._index_ops.append((0, None, snapshot.index, snapshot.term))
        self._add(fmt.encode_snapshot_marker(snapshot.index, snapshot.term), snapshot.index)
        # Installing a snapshot from the leader replaces the whole log.
        self._base_index = snapshot.index
        self._last_index = snapshot.index

    def _flush(self) -> None:
        """Get buffered records into the log file (not durable yet).

        What they depend on goes first, durably: the hard state (the log never
        holds a term the hard state has not reached) and a received snapshot
        (the log never announces a snapshot that is not on disk).
        """
        writer = self._require_writer()
        if self._pending_hard_state is not None:
            hard_state = self._pending_hard_state
            write_atomically(
                self.fs, self.directory, HARD_STATE_FILE, fmt.encode_hard_state(hard_state)
            )
            self._pending_hard_state = None
        if self._staged_snapshot is not None:
            self._staged_snapshot.publish(self.fs, self.directory)
            self._staged_snapshot = None
            self._snapshot_indexes.insert(0, self._staged_index)
            self._published_snapshot = True
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            self._buffered = 0
            # A new segment starts with the commit index of the stream so far, never
            # one from the records about to follow it: a commit record must come
            # after the entries it covers (recovery trusts the stream's commit index,
            # and a repair that cut the stream right after a new segment's start
            # must not find a commit index covering entries the cut took away).
            writer.commit = self._stream_commit
            segment, start = writer.append(data, self._buffer_max_index)
            self._place(segment, start, data)
            if self._buffer_commit is not None:
                self._stream_commit = self._buffer_commit
                self._buffer_commit = None
            self._buffer_max_index = 0

    def _place(self, segment: int, start: int, data: bytes) -> None:
        """Tell the index where the records just appended (``data``, at ``start``) are."""
        ops, self._index_ops = self._index_ops, []
        with self._lock_index:
            index = self._index
            for at, entries, base, term in ops:
                if entries is None:
                    index.reset(base, term)
                    self._released = max(self._released, base)
                    continue
                offset = start + at
                (length,) = _LENGTH.unpack_from(data, at + 4)
                end = offset + 8 + length
                first = entries[0].index
                index.add(segment, offset, end, first, [e.term for e in entries], len(entries))
                self._remember((segment, offset), list(entries), end - offset)

    def _remember(self, key: tuple[int, int], entries: list[Entry], size: int) -> None:
        """Keep a decoded record in the cache (under the lock), evicting the oldest."""
        if size > self.cache_bytes:
            return
        cache = self._cache
        cache[key] = entries
        self._cache_sizes[key] = size
        self._cached += size
        while self._cached > self.cache_bytes:
            old, _entries = cache.popitem(last=False)
            self._cached -= self._cache_sizes.pop(old)

    def _append_and_sync(self, record: bytes, max_index: int) -> None:
        writer = self._require_writer()
        writer.append(record, max_index)
        writer.sync()

    def _sync(self) -> None:
        writer = self._require_writer()
        self._flush()
        writer.sync()
        self._durable_index = self._last_index
        self._durable_hard_state = self._hard_state
        if self._published_snapshot:
            # The log now durably starts at the received snapshot.
            self._published_snapshot = False
            self._compact()
        self._advance_checkpoint()

    def _advance_checkpoint(self) -> None:
        """The sync's part of a checkpoint: start writing the one saved (its
        temporary file and head), or keep the one written whole. Skipped while a
        slice is being written (the next sync does it)."""
        if not self._checkpoint_lock.acquire(blocking=False):
            return
        try:
            write = self._checkpoint_write
            if write is None:
                pending, self._pending_checkpoint = self._pending_checkpoint, None
                if pending is None or pending[0].index <= self._base_index:
                    return
                meta, state = pending
                parts = [memoryview(part).cast("B") for part in state]
                head = fmt.snapshot_head(meta, sum(part.nbytes for part in parts))
                staged = stage(self.fs, self.directory, checkpoint_name(meta.index), head)
                self._checkpoint_write = _CheckpointWrite(meta, staged, parts, fmt.crc32(head))
            elif write.done:
                self._checkpoint_write = None
                index = write.meta.index
                if index <= self._base_index:
                    # A received snapshot overtook it while it was written: not
                    # needed (a restart would not read it either).
                    self.fs.remove(join(self.directory, checkpoint_name(index)))
                    return
                self._checkpoint_indexes.insert(0, index)
                self._compact()
        finally:
            self._checkpoint_lock.release()

    def _write_slice(self, write: _CheckpointWrite) -> None:
        """The next slice of ``write``, fdatasynced; after the last, its trailer and
        its publication (the file's fsync, the rename, the directory's fsync). A
        crash half-way leaves only a temporary file, removed at load."""
        handle = write.staged.handle
        budget = self.checkpoint_slice
        parts = write.parts
        while budget > 0 and write.part < len(parts):
            part = parts[write.part]
            piece = part[write.offset : write.offset + budget]
            handle.append(piece)
            write.crc = fmt.crc32(piece, write.crc)
            budget -= len(piece)
            write.offset += len(piece)
            if write.offset == len(part):
                write.part += 1
                write.offset = 0
        if write.part < len(parts):
            handle.sync()  # spread the flush over the slices, not all at the end
            return
        handle.append(fmt.snapshot_trailer(write.crc))
        write.staged.publish(self.fs, self.directory)
        write.done = True

    def _save_checkpoint(self, meta: SnapshotMeta, state: Sequence[bytes | memoryview]) -> None:
        name = checkpoint_name(meta.index)
        write_atomically(self.fs, self.directory, name, fmt.encode_snapshot_parts(meta, state))
        self._checkpoint_indexes.insert(0, meta.index)
        self._compact()

    def _promote(self, index: int) -> None:
        self.fs.rename(
            join(self.directory, checkpoint_name(index)), join(self.directory, snapshot_name(index))
        )
        self.fs.sync_dir(self.directory)
        self._checkpoint_indexes.remove(index)
        self._snapshot_indexes.insert(0, index)
        self._snapshot_indexes.sort(reverse=True)
        self._base_index = max(self._base_index, index)
        self._compact()

    def _compact(self) -> None:
        """Delete snapshots beyond the newest ``keep_snapshots``, checkpoints beyond
        the newest ``keep_snapshots`` and those the newest snapshot covers, and the
        segments the oldest kept snapshot covers (once released). Only called once
        what is kept is durable."""
        writer = self._require_writer()
        kept = self._snapshot_indexes[: self.keep_snapshots]
        base = kept[0] if kept else 0
        checkpoints = [index for index in self._checkpoint_indexes if index > base]
        checkpoints = checkpoints[: self.keep_snapshots]
        keep_names = {snapshot_name(index) for index in kept}
        keep_names.update(checkpoint_name(index) for index in checkpoints)
        if self._checkpoint_write is not None:
            # Being written, or published and not kept yet: the sync after its
            # last slice decides.
            keep_names.add(checkpoint_name(self._checkpoint_write.meta.index))
        removed = False
        for name in self.fs.list_dir(self.directory):
            if name in keep_names:
                continue
            if snapshot_index(name) is not None or checkpoint_index(name) is not None:
                self.fs.remove(join(self.directory, name))
                removed = True
        if removed:
            self.fs.sync_dir(self.directory)
        self._snapshot_indexes = kept
        self._checkpoint_indexes = checkpoints
        if kept:
            writer.remove_through(min(kept[-1], self._released))
