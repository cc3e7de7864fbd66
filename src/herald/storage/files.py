"""The whole-file artefacts of a data directory: names, atomic replacement, snapshots, hard state.

A snapshot or the hard state is never updated in place: it is written to a
temporary file, fsynced, renamed over its final name and the directory is
fsynced. A crash at any point leaves the old file or the new one, never a mix,
so any damage found in these files is corruption, never a torn write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from herald.errors import (
    CorruptHardStateError,
    CorruptionError,
    CorruptSnapshotError,
)
from herald.raft.types import HardState, Snapshot

from . import format as fmt
from .fs import FileHandle, FileSystem, join

__all__ = [
    "CLEAN_FILE",
    "HARD_STATE_FILE",
    "StagedFile",
    "checkpoint_index",
    "checkpoint_name",
    "read_hard_state",
    "read_snapshot",
    "segment_name",
    "segment_seq",
    "snapshot_index",
    "snapshot_name",
    "write_atomically",
]

HARD_STATE_FILE = "hardstate"
#: Left by a clean shutdown: the description of every segment, so the next start
#: need not read them (removed by that start before it writes anything).
CLEAN_FILE = "clean"
TEMP_SUFFIX = ".tmp"
CORRUPT_SUFFIX = ".corrupt"
_SEGMENT_PREFIX, _SEGMENT_SUFFIX = "wal-", ".log"
_SNAPSHOT_PREFIX, _SNAPSHOT_SUFFIX = "snap-", ".snap"
_CHECKPOINT_PREFIX = "ckpt-"


def segment_name(seq: int) -> str:
    return f"{_SEGMENT_PREFIX}{seq:010d}{_SEGMENT_SUFFIX}"


def _number(name: str, prefix: str, suffix: str) -> int | None:
    if not (name.startswith(prefix) and name.endswith(suffix)):
        return None
    digits = name[len(prefix) : len(name) - len(suffix)]
    return int(digits) if digits.isdigit() else None


def segment_seq(name: str) -> int | None:
    """The sequence number of a segment file name; None for any other name."""
    return _number(name, _SEGMENT_PREFIX, _SEGMENT_SUFFIX)


def snapshot_name(index: int) -> str:
    return f"{_SNAPSHOT_PREFIX}{index:020d}{_SNAPSHOT_SUFFIX}"


def snapshot_index(name: str) -> int | None:
    """The index of a snapshot file name; None for any other name."""
    return _number(name, _SNAPSHOT_PREFIX, _SNAPSHOT_SUFFIX)


def checkpoint_name(index: int) -> str:
    return f"{_CHECKPOINT_PREFIX}{index:020d}{_SNAPSHOT_SUFFIX}"


def checkpoint_index(name: str) -> int | None:
    """The index of a checkpoint file name; None for any other name."""
    return _number(name, _CHECKPOINT_PREFIX, _SNAPSHOT_SUFFIX)


@dataclass(slots=True)
class StagedFile:
    """A temporary file written but not yet synced nor renamed into place."""

    handle: FileHandle
    temp_path: str
    final_path: str

    def publish(self, fs: FileSystem, directory: str) -> None:
        """fsync, rename over the final name, fsync the directory: durable on return."""
        self.handle.sync()
        self.handle.close()
        fs.rename(self.temp_path, self.final_path)
        fs.sync_dir(directory)


def stage(
    fs: FileSystem, directory: str, name: str, data: bytes | Sequence[bytes | memoryview]
) -> StagedFile:
    """Write ``data`` (or its parts, one after the other) to a temporary file for
    ``name``; nothing is durable yet."""
    temp_path = join(directory, name + TEMP_SUFFIX)
    handle = fs.create(temp_path)
    for part in (data,) if isinstance(data, bytes) else data:
        handle.append(part)
    return StagedFile(handle, temp_path, join(directory, name))


def write_atomically(
    fs: FileSystem, directory: str, name: str, data: bytes | Sequence[bytes | memoryview]
) -> None:
    """Replace ``directory/name`` by ``data`` (or its parts) atomically and durably."""
    stage(fs, directory, name, data).publish(fs, directory)


def read_hard_state(fs: FileSystem, directory: str) -> HardState:
    """Read and verify the hard state file. Raises CorruptHardStateError,
    UnsupportedFormatError or StorageIOError."""
    path = join(directory, HARD_STATE_FILE)
    try:
        return fmt.decode_hard_state(fs.read(path), path)
    except CorruptionError as error:
        raise CorruptHardStateError(error.path, error.offset, error.reason) from error


#: A snapshot file larger than this is read in three pieces, its data on its own.
_READ_WHOLE = 1 << 20


def _read_large_snapshot(fs: FileSystem, path: str, size: int) -> Snapshot:
    """decode_snapshot(fs.read(path)), without the copy of the data out of the
    file's bytes: the head, the data and the checksum are read apart, and the
    checksum is computed over the first two in turn. At ten million messages
    the data is 320 MB, and a restart copied it once more."""
    head = fs.read_range(path, 0, fmt.SNAPSHOT_HEAD_MAX)
    meta, position = fmt.snapshot_layout(head, size, path)
    data = fs.read_range(path, position, size - 4 - position)
    trailer = fs.read_range(path, size - 4, 4)
    if len(data) != size - 4 - position or len(trailer) != 4:
        raise CorruptionError(path, position, "snapshot shorter than its size")
    crc = fmt.crc32(data, fmt.crc32(head[:position]))
    if crc != int.from_bytes(trailer, "little"):
        raise CorruptionError(path, 0, "snapshot checksum mismatch")
    return Snapshot(meta, data)


def read_snapshot(fs: FileSystem, directory: str, name: str) -> Snapshot:
    """Read and verify one snapshot file. Raises CorruptSnapshotError,
    UnsupportedFormatError or StorageIOError."""
    path = join(directory, name)
    try:
        size = fs.size(path)
        if size <= _READ_WHOLE:
            snapshot = fmt.decode_snapshot(fs.read(path), path)
        else:
            snapshot = _read_large_snapshot(fs, path, size)
    except CorruptionError as error:
        raise CorruptSnapshotError(error.path, error.offset, error.reason) from error
    if snapshot.index not in (snapshot_index(name), checkpoint_index(name)):
        raise CorruptSnapshotError(path, 0, f"holds index {snapshot.index}, not its name's")
    return snapshot
