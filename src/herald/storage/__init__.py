"""Durable storage: the write-ahead log, snapshots and recovery, over a FileSystem seam.

Modules, each owning one idea:

- :mod:`~herald.storage.fs`: the :class:`FileSystem` interface and :class:`OsFileSystem`.
- :mod:`~herald.storage.simfs`: :class:`SimFileSystem`, the simulator's faulty disk,
  and its fault-model contract.
- :mod:`~herald.storage.format`: the bytes on disk (headers, records, checksums).
- :mod:`~herald.storage.files`: file names, atomic replacement, snapshot and hard-state files.
- :mod:`~herald.storage.wal`: scanning segments; appending and rolling over.
- :mod:`~herald.storage.recovery`: torn tail versus corruption; rebuilding the durable state.
- :mod:`~herald.storage.logstore`: :class:`WalLogStore`, the node host's ``LogStore``.

Nothing here reads a clock or the global random generator; all IO goes through
the :class:`FileSystem` given to the store.
"""

from .fs import DirLock, FileHandle, FileSystem, OsFileSystem
from .logstore import DEFAULT_SEGMENT_SIZE, WalLogStore
from .recovery import Discard, RecoveryReport, TailTruncation
from .simfs import DiskFaults, SimFileSystem, SimulatedCrash

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "DirLock",
    "Discard",
    "DiskFaults",
    "FileHandle",
    "FileSystem",
    "OsFileSystem",
    "RecoveryReport",
    "SimFileSystem",
    "SimulatedCrash",
    "TailTruncation",
    "WalLogStore",
]
