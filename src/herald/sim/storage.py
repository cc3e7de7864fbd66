"""Simulated stable storage for one node: written data is durable only once synced.

This is the simple model the foundation needs: a write sits in a volatile buffer
until ``sync``; a crash throws the whole buffer away. The durable log itself (the
segmented write-ahead log with checksums, torn writes and bit flips) plugs in
behind the same :class:`~herald.node.host.LogStore` port.
"""

from __future__ import annotations

from collections.abc import Sequence

from herald.node.host import DurableState
from herald.raft import Entry, HardState, Snapshot
from herald.raft.storage import limit_size

__all__ = ["SimLogStore"]


class SimLogStore:
    """A :class:`~herald.node.host.LogStore` that forgets unsynced writes on a crash."""

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot: Snapshot | None = None
        # Durable entries _base + 1 .. ; those below the snapshot stay until released.
        self._base = 0
        self._base_term = 0
        self._entries: list[Entry] = []
        self._pending: list[tuple[HardState | None, tuple[Entry, ...], Snapshot | None]] = []
        self.syncs = 0

    def load(self) -> DurableState:
        snapshot_index = self._snapshot.index if self._snapshot is not None else 0
        drop = snapshot_index - self._base
        if drop > 0:
            # A restart starts at the snapshot, like the real store.
            self._entries = self._entries[drop:]
            self._base, self._base_term = snapshot_index, self._snapshot_term()
        return DurableState(self._hard_state, self._snapshot, self._base + len(self._entries))

    def term(self, index: int) -> int:
        if index == self._base:
            return self._base_term
        return self._entries[index - self._base - 1].term

    def entries(self, lo: int, hi: int, max_size: int) -> list[Entry]:
        return limit_size(self._entries[lo - self._base - 1 : hi - self._base - 1], max_size)

    def release(self, through: int) -> None:
        drop = through - self._base
        if drop > 0:
            self._base_term = self.term(through)
            self._entries = self._entries[drop:]
            self._base = through

    def write(
        self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None
    ) -> None:
        self._pending.append((hard_state, tuple(entries), snapshot))

    def sync(self) -> None:
        self.syncs += 1
        for hard_state, entries, snapshot in self._pending:
            if snapshot is not None:
                self._install_snapshot(snapshot)
            if entries:
                self._append(entries)
            if hard_state is not None:
                self._hard_state = hard_state
        self._pending.clear()

    def save_snapshot(self, snapshot: Snapshot) -> None:
        # Taking a snapshot writes and syncs it atomically (temp file, fsync, rename)
        # but must not make unrelated buffered writes durable.
        if self._snapshot is None or snapshot.index > self._snapshot.index:
            self._snapshot = snapshot

    def mark_recovered(self) -> None:
        pass  # this store never cuts a log back

    def crash(self) -> None:
        """Power loss: everything not synced is gone."""
        self._pending.clear()

    @property
    def unsynced_writes(self) -> int:
        return len(self._pending)

    def _snapshot_term(self) -> int:
        return self._snapshot.term if self._snapshot is not None else 0

    def _append(self, entries: tuple[Entry, ...]) -> None:
        first = entries[0].index
        position = first - self._base - 1
        if position < 0:
            entries = entries[-position:]
            position = 0
        del self._entries[position:]
        self._entries.extend(entries)

    def _install_snapshot(self, snapshot: Snapshot) -> None:
        current = self._snapshot.index if self._snapshot is not None else 0
        if snapshot.index <= current:
            return
        # Installing a snapshot from the leader replaces the whole log.
        self._snapshot = snapshot
        self._entries = []
        self._base, self._base_term = snapshot.index, snapshot.term
