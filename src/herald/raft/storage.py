"""The core's read-only view of stable storage, and an in-memory implementation.

The Raft core only ever *reads* storage (etcd-raft's ``Storage``). Writing is the
host's job: it persists what a :class:`~herald.raft.rawnode.Ready` hands it to a
durable log, then mirrors the same entries into a :class:`MemoryStorage`, which
the core reads. After a crash the host rebuilds the :class:`MemoryStorage` from
the durable log, so this class holds no durability promise of its own.
"""

from __future__ import annotations

from typing import Protocol

from herald.errors import CompactedError, InvariantError, UnavailableError

from .types import ConfState, Entry, HardState, Snapshot, SnapshotMeta

__all__ = ["MemoryStorage", "Storage", "limit_size"]


class Storage(Protocol):
    """What the Raft core reads. Indexes below ``first_index()`` are compacted."""

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The hard state and membership saved before the last restart."""
        ...

    def entries(self, lo: int, hi: int, max_size: int) -> list[Entry]:
        """Entries ``[lo, hi)``, at least one, no more than ``max_size`` bytes beyond it.

        Raises :class:`CompactedError` if ``lo`` was compacted and
        :class:`UnavailableError` if ``hi - 1`` is beyond the last entry.
        """
        ...

    def term(self, index: int) -> int:
        """The term of entry ``index``; also valid for ``first_index() - 1``."""
        ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def snapshot(self) -> Snapshot:
        """The most recent snapshot; may raise :class:`SnapshotUnavailableError`."""
        ...


def limit_size(entries: list[Entry], max_size: int) -> list[Entry]:
    """The longest prefix of ``entries`` within ``max_size`` bytes, never empty if input isn't."""
    if len(entries) <= 1:
        return entries
    total = entries[0].size()
    for count in range(1, len(entries)):
        total += entries[count].size()
        if total > max_size:
            return entries[:count]
    return entries


class MemoryStorage:
    """A :class:`Storage` held in memory, with the write methods a host needs.

    ``_entries[0]`` is a dummy entry standing for the snapshot (or index 0): its
    index and term are those of the last compacted entry, so ``term()`` can
    answer for ``first_index() - 1``, which every append probe needs.
    """

    def __init__(self, voters: tuple[int, ...] = ()) -> None:
        self._hard_state = HardState()
        self._snapshot = Snapshot(SnapshotMeta(conf=ConfState(voters)))
        self._entries: list[Entry] = [Entry(term=0, index=0)]

    # -- reads (the Storage protocol) ------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._snapshot.meta.conf

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    def first_index(self) -> int:
        return self._entries[0].index + 1

    def last_index(self) -> int:
        return self._entries[0].index + len(self._entries) - 1

    def term(self, index: int) -> int:
        offset = self._entries[0].index
        if index < offset:
            raise CompactedError(f"index {index} compacted (first index {offset + 1})")
        if index - offset >= len(self._entries):
            raise UnavailableError(f"index {index} beyond last index {self.last_index()}")
        return self._entries[index - offset].term

    def entries(self, lo: int, hi: int, max_size: int) -> list[Entry]:
        offset = self._entries[0].index
        if lo <= offset:
            raise CompactedError(f"index {lo} compacted (first index {offset + 1})")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"index {hi - 1} beyond last index {self.last_index()}")
        return limit_size(self._entries[lo - offset : hi - offset], max_size)

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # -- writes (the host's) ------------------------------------------------------------

    def set_hard_state(self, hard_state: HardState) -> None:
        self._hard_state = hard_state

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Append entries, replacing any conflicting suffix; compacted ones are skipped."""
        if not entries:
            return
        first = self.first_index()
        last = entries[-1].index
        if last < first:
            return
        if first > entries[0].index:
            entries = entries[first - entries[0].index :]
        offset = entries[0].index - self._entries[0].index
        if offset > len(self._entries):
            raise InvariantError(
                f"append leaves a gap: last index {self.last_index()}, "
                f"appending from {entries[0].index}"
            )
        del self._entries[offset:]
        self._entries.extend(entries)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole log by ``snapshot`` (a follower installing one)."""
        if snapshot.index <= self._snapshot.index:
            return
        self._snapshot = snapshot
        self._entries = [Entry(term=snapshot.term, index=snapshot.index)]

    def create_snapshot(self, index: int, conf: ConfState, data: bytes) -> Snapshot:
        """Record a snapshot of the state machine as of ``index`` (which must be present)."""
        if index <= self._snapshot.index:
            return self._snapshot
        if index > self.last_index():
            raise InvariantError(f"snapshot index {index} beyond last index {self.last_index()}")
        term = self.term(index)
        self._snapshot = Snapshot(SnapshotMeta(index=index, term=term, conf=conf), data)
        return self._snapshot

    def compact(self, index: int) -> None:
        """Discard entries up to and including ``index`` (covered by a snapshot)."""
        offset = self._entries[0].index
        if index <= offset:
            return
        if index > self.last_index():
            raise InvariantError(f"compact {index} beyond last index {self.last_index()}")
        start = index - offset
        dummy = Entry(term=self._entries[start].term, index=index)
        self._entries = [dummy, *self._entries[start + 1 :]]
