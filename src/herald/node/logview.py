"""The durable log as the Raft core reads it: a :class:`~herald.raft.Storage` over the LogStore.

The host used to mirror every durable entry into a list in memory; the log
already is on disk, so this view keeps only its bounds, the snapshot and the
hard state, and reads terms and entries through the :class:`LogStore`, which
keeps a term per entry and a bounded cache and reads the rest back from its
files. Its bounds move only in :meth:`NodeHost.finish
<herald.node.host.NodeHost.finish>`, when the host knows what is durable: the
core reads it for what is stable and its own unstable entries for the rest, so
it never asks for an entry whose write is still in flight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from herald.errors import CompactedError, InvariantError, UnavailableError
from herald.raft import ConfState, Entry, HardState, Snapshot, SnapshotMeta

if TYPE_CHECKING:
    from .host import DurableState, LogStore

__all__ = ["LogView"]


class LogView:
    """Entries ``first_index() .. last_index()`` are durable and readable from the store."""

    def __init__(self, store: LogStore, voters: tuple[int, ...], durable: DurableState) -> None:
        self._store = store
        self._hard_state = durable.hard_state
        snapshot = durable.snapshot
        # Only the snapshot's metadata stays in memory: its data is read back from
        # the store when a follower needs it (rarely), so a large state does not
        # live twice in memory.
        self._meta = (
            snapshot.meta
            if snapshot is not None and not snapshot.is_empty()
            else SnapshotMeta(conf=ConfState(voters))
        )
        # The entry before the first one: the snapshot's, or the last compacted.
        self._base = self._meta.index
        self._base_term = self._meta.term
        self._last = max(durable.last_index, self._meta.index)

    # -- reads (the Storage protocol) ------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._meta.conf

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    def first_index(self) -> int:
        return self._base + 1

    def last_index(self) -> int:
        return self._last

    def term(self, index: int) -> int:
        if index == self._base:
            return self._base_term
        if index < self._base:
            raise CompactedError(f"index {index} compacted (first index {self._base + 1})")
        if index > self._last:
            raise UnavailableError(f"index {index} beyond last index {self._last}")
        return self._store.term(index)

    def entries(self, lo: int, hi: int, max_size: int) -> list[Entry]:
        if lo <= self._base:
            raise CompactedError(f"index {lo} compacted (first index {self._base + 1})")
        if hi > self._last + 1:
            raise UnavailableError(f"index {hi - 1} beyond last index {self._last}")
        if lo >= hi:
            return []
        return self._store.entries(lo, hi, max_size)

    def snapshot(self) -> Snapshot:
        """The snapshot the log starts at, read back from the store (which raises
        CorruptSnapshotError or StorageIOError if it cannot)."""
        if self._meta.index == 0:
            return Snapshot(self._meta)
        return self._store.read_snapshot(self._meta.index)

    @property
    def snapshot_meta(self) -> SnapshotMeta:
        return self._meta

    # -- what the host learned is durable -------------------------------------------------

    def set_hard_state(self, hard_state: HardState) -> None:
        self._hard_state = hard_state

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """``entries`` are durable: they replace the log from their first index on."""
        if not entries:
            return
        last = entries[-1].index
        if last <= self._base:
            return
        if entries[0].index > self._last + 1:
            raise InvariantError(
                f"append leaves a gap: last index {self._last}, appending from {entries[0].index}"
            )
        self._last = last

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """A received snapshot replaced the whole log (the store already reset it)."""
        if snapshot.index <= self._meta.index:
            return
        self._meta = snapshot.meta
        self._base = self._last = snapshot.index
        self._base_term = snapshot.term

    def use_snapshot(self, index: int, conf: ConfState) -> None:
        """A checkpoint the store promoted (durably) is now where the log may start."""
        if index <= self._meta.index:
            return
        if index > self._last:
            raise InvariantError(f"snapshot index {index} beyond last index {self._last}")
        self._meta = SnapshotMeta(index=index, term=self.term(index), conf=conf)

    def compact(self, index: int) -> None:
        """Forget entries up to ``index`` (a durable snapshot covers them); the store
        may then delete the segments that hold them."""
        if index <= self._base:
            return
        if index > self._last:
            raise InvariantError(f"compact {index} beyond last index {self._last}")
        self._base_term = self.term(index)
        self._base = index
        self._store.release(index)
