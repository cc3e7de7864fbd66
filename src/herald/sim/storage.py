"""Simulated stable storage for one node: written data is durable only once synced.

This is the simple model the foundation needs: a write sits in a volatile buffer
until ``sync``; a crash throws the whole buffer away. The durable log itself (the
segmented write-ahead log with checksums, torn writes and bit flips) plugs in
behind the same :class:`~herald.node.host.LogStore` port.
"""

from __future__ import annotations

from collections.abc import Sequence

from herald.node.host import DurableState
from herald.raft import Entry, HardState, Snapshot, SnapshotMeta
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
        self._checkpoints: dict[int, Snapshot] = {}  # kept, oldest first
        self._pending: list[tuple[HardState | None, tuple[Entry, ...], Snapshot | None]] = []
        self.syncs = 0

    def load(self) -> DurableState:
        snapshot_index = self._snapshot.index if self._snapshot is not None else 0
        drop = snapshot_index - self._base
        if drop > 0:
            # A restart starts at the snapshot, like the real store.
            self._entries = self._entries[drop:]
            self._base, self._base_term = snapshot_index, self._snapshot_term()
        snapshot_index = self._snapshot.index if self._snapshot is not None else 0
        newest = max((i for i in self._checkpoints if i > snapshot_index), default=0)
        last = self._base + len(self._entries)
        checkpoint = self._checkpoints.get(newest) if newest <= last else None
        return DurableState(self._hard_state, self._snapshot, last, checkpoint=checkpoint)

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

    @property
    def checkpoint_wants_sync(self) -> bool:
        return False  # a checkpoint is kept at once (see save_checkpoint)

    @property
    def checkpoint_wants_writes(self) -> bool:
        return False

    def write_checkpoint(self) -> None:
        pass

    def finish_checkpoint(self) -> None:
        pass

    def save_checkpoint(self, checkpoint: Snapshot) -> None:
        # Written and synced atomically (temp file, fsync, rename), but it must not
        # make unrelated buffered writes durable.
        self._checkpoints[checkpoint.index] = checkpoint

    def save_checkpoint_parts(
        self, meta: SnapshotMeta, state: Sequence[bytes | memoryview]
    ) -> None:
        self.save_checkpoint(Snapshot(meta, b"".join(state)))

    def promote(self, below: int) -> int:
        chosen = max((i for i in self._checkpoints if i < below), default=0)
        if chosen and (self._snapshot is None or chosen > self._snapshot.index):
            self._snapshot = self._checkpoints[chosen]
            self._checkpoints = {i: c for i, c in self._checkpoints.items() if i > chosen}
            return chosen
        return 0

    def read_snapshot(self, index: int) -> Snapshot:
        if self._snapshot is not None and self._snapshot.index == index:
            return self._snapshot
        return self._checkpoints[index]

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """A snapshot the log may start at: a checkpoint, promoted at once."""
        self.save_checkpoint(snapshot)
        self.promote(snapshot.index + 1)

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
        self._checkpoints = {}
        self._entries = []
        self._base, self._base_term = snapshot.index, snapshot.term
