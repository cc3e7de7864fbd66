"""Recovery: verify a data directory and rebuild the durable state, or refuse to.

The rules (the module contract of :mod:`herald.storage.simfs` says why):

- The last segment may end in a *torn tail*: a record the file ends inside of,
  zeros, or a record failing its checksum, with no valid record after it. That
  is the write a crash cut short; it was never acknowledged durable, and it is
  truncated away.
- Any other damage is *corruption*: a bad record followed by valid data, a bad
  record in a segment that is not the last, a gap in the entries, a record of
  unknown type, a snapshot the log depends on that is missing, a damaged or
  missing hard state. Recovery refuses with a typed error naming the file and
  offset. For damage in the log, and only there, the operator may pass
  ``repair=True``: the log is cut at the damage, the cut is reported, and the
  node must not vote until a leader has repaired it.
- A damaged snapshot is skipped for an older valid one, if one is kept (the
  log still reaches back to it, see :class:`~herald.storage.logstore.WalLogStore`);
  otherwise recovery refuses. Falling back loses nothing: the older snapshot
  plus the log give the same committed state.
- A file in a format version this code does not know is always refused.
"""

from __future__ import annotations

import gc
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

from herald.errors import (
    CorruptHardStateError,
    CorruptionError,
    CorruptLogError,
    CorruptSnapshotError,
    StorageIOError,
    UnsupportedFormatError,
)
from herald.raft.types import HardState, Snapshot

from . import format as fmt
from .files import (
    CLEAN_FILE,
    HARD_STATE_FILE,
    TEMP_SUFFIX,
    checkpoint_index,
    checkpoint_name,
    read_hard_state,
    read_snapshot,
    segment_seq,
    snapshot_index,
    snapshot_name,
)
from .fs import FileSystem, join
from .logindex import LogIndex
from .wal import (
    SegmentInfo,
    describe_records,
    find_valid_record,
    scan_records,
    squeeze_commits,
)

__all__ = ["Discard", "Recovered", "RecoveryReport", "TailTruncation", "recover"]


@dataclass(frozen=True, slots=True)
class TailTruncation:
    """A torn tail recovery cut off: ``dropped`` bytes from ``offset`` of ``path``.

    ``kind`` says what the damage looked like: ``incomplete`` (the file ended
    inside a record), ``zeros``, ``checksum`` (a whole record failing its
    checksum: a torn write, or a bit flip in the last record, which no single
    copy of a log can tell apart) or ``header`` (a segment whose creation was
    cut short, removed).
    """

    path: str
    offset: int
    dropped: int
    kind: str


