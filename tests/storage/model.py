"""A reference model of a log store, and the checker of what a store recovered after a crash.

The model keeps the log as Raft sees it (a base from the last *received*
snapshot plus the entries after it) and, since the last completed sync, every
state a crash may legally leave behind: the state after each record-sized step
(a received snapshot, a batch of entries). A recovered store must match one of
them, which is "a prefix of the writes, containing everything fsynced".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from herald.node.host import DurableState
from herald.raft import Entry, HardState, Snapshot


@dataclass(frozen=True)
class LogState:
    base_index: int = 0
    base_term: int = 0
    entries: tuple[Entry, ...] = ()  # base_index + 1 ..

    @property
    def last(self) -> int:
        return self.base_index + len(self.entries)

    def term(self, index: int) -> int | None:
        if index == self.base_index:
            return self.base_term
        if self.base_index < index <= self.last:
            return self.entries[index - self.base_index - 1].term
        return None

    def after(self, index: int) -> tuple[Entry, ...]:
        return self.entries[max(0, index - self.base_index) :]


@dataclass
class Model:
    log: LogState = field(default_factory=LogState)
    hard_state: HardState = field(default_factory=HardState)
    # What a crash may leave: logs and (term, vote) pairs since the last sync.
    candidates: list[LogState] = field(default_factory=list)
    hard_states: list[tuple[int, int]] = field(default_factory=list)
    snapshots: dict[int, Snapshot] = field(default_factory=dict)  # every one given
    durable_snapshot_floor: int = 0  # newest snapshot known durable
    snapshot_floor: int = 0  # newest snapshot given (received or local)
    durable_index: int = 0

    def __post_init__(self) -> None:
        self.candidates = [self.log]
        self.hard_states = [(self.hard_state.term, self.hard_state.vote)]

    def write(
        self,
        hard_state: HardState | None,
        entries: list[Entry],
        snapshot: Snapshot | None,
    ) -> None:
        if snapshot is not None and snapshot.index > self.snapshot_floor:
            self.snapshots[snapshot.index] = snapshot
            self.snapshot_floor = snapshot.index
            self.log = LogState(snapshot.index, snapshot.term, ())
            self.candidates.append(self.log)
        entries = [e for e in entries if e.index > self.snapshot_floor]
        if entries:
            first = entries[0].index
            assert first <= self.log.last + 1
            if first <= self.log.base_index:
                raise AssertionError("model: write below the received snapshot")
            kept = self.log.entries[: first - self.log.base_index - 1]
            self.log = LogState(self.log.base_index, self.log.base_term, kept + tuple(entries))
            self.candidates.append(self.log)
        if hard_state is not None:
            self.hard_state = hard_state
            self.hard_states.append((hard_state.term, hard_state.vote))

    def sync(self) -> None:
        self.candidates = [self.log]
        self.hard_states = [(self.hard_state.term, self.hard_state.vote)]
        self.durable_index = self.log.last
        self.durable_snapshot_floor = max(self.durable_snapshot_floor, self.log.base_index)

    def save_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshots[snapshot.index] = snapshot
        self.snapshot_floor = max(self.snapshot_floor, snapshot.index)
        self.durable_snapshot_floor = max(self.durable_snapshot_floor, snapshot.index)

    def after_recovery(self, state: DurableState) -> None:
        """Adopt the recovered state as the model's (it was checked first)."""
        base = state.snapshot.index if state.snapshot is not None else 0
        term = state.snapshot.term if state.snapshot is not None else 0
        self.log = LogState(base, term, state.entries)
        self.hard_state = state.hard_state
        self.snapshot_floor = base
        # A checkpoint ahead of the snapshot is durable state too (a save whose
        # promotion a crash cut short leaves one).
        checkpoint = state.checkpoint.index if state.checkpoint is not None else 0
        self.durable_snapshot_floor = max(base, checkpoint)
        self.sync()


def describe(state: DurableState) -> str:
    first = state.entries[0].index if state.entries else None
    last = state.entries[-1].index if state.entries else None
    snap = (state.snapshot.index, state.snapshot.term) if state.snapshot else None
    return f"snapshot={snap} entries={first}..{last} hard_state={state.hard_state}"


def check_recovered(model: Model, state: DurableState, *, exact: bool = False) -> None:
    """Raise AssertionError unless ``state`` is a state the model allows after a crash.

    ``exact``: there was no crash (a clean close after a sync), so only the
    current state is allowed.
    """
    candidates = [model.log] if exact else model.candidates
    hard_states = [(model.hard_state.term, model.hard_state.vote)] if exact else model.hard_states
    snapshot = state.snapshot
    base = 0
    if snapshot is not None:
        given = model.snapshots.get(snapshot.index)
        assert given == snapshot, f"recovered a snapshot never given: {snapshot.meta}"
        base = snapshot.index
    # The newest state recovered: the snapshot, or a checkpoint after it (a save
    # is a checkpoint made durable, then promoted; a crash may fall in between).
    restored = base
    checkpoint = getattr(state, "checkpoint", None)
    if checkpoint is not None:
        assert model.snapshots.get(checkpoint.index) == checkpoint, (
            f"recovered a checkpoint never given: {checkpoint.meta}"
        )
        assert checkpoint.index > base, "a checkpoint at or before the snapshot"
        restored = checkpoint.index
    assert restored >= model.durable_snapshot_floor, (
        f"recovered state {restored} older than the durable one {model.durable_snapshot_floor}"
    )
    matched = False
    for candidate in candidates:
        term = candidate.term(base)
        if base and term is None:
            continue
        if base and term != snapshot.term:  # type: ignore[union-attr]
            continue
        if candidate.after(base) == state.entries:
            matched = True
            break
    assert matched, (
        f"recovered {describe(state)} matches none of {len(candidates)} allowed states; "
        f"durable index {model.durable_index}, allowed lasts "
        f"{[c.last for c in candidates]}"
    )
    hs = state.hard_state
    assert (hs.term, hs.vote) in hard_states, f"recovered hard state {hs} not among {hard_states}"
    last = state.entries[-1].index if state.entries else base
    assert hs.commit <= last, f"commit {hs.commit} beyond last index {last}"
    assert not state.repaired
    # Contiguity is part of the LogStore contract.
    for offset, entry in enumerate(state.entries):
        assert entry.index == base + 1 + offset
