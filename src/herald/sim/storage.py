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

__all__ = ["SimLogStore"]


class SimLogStore:
    """A :class:`~herald.node.host.LogStore` that forgets unsynced writes on a crash."""

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot: Snapshot | None = None
        self._entries: list[Entry] = []
        self._pending: list[tuple[HardState | None, tuple[Entry, ...], Snapshot | None]] = []
        self.syncs = 0

    def load(self) -> DurableState:
        return DurableState(self._hard_state, self._snapshot, tuple(self._entries))

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
        self._install_snapshot(snapshot, keep_entries=True)

    def mark_recovered(self) -> None:
        pass  # this store never cuts a log back

    def crash(self) -> None:
        """Power loss: everything not synced is gone."""
        self._pending.clear()

    @property
    def unsynced_writes(self) -> int:
        return len(self._pending)

    def _append(self, entries: tuple[Entry, ...]) -> None:
        first = entries[0].index
        base = self._snapshot.index if self._snapshot is not None else 0
        position = first - base - 1
        if position < 0:
            entries = entries[-position:]
            position = 0
        del self._entries[position:]
        self._entries.extend(entries)

    def _install_snapshot(self, snapshot: Snapshot, keep_entries: bool = False) -> None:
        current = self._snapshot.index if self._snapshot is not None else 0
        if snapshot.index <= current:
            return
        if keep_entries:
            drop = snapshot.index - current
            self._entries = self._entries[drop:]
        else:
            self._entries = []
        self._snapshot = snapshot
