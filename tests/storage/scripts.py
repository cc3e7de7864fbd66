"""Shared helpers of the storage tests: entries, snapshots, and a scripted store session."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from herald.node.host import DurableState
from herald.raft import ConfState, Entry, EntryKind, HardState, Snapshot, SnapshotMeta
from herald.storage import WalLogStore

from .model import Model

DATA_DIR = "/node/data"
VOTERS = ConfState((1, 2, 3))


def payload(index: int, term: int, size: int = 100) -> bytes:
    seed = hashlib.blake2b(f"{index}/{term}".encode(), digest_size=16).digest()
    return (seed * (size // 16 + 1))[:size]


def entries(first: int, last: int, term: int, size: int = 100) -> list[Entry]:
    return [
        Entry(
            term,
            index,
            payload(index, term, size),
            EntryKind.NOOP if size == 0 else EntryKind.NORMAL,
        )
        for index in range(first, last + 1)
    ]


@dataclass(frozen=True)
class Loaded:
    """What ``load`` returned, and the entries it made readable, read back through
    the store (so every test of what survives also tests reading it back)."""

    hard_state: HardState
    snapshot: Snapshot | None
    last_index: int
    repaired: bool
    discarded_from_index: int | None
    recovering_term: int
    checkpoint: Snapshot | None
    entries: tuple[Entry, ...]


def load(store: Any) -> Loaded:
    """``store.load()``, plus every durable entry after the snapshot."""
    state: DurableState = store.load()
    base = state.snapshot.index if state.snapshot is not None else 0
    read = store.entries(base + 1, state.last_index + 1, 1 << 62) if state.last_index > base else []
    assert [entry.index for entry in read] == list(range(base + 1, state.last_index + 1))
    values = {field.name: getattr(state, field.name) for field in fields(DurableState)}
    return Loaded(**values, entries=tuple(read))


def snapshot(index: int, term: int) -> Snapshot:
    return Snapshot(SnapshotMeta(index, term, VOTERS), f"state@{index}/{term}".encode() * 3)


@dataclass(frozen=True)
class Write:
    hard_state: HardState | None = None
    entries: Sequence[Entry] = ()
    snapshot: Snapshot | None = None


@dataclass(frozen=True)
class Sync:
    pass


@dataclass(frozen=True)
class Save:
    index: int  # a local snapshot at this index, with the model's term for it


Step = Write | Sync | Save


def apply_step(store: WalLogStore, model: Model, step: Step) -> None:
    """Run one step on the store, keeping the model in step.

    The model learns of a write before the store does (a crash inside the
    call may have left part of it on disk) and of durability only after the
    store said so.
    """
    if isinstance(step, Write):
        model.write(step.hard_state, list(step.entries), step.snapshot)
        store.write(step.hard_state, step.entries, step.snapshot)
    elif isinstance(step, Sync):
        store.sync()
        assert store.durable_index == model.log.last
        model.sync()
    else:
        term = model.log.term(step.index)
        assert term is not None, f"script error: no entry {step.index}"
        snap = snapshot(step.index, term)
        model.snapshots[snap.index] = snap
        store.save_snapshot(snap)
        model.save_snapshot(snap)


# A session that exercises every path: group commit, commit-only hard states,
# overwrites of synced and unsynced entries, rollover, local snapshots with
# compaction, a snapshot received from a leader, and unsynced data at the end.
SCRIPT: tuple[Step, ...] = (
    Write(HardState(1, 1, 0), entries(1, 5, 1)),
    Sync(),
    Write(None, entries(6, 40, 1)),
    Write(HardState(1, 1, 5)),
    Sync(),
    Write(HardState(2, 2, 5), entries(30, 45, 2)),
    Sync(),
    Save(20),
    Write(None, entries(46, 90, 2)),
    Write(HardState(2, 2, 45)),
    Sync(),
    Save(40),
    Save(60),
    Write(HardState(3, 3, 60), entries(91, 95, 3)),
    Write(None, entries(93, 100, 3, size=0)),
    Sync(),
    Write(HardState(4, 0, 60), entries(121, 125, 4), snapshot(120, 4)),
    Sync(),
    Write(None, entries(126, 130, 4)),
    Sync(),
    Save(125),
    Write(HardState(4, 0, 128), entries(131, 140, 4)),
)
