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
        if snapshot is None or snapshot.is_empty():
            snapshot = Snapshot(SnapshotMeta(conf=ConfState(voters)))
        self._snapshot = snapshot
        # The entry before the first one: the snapshot's, or the last compacted.
        self._base = snapshot.index
        self._base_term = snapshot.term
        self._last = max(durable.last_index, snapshot.index)

    # -- reads (the Storage protocol) ------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._snapshot.meta.conf

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
        return self._snapshot

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
        if snapshot.index <= self._snapshot.index:
            return
        self._snapshot = snapshot
        self._base = self._last = snapshot.index
        self._base_term = snapshot.term

    def create_snapshot(self, index: int, conf: ConfState, data: bytes) -> Snapshot:
        """Record a snapshot of the state machine as of ``index`` (which must be present)."""
        if index <= self._snapshot.index:
            return self._snapshot
        if index > self._last:
            raise InvariantError(f"snapshot index {index} beyond last index {self._last}")
        self._snapshot = Snapshot(SnapshotMeta(index=index, term=self.term(index), conf=conf), data)
        return self._snapshot

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