@dataclass(frozen=True, slots=True)
class Discard:
    """What ``repair=True`` threw away: the log from ``path`` at ``offset`` on."""

    path: str
    offset: int
    reason: str
    from_index: int  # the first log index that may have been lost
    removed_segments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What recovery found and did, for operators, metrics and the simulator."""

    segments: int = 0
    records: int = 0
    bytes_scanned: int = 0
    entries: int = 0
    tail: TailTruncation | None = None
    discarded: Discard | None = None
    corrupt_snapshots: tuple[str, ...] = ()  # skipped for an older snapshot
    removed_temp_files: tuple[str, ...] = ()
    commit_clamped_from: int | None = None


@dataclass(slots=True)
class Recovered:
    """The result of recovery: what ``load`` returns, plus what the writer needs."""

    hard_state: HardState
    snapshot: Snapshot | None
    index: LogIndex  # where the entries after the snapshot are
    report: RecoveryReport
    segments: list[SegmentInfo]  # what is left on disk, in order
    tail_size: int  # valid bytes in the last segment
    next_seq: int  # for a new segment, when none is left
    snapshot_indexes: list[int] = field(default_factory=list)  # on disk, newest first
    #: (size, description) of each segment, for the writer to go on describing
    #: (None: recovery cut or discarded something; no clean marker is written).
    described: dict[int, tuple[int, array[int]]] | None = None
    #: The newest valid checkpoint after the snapshot, within the log: the state to
    #: restore (the snapshot is where the log starts).
    checkpoint: Snapshot | None = None
    checkpoint_indexes: list[int] = field(default_factory=list)  # on disk, newest first
    has_hard_state: bool = False
    reset_to_snapshot: bool = False  # the log must record that it now starts at the snapshot
    #: The changes recovery decided on (temporary files removed, a torn tail cut,
    #: a damaged part discarded), not yet made: see :func:`recover`.
    fixes: list[Callable[[], None]] = field(default_factory=list)

    def apply_fixes(self) -> None:
        fixes, self.fixes = self.fixes, []
        for fix in fixes:
            fix()


class _Damage(Exception):  # noqa: N818 - internal control flow, never escapes
    def __init__(self, offset: int, reason: str, snapshot_missing: int = 0) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason
        self.snapshot_missing = snapshot_missing


class _Replay:
    """The log as the records describe it, indexed (not decoded) above the snapshot."""

    def __init__(self, base: int, base_term: int) -> None:
        self.base = base
        self.base_term = base_term
        self.index = LogIndex(base, base_term)  # base+1 .. last, when last > base
        self.last = base  # the last index of the log; may drop below base
        self.term_at_base: int | None = None  # as the log last said, if it covered base
        self.commit = 0
        self.records = 0
        self.seen_entries = False  # any ENTRIES record applied yet

    def apply(self, seq: int, flat: array[int]) -> int:
        """Apply segment ``seq``'s records, as :func:`~herald.storage.wal.describe_records`
        describes them, in order; returns the highest index they name.

        Raises _Damage at the first record that cannot follow what came before.
        """
        base = self.base
        index = self.index
        append_one = index.append_one
        highest = 0
        position = 0
        size = len(flat)
        while position < size:
            record_type = flat[position]
            offset = flat[position + 1]
            end = flat[position + 2]
            if record_type == fmt.ENTRIES:
                first = flat[position + 3]
                count = flat[position + 4]
                terms = flat[position + 5 : position + 5 + count]
                position += 5 + count
                if count == 1 and first == self.last + 1 and first > base:
                    # The common case, one entry appended, indexed inline.
                    append_one(seq, offset, end, first, terms[0])
                    self.last = highest = first
                    self.records += 1
                    self.seen_entries = True
                    continue
                highest = max(highest, self._apply_entries(seq, offset, end, first, count, terms))
            elif record_type == fmt.COMMIT:
                self.commit = flat[position + 3]
                position += 4
            elif record_type == fmt.SNAPSHOT:
                at, term = flat[position + 3], flat[position + 4]
                position += 5
                if at > base:
                    raise _Damage(offset, f"the log was reset to snapshot {at}, which is gone", at)
                if at == base and term != self.base_term:
                    raise _Damage(offset, f"snapshot {at} has term {self.base_term}, not {term}")
                index.reset(base, self.base_term)
                self.term_at_base = term if at == base else None
                self.last = at
                highest = max(highest, at)
            else:
                raise _Damage(offset, f"unknown record type {record_type}")
            self.records += 1
        return highest

    def _apply_entries(
        self, seq: int, offset: int, end: int, first: int, count: int, terms: array[int]
    ) -> int:
        base = self.base
        last = first + count - 1
        if first == 0:
            raise _Damage(offset, "empty entries record")
        if first > self.last + 1:
            if not self.seen_entries:
                raise _Damage(
                    offset,
                    f"the log starts at index {first}, but no snapshot or segment holds the "
                    f"entries from {self.last + 1} on: some are missing",
                )
            raise _Damage(
                offset, f"entries jump from index {self.last} to {first}: some are missing"
            )
        if first <= base and base:
            # Truncates everything above the snapshot: only the part of this
            # record above it (if any) stays indexed.
            self.term_at_base = terms[base - first] if last >= base else None
        self.index.add(seq, offset, end, first, terms, count)
        self.last = last
        self.seen_entries = True
        return last

    def finish(self) -> bool:
        """Settle the log against the snapshot; True if the log had to be reset to it.

        A snapshot made durable while the record announcing it was not (a
        crash in between) may lie beyond the log's end or not match it: then
        the log after it is from another history and only the snapshot stands,
        as when a follower installs a snapshot its log does not contain. The
        caller records the reset in the log, so later records follow it.
        """
        mismatch = self.term_at_base is not None and self.term_at_base != self.base_term
        if self.base and (mismatch or self.last < self.base):
            self.index.reset(self.base, self.base_term)
            self.last = self.base
            return True
        return False


def _remove_files(fs: FileSystem, directory: str, paths: Sequence[str]) -> None:
    removed = False
    for path in paths:
        # A leftover temporary file may have been reused and renamed since the
        # scan listed it (the recovering marker is written that way).
        if fs.exists(path):
            fs.remove(path)
            removed = True
    if removed:
        fs.sync_dir(directory)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    # Recovery builds up to millions of Entry objects that hold no reference
    # cycles; every few hundred allocations the cyclic collector would scan
    # the survivors again, which measured at half of the whole recovery time.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def recover(fs: FileSystem, directory: str, *, repair: bool, apply_fixes: bool = True) -> Recovered:
    """Read, verify and (where the rules allow) fix the data directory.

    With ``apply_fixes=False`` the fixes are returned in ``Recovered.fixes``
    instead of made, so the caller can first record durably that the log is
    about to be cut back (a crash in between must not hide the cut).

    Raises CorruptLogError, CorruptHardStateError, CorruptSnapshotError,
    UnsupportedFormatError or StorageIOError.
    """
    recovered = _recover_without_fixing(fs, directory, repair=repair)
    if apply_fixes:
        recovered.apply_fixes()
    return recovered


def _recover_without_fixing(fs: FileSystem, directory: str, *, repair: bool) -> Recovered:
    with _cyclic_gc_paused():
        try:
            return _recover(fs, directory, repair=repair, trust_clean=True)
        except _Distrust:
            return _recover(fs, directory, repair=repair, trust_clean=False)


class _Distrust(Exception):  # noqa: N818 - internal control flow, never escapes
    """The clean-shutdown marker does not fit the log: recover by reading it all."""


def _read_clean(fs: FileSystem, directory: str) -> dict[int, tuple[int, array[int]]]:
    """The segment descriptions a clean shutdown left ({} if damaged or unknown)."""
    path = join(directory, CLEAN_FILE)
    try:
        return fmt.decode_clean(fs.read(path), path)
    except (CorruptionError, UnsupportedFormatError, StorageIOError):
        return {}


def _recover(fs: FileSystem, directory: str, *, repair: bool, trust_clean: bool) -> Recovered:
    names = fs.list_dir(directory)
    # Recovery only reads until it has decided to accept the directory: the
    # fixes it wants (removing temporary files, cutting a torn tail, and with
    # repair=True the damaged part) are collected here and made at the end, so
    # a refused start leaves the disk exactly as it found it.
    fixes: list[Callable[[], None]] = []
    removed_temp = tuple(join(directory, name) for name in names if name.endswith(TEMP_SUFFIX))
    fixes.append(lambda: _remove_files(fs, directory, removed_temp))

    has_hard_state = HARD_STATE_FILE in names
    hard_state = read_hard_state(fs, directory) if has_hard_state else HardState()

    snapshot_indexes = sorted(
        (index for name in names if (index := snapshot_index(name)) is not None), reverse=True
    )
    snapshot: Snapshot | None = None
    corrupt_snapshots: list[CorruptSnapshotError] = []
    kept_indexes: list[int] = []
    for index in snapshot_indexes:
        if snapshot is None:
            try:
                snapshot = read_snapshot(fs, directory, snapshot_name(index))
            except CorruptSnapshotError as error:
                corrupt_snapshots.append(error)
                continue
        kept_indexes.append(index)
    base = snapshot.index if snapshot is not None else 0
    base_term = snapshot.term if snapshot is not None else 0

    segment_names = sorted((seq, name) for name in names if (seq := segment_seq(name)) is not None)
    # A clean shutdown left the description of every segment: a segment whose
    # size still matches is replayed from it, unread. The marker goes before
    # anything is written again, so a crash from here on scans everything.
    clean = _read_clean(fs, directory) if trust_clean and CLEAN_FILE in names else {}
    if CLEAN_FILE in names:
        fixes.append(partial(_remove_files, fs, directory, (join(directory, CLEAN_FILE),)))
    #: What the writer goes on describing: (size, description) per segment kept.
    described: dict[int, tuple[int, array[int]]] | None = {}
    replay = _Replay(base, base_term)
    segments: list[SegmentInfo] = []
    tail: TailTruncation | None = None
    discarded: Discard | None = None
    tail_size = 0
    bytes_scanned = 0
    last_position = len(segment_names) - 1
    for position, (seq, name) in enumerate(segment_names):
        path = join(directory, name)
        is_last = position == last_position
        # The last segment is always read: it is what a crash may have torn, and
        # the part of the log that grows; the sealed ones before it are not.
        known = None if is_last else clean.get(seq)
        if known is not None and fs.size(path) == known[0]:
            try:
                highest = replay.apply(seq, known[1])
            except _Damage as found:
                # The description does not fit the log: trust none of it.
                raise _Distrust from found
            segments.append(SegmentInfo(seq, path, highest))
            tail_size = known[0]
            if described is not None:
                described[seq] = known
            continue
        data = fs.read(path)
        bytes_scanned += len(data)
        damage: _Damage | None = None
        valid_end = 0
        try:
            try:
                header_seq = fmt.read_segment_header(data, path)
            except CorruptionError as error:
                if is_last and find_valid_record(data, fmt.SEGMENT_HEADER_SIZE - 8) is None:
                    # A segment whose creation a crash cut short: nothing in it
                    # was ever synced (the first sync covers its header).
                    fixes.append(partial(_remove_files, fs, directory, (path,)))
                    tail = TailTruncation(path, 0, len(data), "header")
                    break
                raise _Damage(error.offset, error.reason) from error
            if header_seq != seq:
                raise _Damage(0, f"header says segment {header_seq}")
            scan = scan_records(data, fmt.SEGMENT_HEADER_SIZE)
            valid_end = scan.end
            flat, bad, reason = describe_records(data, scan.records)
            highest = replay.apply(seq, flat)
            if bad >= 0:
                raise _Damage(bad, reason)
            if described is not None:
                described[seq] = (valid_end, squeeze_commits(flat)[0])
            if scan.damage is not None:
                if not is_last or find_valid_record(data, scan.end) is not None:
                    where = "followed by valid records" if is_last else "in a sealed segment"
                    raise _Damage(scan.end, f"{scan.damage}, {where}")
                fixes.append(partial(fs.truncate, path, scan.end))
                tail = TailTruncation(path, scan.end, len(data) - scan.end, scan.kind)
        except _Damage as found:
            damage = found
        if damage is not None:
            described = None  # the writer describes nothing: no marker at shutdown
            if damage.snapshot_missing and not repair:
                missing = join(directory, snapshot_name(damage.snapshot_missing))
                raise CorruptSnapshotError(missing, 0, f"{damage.reason} (log {path})")
            if corrupt_snapshots and not replay.seen_entries:
                _refuse_snapshot(corrupt_snapshots[0])
            if not repair:
                raise CorruptLogError(path, damage.offset, damage.reason)
            discarded = _discard(directory, segment_names[position:], damage, replay.last + 1)
            fixes.append(partial(_make_discard, fs, directory, discarded))
            if damage.offset >= fmt.SEGMENT_HEADER_SIZE:
                # Generous: the records before the damage name no index above
                # the log's last one except entries it has since overwritten.
                segments.append(SegmentInfo(seq, path, max(replay.last, base)))
                tail_size = damage.offset
            break
        segments.append(SegmentInfo(seq, path, highest))
        tail_size = valid_end
    reset_to_snapshot = replay.finish()
    checkpoint, checkpoint_indexes, corrupt_checkpoints = _pick_checkpoint(
        fs, directory, names, base, replay.last, fixes
    )
    if corrupt_snapshots and replay.last < snapshot_index_of(corrupt_snapshots[0]):
        # The damaged snapshot covered committed entries that neither an older
        # snapshot nor the log still hold: starting would forget them.
        _refuse_snapshot(corrupt_snapshots[0])

    log_index = replay.index
    last_index = replay.last
    _check_hard_state(directory, hard_state, has_hard_state, log_index.last_term(), last_index)
    # The commit index comes from the log stream alone, never from the hard
    # state file: the file is made durable before the records of the same sync,
    # so after a crash between them (or after repair cut the stream short) it
    # can name a commit index that covers entries the lost records had replaced,
    # and applying the older entries left in their place would be wrong. Every
    # commit record in the stream follows the entries it covers, so any prefix
    # of the stream is a state the node really was in. A snapshot only ever
    # holds committed entries. Raft relearns anything newer from the leader.
    commit = max(replay.commit, snapshot.index if snapshot is not None else 0)
    clamped: int | None = None
    if commit > last_index:
        clamped, commit = commit, last_index
    elif hard_state.commit > commit:
        clamped = hard_state.commit
    if commit != hard_state.commit:
        hard_state = HardState(term=hard_state.term, vote=hard_state.vote, commit=commit)

    report = RecoveryReport(
        segments=len(segment_names),
        records=replay.records,
        bytes_scanned=bytes_scanned,
        entries=len(log_index),
        tail=tail,
        discarded=discarded,
        corrupt_snapshots=tuple(error.path for error in corrupt_snapshots + corrupt_checkpoints),
        removed_temp_files=removed_temp,
        commit_clamped_from=clamped,
    )
    next_seq = segment_names[-1][0] + 1 if segment_names else 1
    return Recovered(
        hard_state=hard_state,
        snapshot=snapshot,
        index=log_index,
        report=report,
        segments=segments,
        tail_size=tail_size,
        next_seq=next_seq,
        snapshot_indexes=kept_indexes,
        checkpoint=checkpoint,
        checkpoint_indexes=checkpoint_indexes,
        has_hard_state=has_hard_state,
        reset_to_snapshot=reset_to_snapshot,
        fixes=fixes,
        described=described,
    )


def _pick_checkpoint(
    fs: FileSystem,
    directory: str,
    names: list[str],
    base: int,
    last: int,
    fixes: list[Callable[[], None]],
) -> tuple[Snapshot | None, list[int], list[CorruptSnapshotError]]:
    """The newest valid checkpoint the log backs (after the snapshot, at or below the
    log's end), the checkpoints that may be kept, and the damaged ones skipped.

    A checkpoint at or below the snapshot is obsolete and goes. One beyond the log's
    end (the log was cut back by a repair) cannot be restored: the state would be
    ahead of the log. Neither it nor a damaged one is kept (an older one, or the
    snapshot and the log, give the same committed state), nor one older than the
    newest whole one (it is not read); the store deletes what is not kept when it
    next writes a checkpoint.
    """
    indexes = sorted(
        (index for name in names if (index := checkpoint_index(name)) is not None), reverse=True
    )
    obsolete = tuple(join(directory, checkpoint_name(index)) for index in indexes if index <= base)
    if obsolete:
        fixes.append(partial(_remove_files, fs, directory, obsolete))
    # Only checkpoints known to be whole are kept (a later promotion makes one
    # where the log starts, and the log before it goes): after the snapshot,
    # within the log, and read back and checked. Only the newest whole one is
    # read: the restore needs no other, and reading an older one too doubled
    # what a restart reads (320 MB more at ten million messages). An older one
    # is not kept, so never promoted; the next checkpoint stands in for it.
    kept: list[int] = []
    newest: Snapshot | None = None
    corrupt: list[CorruptSnapshotError] = []
    for index in indexes:
        if index <= base or index > last:
            continue
        try:
            newest = read_snapshot(fs, directory, checkpoint_name(index))
        except CorruptSnapshotError as error:
            corrupt.append(error)
            continue
        kept.append(index)
        break
    return newest, kept, corrupt


def _refuse_snapshot(newest: CorruptSnapshotError) -> None:
    raise CorruptSnapshotError(
        newest.path,
        newest.offset,
        f"{newest.reason}; no older snapshot that the log reaches back to stands in for it",
    )


def snapshot_index_of(error: CorruptSnapshotError) -> int:
    return snapshot_index(error.path.rsplit("/", 1)[-1]) or 0


def _discard(
    directory: str,
    segment_names: list[tuple[int, str]],
    damage: _Damage,
    from_index: int,
) -> Discard:
    """What repairing means here: cut the damaged segment at the damage (remove
    it if its header is hit) and remove every later segment."""
    (_seq, name), *later = segment_names
    path = join(directory, name)
    removed = [path] if damage.offset < fmt.SEGMENT_HEADER_SIZE else []
    removed.extend(join(directory, later_name) for _later_seq, later_name in later)
    return Discard(path, damage.offset, damage.reason, from_index, tuple(removed))


def _make_discard(fs: FileSystem, directory: str, discard: Discard) -> None:
    if discard.offset >= fmt.SEGMENT_HEADER_SIZE:
        fs.truncate(discard.path, discard.offset)
    _remove_files(fs, directory, discard.removed_segments)


def _check_hard_state(
    directory: str,
    hard_state: HardState,
    present: bool,
    log_term: int,
    last_index: int,
) -> None:
    path = join(directory, HARD_STATE_FILE)
    if not present:
        if last_index > 0:
            raise CorruptHardStateError(path, 0, "missing, but the log is not empty")
        return
    # The hard state is made durable before any entry or snapshot written with
    # it, and a node's term never falls below a term in its log: a hard state
    # older than the log was rolled back (a lost rename, a restored backup).
    if hard_state.term < log_term:
        raise CorruptHardStateError(
            path, 0, f"term {hard_state.term} is older than the log's last term {log_term}"
        )
