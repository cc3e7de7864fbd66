"""A crash at every write boundary recovers a prefix of the writes holding everything fsynced.

The scripted session of :mod:`tests.storage.scripts` is replayed once per
file-system call, with the power cut just before that call; the simulated disk
then keeps a seed-drawn part of the unsynced data (torn at a random byte, in
order or misordered across files) or none of it. Recovery must give a state
the model allows, and the recovered store must go on working.
"""

from __future__ import annotations

import random

import pytest

from herald.errors import StorageError
from herald.raft import HardState
from herald.storage import DiskFaults, SimFileSystem, SimulatedCrash, WalLogStore
from herald.storage.wal import SegmentWriter

from .model import Model, check_recovered
from .scripts import DATA_DIR, SCRIPT, Sync, Write, apply_step, entries, load

SEGMENT_SIZE = 4096
FLUSH_BYTES = 700

VARIANTS = {
    "lose-all": (DiskFaults(torn_writes=False), True),
    "torn-in-order": (DiskFaults(torn_writes=True), False),
    "torn-misordered": (DiskFaults(torn_writes=True, misorder=1.0), False),
}


def open_store(fs: SimFileSystem) -> WalLogStore:
    # A small flush threshold sends records to the file before sync, so a
    # crash finds several unsynced appends to tear and misorder.
    return WalLogStore(fs, DATA_DIR, segment_size=SEGMENT_SIZE, flush_bytes=FLUSH_BYTES)


def run_script(fs: SimFileSystem, model: Model) -> WalLogStore | None:
    """Run the script; None if the armed crash struck."""
    try:
        store = open_store(fs)
        state = load(store)
        check_recovered(model, state, exact=True)
        for step in SCRIPT:
            apply_step(store, model, step)
    except SimulatedCrash:
        return None
    return store


def count_operations() -> int:
    fs = SimFileSystem(random.Random(0), DiskFaults(torn_writes=False))
    store = run_script(fs, Model())
    assert store is not None
    return fs.operations


def crash_and_recover(crash_at: int, variant: str, seed: int) -> None:
    faults, lose_all = VARIANTS[variant]
    fs = SimFileSystem(random.Random(seed), faults)
    fs.arm_crash(crash_at)
    model = Model()
    run_script(fs, model)
    fs.crash(lose_all=lose_all)

    store = open_store(fs)
    state = load(store)
    context = f"crash before operation {crash_at} ({variant}, seed {seed})"
    try:
        check_recovered(model, state)
    except AssertionError as error:
        raise AssertionError(f"{context}: {error} (report: {store.report})") from error
    model.after_recovery(state)

    # The recovered store keeps working: append after whatever survived.
    last = (
        state.entries[-1].index
        if state.entries
        else (state.snapshot.index if state.snapshot is not None else 0)
    )
    term = max(state.hard_state.term, 9)
    for step in (
        Write(HardState(term, 0, state.hard_state.commit), entries(last + 1, last + 3, term)),
        Sync(),
    ):
        apply_step(store, model, step)
    store.close()
    store = open_store(fs)
    check_recovered(model, load(store), exact=True)
    store.close()


OPERATIONS = count_operations()


def test_the_script_exercises_rollover_snapshots_and_compaction() -> None:
    fs = SimFileSystem(random.Random(0), DiskFaults(torn_writes=False))
    store = run_script(fs, Model())
    assert store is not None
    names = fs.list_dir(DATA_DIR)
    assert store._writer is not None
    assert store._writer.segments[0].seq >= 3  # rolled over, and old segments removed
    assert sum(name.startswith("snap-") for name in names) == 2
    assert OPERATIONS > 40


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_crash_at_every_operation(variant: str) -> None:
    for crash_at in range(1, OPERATIONS + 2):
        crash_and_recover(crash_at, variant, seed=crash_at)


def test_crash_at_every_operation_with_more_torn_offsets() -> None:
    for seed in range(4):
        for crash_at in range(1, OPERATIONS + 2):
            crash_and_recover(crash_at, "torn-misordered", seed=1000 * seed + crash_at)


# -- the checker catches a store that lies --------------------------------------------------


def test_checker_catches_a_sync_that_does_not_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted bug: the WAL's sync skips the fsync, so sync() reports durability it lacks."""

    def lying_sync(self: SegmentWriter) -> None:
        self._dirty = False
        self._directory_dirty = False

    monkeypatch.setattr(SegmentWriter, "sync", lying_sync)
    with pytest.raises(AssertionError, match="matches none"):
        for crash_at in range(1, OPERATIONS + 2):
            crash_and_recover(crash_at, "lose-all", seed=crash_at)


def test_checker_catches_a_disk_that_drops_synced_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted bug in the disk: fsync returns without making the data durable."""

    def no_fsync(self: SimFileSystem, path: str, number: int) -> None:
        self._tick()

    monkeypatch.setattr(SimFileSystem, "_fsync", no_fsync)
    # Either the checker sees the loss or recovery refuses what the lost data left.
    with pytest.raises((AssertionError, StorageError)):
        for crash_at in range(1, OPERATIONS + 2):
            crash_and_recover(crash_at, "lose-all", seed=crash_at)
