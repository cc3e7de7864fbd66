"""The file-system seam of the storage layer, and its implementation over the real OS.

The write-ahead log, the snapshot files and recovery do all their IO through
:class:`FileSystem`, so the simulator can run the very same code over
:class:`~herald.storage.simfs.SimFileSystem` and attack it with disk faults.

The interface is small on purpose and its durability rules are explicit:

- Data appended to a file is durable only once :meth:`FileHandle.sync` returned.
- Creating, renaming and removing a file is durable only once
  :meth:`FileSystem.sync_dir` of its directory returned.
- :meth:`FileSystem.truncate` is durable when it returns.
- Every failure is a :class:`~herald.errors.StorageIOError` naming the path
  (a missing file too); :meth:`FileSystem.lock` raises
  :class:`~herald.errors.LockedError` when the directory is already locked.

Paths are strings with ``/`` separators; the log store builds them with
:func:`join`.
"""

from __future__ import annotations

import errno
import os
import posixpath
import sys
from collections.abc import Callable
from typing import Protocol, final

from herald.errors import LockedError, StorageIOError

__all__ = ["DirLock", "FileHandle", "FileSystem", "OsFileSystem", "join"]

LOCK_FILE = "LOCK"


def join(directory: str, name: str) -> str:
    return posixpath.join(directory, name)


class FileHandle(Protocol):
    """A file open for appending."""

    @property
    def path(self) -> str: ...

    def append(self, data: bytes | memoryview) -> None:
        """Write ``data`` at the end of the file; durable only after :meth:`sync`."""
        ...

    def sync(self) -> None:
        """Make every byte appended so far (and the file's size) durable."""
        ...

    def close(self) -> None: ...


class DirLock(Protocol):
    """An exclusive hold on a data directory, released explicitly or by process death."""

    def release(self) -> None: ...


class FileSystem(Protocol):
    """The operations the storage layer needs. See the module docstring for durability."""

    def make_dirs(self, path: str) -> None:
        """Create ``path`` and its parents if missing (durably)."""
        ...

    def list_dir(self, path: str) -> list[str]:
        """The names in directory ``path``, sorted."""
        ...

    def exists(self, path: str) -> bool: ...

    def read(self, path: str) -> bytes:
        """The whole content of a file, in one call."""
        ...

    def size(self, path: str) -> int:
        """The size of a file in bytes, as :meth:`read` would see it."""
        ...

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes of a file from ``offset`` (fewer only at its end).

        Sees what was appended, synced or not, like :meth:`read`.
        """
        ...

    def create(self, path: str) -> FileHandle:
        """Create an empty file (replacing any existing one) and open it for appending."""
        ...

    def open_append(self, path: str) -> FileHandle:
        """Open an existing file for appending at its end."""
        ...

    def truncate(self, path: str, size: int) -> None:
        """Cut the file to ``size`` bytes, durably."""
        ...

    def rename(self, source: str, target: str) -> None:
        """Atomically replace ``target`` by ``source`` (same directory)."""
        ...

    def remove(self, path: str) -> None: ...

    def sync_dir(self, path: str) -> None:
        """Make the creations, renames and removals in directory ``path`` durable."""
        ...

    def lock(self, path: str) -> DirLock:
        """Lock the directory ``path`` for this store. Raises LockedError if held."""
        ...


# -- the real OS ---------------------------------------------------------------------------


def _io_error(path: str, operation: str, error: OSError) -> StorageIOError:
    return StorageIOError(path, operation, error.strerror or str(error))


def _reading(path: str, read: Callable[[int], bytes]) -> bytes:
    """``read`` applied to ``path`` opened for reading; OS errors become StorageIOError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise _io_error(path, "open", error) from error
    try:
        return read(fd)
    except OSError as error:
        raise _io_error(path, "read", error) from error
    finally:
        os.close(fd)


def _sync_fd(fd: int) -> None:
    if sys.platform == "darwin":  # pragma: no cover - fsync on macOS stops at the drive cache
        import fcntl

        fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
    elif hasattr(os, "fdatasync"):
        # Enough for an append: fdatasync also writes the metadata needed to read
        # the data back, the file size included; it skips only timestamps.
        os.fdatasync(fd)
    else:  # pragma: no cover
        os.fsync(fd)


@final
class _OsFile:
    __slots__ = ("_fd", "_path")

    def __init__(self, path: str, fd: int) -> None:
        self._path = path
        self._fd = fd

    @property
    def path(self) -> str:
        return self._path

    def append(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as error:
            raise _io_error(self._path, "write", error) from error

    def sync(self) -> None:
        try:
            _sync_fd(self._fd)
        except OSError as error:
            raise _io_error(self._path, "fsync", error) from error

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                os.close(fd)
            except OSError as error:
                raise _io_error(self._path, "close", error) from error


@final
class _OsLock:
    __slots__ = ("_fd", "_path")

    def __init__(self, path: str, fd: int) -> None:
        self._path = path
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)  # closing the descriptor drops the flock


@final
class OsFileSystem:
    """:class:`FileSystem` over the operating system: os.open/os.write/fdatasync."""

    def make_dirs(self, path: str) -> None:
        try:
            missing = not os.path.isdir(path)
            os.makedirs(path, exist_ok=True)
            if missing:
                self.sync_dir(os.path.dirname(os.path.abspath(path)))
        except OSError as error:
            raise _io_error(path, "mkdir", error) from error

    def list_dir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except OSError as error:
            raise _io_error(path, "list", error) from error

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def size(self, path: str) -> int:
        try:
            return os.stat(path).st_size
        except OSError as error:
            raise _io_error(path, "stat", error) from error

    def read(self, path: str) -> bytes:
        def whole(fd: int) -> bytes:
            remaining = os.fstat(fd).st_size
            chunks = []
            while True:
                # One read for the whole file in the usual case; loop for the
                # rare short read (and for a file that grew meanwhile).
                chunk = os.read(fd, max(remaining, 1 << 16))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)

        return _reading(path, whole)

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        def part(fd: int) -> bytes:
            at, wanted = offset, length
            chunks = []
            while wanted > 0:
                chunk = os.pread(fd, wanted, at)
                if not chunk:
                    break
                chunks.append(chunk)
                at += len(chunk)
                wanted -= len(chunk)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)

        return _reading(path, part)

    def _open(self, path: str, flags: int, operation: str) -> _OsFile:
        try:
            fd = os.open(path, flags | os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise _io_error(path, operation, error) from error
        return _OsFile(path, fd)

    def create(self, path: str) -> FileHandle:
        return self._open(path, os.O_CREAT | os.O_TRUNC, "create")

    def open_append(self, path: str) -> FileHandle:
        return self._open(path, 0, "open")

    def truncate(self, path: str, size: int) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.ftruncate(fd, size)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as error:
            raise _io_error(path, "truncate", error) from error

    def rename(self, source: str, target: str) -> None:
        try:
            os.replace(source, target)
        except OSError as error:
            raise _io_error(source, "rename", error) from error

    def remove(self, path: str) -> None:
        try:
            os.remove(path)
        except OSError as error:
            raise _io_error(path, "remove", error) from error

    def sync_dir(self, path: str) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as error:
            raise _io_error(path, "fsync directory", error) from error

    def lock(self, path: str) -> DirLock:
        import fcntl

        lock_path = join(path, LOCK_FILE)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise _io_error(lock_path, "open", error) from error
        try:
            # flock belongs to the open file description: a second open, in this
            # process or another, conflicts; the kernel drops it when we die.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockedError(path) from error
            raise _io_error(lock_path, "lock", error) from error
        return _OsLock(lock_path, fd)
