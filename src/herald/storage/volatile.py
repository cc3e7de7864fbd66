"""A test-only file system that loses unsynced writes when its process is killed.

A SIGKILLed process normally loses nothing it wrote: the kernel's page cache
still holds the data and writes it back later. A power cut loses everything
not fsynced. :class:`VolatileFileSystem` makes a kill behave like a power cut,
for data: appended bytes stay in the process's own memory until
:meth:`FileHandle.sync`, which writes and fsyncs them. Kill the process and
they are gone, exactly as after a power loss -- which is what
``herald torture --nemesis disk`` needs to attack the real processes' recovery.

Metadata (create, rename, remove, truncate) goes to the OS at once, so this
is weaker than a real power cut for those; the simulated disk
(:mod:`herald.storage.simfs`) covers them. Never use it in production:
``herald serve`` only offers it behind a flag meant for testing.
"""

from __future__ import annotations

from typing import final

from .fs import DirLock, FileHandle, OsFileSystem

__all__ = ["VolatileFileSystem"]


@final
class _VolatileFile:
    __slots__ = ("_fs", "_handle")

    def __init__(self, fs: VolatileFileSystem, handle: FileHandle) -> None:
        self._fs = fs
        self._handle = handle

    @property
    def path(self) -> str:
        return self._handle.path

    def append(self, data: bytes | memoryview) -> None:
        self._fs._unsynced.setdefault(self.path, bytearray()).extend(data)

    def sync(self) -> None:
        pending = self._fs._unsynced.pop(self.path, None)
        if pending:
            self._handle.append(bytes(pending))
        self._handle.sync()

    def close(self) -> None:
        # Unsynced bytes stay in memory (the "page cache") until the process dies.
        self._handle.close()


@final
class VolatileFileSystem:
    """:class:`OsFileSystem` whose unsynced appends live only in this process."""

    def __init__(self) -> None:
        self._os = OsFileSystem()
        self._unsynced: dict[str, bytearray] = {}

    @property
    def unsynced_bytes(self) -> int:
        return sum(len(data) for data in self._unsynced.values())

    def make_dirs(self, path: str) -> None:
        self._os.make_dirs(path)

    def list_dir(self, path: str) -> list[str]:
        return self._os.list_dir(path)

    def exists(self, path: str) -> bool:
        return self._os.exists(path)

    def size(self, path: str) -> int:
        pending = self._unsynced.get(path)
        return self._os.size(path) + (len(pending) if pending else 0)

    def read(self, path: str) -> bytes:
        data = self._os.read(path)
        pending = self._unsynced.get(path)
        return data + bytes(pending) if pending else data

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        pending = self._unsynced.get(path)
        if not pending:
            return self._os.read_range(path, offset, length)
        return self.read(path)[offset : offset + length]

    def create(self, path: str) -> FileHandle:
        self._unsynced.pop(path, None)
        return _VolatileFile(self, self._os.create(path))

    def open_append(self, path: str) -> FileHandle:
        return _VolatileFile(self, self._os.open_append(path))

    def truncate(self, path: str, size: int) -> None:
        on_disk = len(self._os.read(path))
        pending = self._unsynced.get(path)
        if size >= on_disk and pending is not None:
            del pending[size - on_disk :]
            return
        self._unsynced.pop(path, None)
        self._os.truncate(path, size)

    def rename(self, source: str, target: str) -> None:
        self._os.rename(source, target)
        pending = self._unsynced.pop(source, None)
        self._unsynced.pop(target, None)
        if pending is not None:
            self._unsynced[target] = pending

    def remove(self, path: str) -> None:
        self._os.remove(path)
        self._unsynced.pop(path, None)

    def sync_dir(self, path: str) -> None:
        self._os.sync_dir(path)

    def lock(self, path: str) -> DirLock:
        return self._os.lock(path)
