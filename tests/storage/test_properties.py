"""Property test: the WAL log store against the in-memory model, on the simulated disk.

Hypothesis drives a store through appends, suffix truncations (overwrites),
commit-only and term/vote hard-state writes, syncs, local snapshots with
prefix compaction, snapshots received from a leader, crashes (power loss with
torn and misordered writes, or at an armed operation inside any call) and clean
restarts. After every recovery the store must hold a state the model allows:
a prefix of the writes that contains everything a completed sync covered.
The writes stay within what Raft can produce: no overwrite at or below the
commit point, hard-state terms never below the terms written.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from herald.raft import HardState
from herald.storage import DiskFaults, SimFileSystem, SimulatedCrash, WalLogStore

from .model import Model, check_recovered
from .scripts import DATA_DIR, Save, Step, Sync, Write, apply_step, entries, load, snapshot


class WalStoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fs = SimFileSystem(random.Random(0))
        self.model = Model()
        self.committed = 0  # no write ever replaces an entry at or below this
        self.flush_bytes = 1 << 20
        self.recoveries = 0
        self.torn_tails = 0
        self.store = self._open()

    def _open(self) -> WalLogStore:
        return WalLogStore(
            self.fs, DATA_DIR, segment_size=4096, flush_bytes=self.flush_bytes, keep_snapshots=2
        )

    @initialize(
        seed=st.integers(0, 2**32 - 1),
        misorder=st.sampled_from([0.0, 0.5, 1.0]),
        flush_bytes=st.sampled_from([256, 1 << 20]),
    )
    def start(self, seed: int, misorder: float, flush_bytes: int) -> None:
        self.store.close()
        self.fs = SimFileSystem(
            random.Random(seed), DiskFaults(torn_writes=True, misorder=misorder)
        )
        self.flush_bytes = flush_bytes
        self.store = self._open()
        check_recovered(self.model, load(self.store), exact=True)

    # -- helpers ----------------------------------------------------------------------------

    @property
    def hard_state(self) -> HardState:
        return self.model.hard_state

    def _do(self, *steps: Step) -> bool:
        """Run steps; if the armed crash strikes, recover and return False."""
        try:
            for step in steps:
                apply_step(self.store, self.model, step)
        except SimulatedCrash:
            self._recover(lose_all=False)
            return False
        return True

    def _recover(self, *, lose_all: bool) -> None:
        self.fs.crash(lose_all=lose_all)
        self.store = self._open()
        state = load(self.store)
        check_recovered(self.model, state)
        self.model.after_recovery(state)
        report = self.store.report
        if report is not None and report.tail is not None:
            self.torn_tails += 1
        base = state.snapshot.index if state.snapshot is not None else 0
        last = state.entries[-1].index if state.entries else base
        self.committed = max(base, min(self.committed, last))
        self.recoveries += 1

    # -- rules -----------------------------------------------------------------------------

    @rule(count=st.integers(1, 12), size=st.integers(0, 150), new_term=st.booleans())
    def append(self, count: int, size: int, new_term: bool) -> None:
        hs = self.hard_state
        term = max(hs.term, 1) + (1 if new_term else 0)
        first = self.model.log.last + 1
        new_hs = HardState(term, hs.vote if term == hs.term else 0, hs.commit)
        self._do(Write(new_hs, entries(first, first + count - 1, term, size)))

    @precondition(lambda self: self.model.log.last > self.committed)
    @rule(data=st.data(), count=st.integers(1, 6))
    def overwrite(self, data: st.DataObject, count: int) -> None:
        first = data.draw(st.integers(self.committed + 1, self.model.log.last), label="first")
        term = self.hard_state.term + 1
        hs = HardState(term, 2, self.hard_state.commit)
        self._do(Write(hs, entries(first, first + count - 1, term)))

    @rule(advance=st.booleans())
    def sync(self, advance: bool) -> None:
        if self._do(Sync()) and advance:
            # What is durable here may become committed (on a quorum).
            self.committed = max(self.committed, self.store.durable_index)

    @precondition(lambda self: self.committed > self.hard_state.commit)
    @rule()
    def commit(self) -> None:
        hs = self.hard_state
        self._do(Write(HardState(hs.term, hs.vote, self.committed)))

    @precondition(
        lambda self: self.committed > max(self.model.snapshot_floor, self.model.log.base_index)
    )
    @rule(data=st.data())
    def take_snapshot(self, data: st.DataObject) -> None:
        low = max(self.model.snapshot_floor, self.model.log.base_index) + 1
        index = data.draw(st.integers(low, self.committed), label="snapshot index")
        self._do(Save(index))

    @rule(data=st.data(), follow=st.integers(0, 5))
    def receive_snapshot(self, data: st.DataObject, follow: int) -> None:
        low = max(self.committed, self.model.snapshot_floor) + 1
        index = data.draw(st.integers(low, self.model.log.last + 5), label="received index")
        term = self.hard_state.term + 1
        hs = HardState(term, 0, index)
        tail = entries(index + 1, index + follow, term) if follow else []
        if self._do(Write(hs, tail, snapshot(index, term))):
            self.committed = index

    @rule(count=st.integers(1, 30), size=st.integers(1, 200), cut=st.integers(1, 8))
    def crash_inside_sync(self, count: int, size: int, cut: int) -> None:
        """A batch is being synced when the power fails: the classic torn tail."""
        hs = self.hard_state
        term = max(hs.term, 1)
        first = self.model.log.last + 1
        new_hs = HardState(term, hs.vote if term == hs.term else 0, hs.commit)
        if self._do(Write(new_hs, entries(first, first + count - 1, term, size))):
            self.fs.arm_crash(cut)
            self._do(Sync())

    @rule(operations=st.integers(1, 12))
    def arm_crash(self, operations: int) -> None:
        """The power fails at one of the next file-system calls, inside whatever runs."""
        self.fs.arm_crash(operations)

    @rule(lose_all=st.booleans())
    def crash(self, lose_all: bool) -> None:
        self.fs.arm_crash(None)
        self._recover(lose_all=lose_all)

    @rule()
    def restart(self) -> None:
        self.fs.arm_crash(None)
        self._do(Sync())
        self.store.close()
        self.fs.kill()
        self.store = self._open()
        state = load(self.store)
        check_recovered(self.model, state, exact=True)
        self.model.after_recovery(state)

    @invariant()
    def durable_index_moves_only_with_sync(self) -> None:
        # The model advances its durable index only after a sync returned (or
        # after a recovery); the store must report exactly that, never more.
        assert self.store.durable_index == self.model.durable_index

    def teardown(self) -> None:
        event(f"recoveries: {min(self.recoveries, 3)}{'+' if self.recoveries > 3 else ''}")
        event(f"torn tails: {'yes' if self.torn_tails else 'no'}")
        self.store.close()


WalStoreMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestWalStore = WalStoreMachine.TestCase
