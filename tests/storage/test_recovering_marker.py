"""A log that was cut back makes the node recover before it votes, durably.

One copy of a log cannot tell a torn last record from a synced one that a bit
flip or a lost write destroyed, so the store treats a complete-but-bad or
zero-filled tail, and any repair, as a possible loss of acknowledged entries:
``load`` reports the node's term in ``recovering_term`` and keeps a marker on
disk until the node reports it caught up (``mark_recovered``).
"""

from __future__ import annotations

import pytest

from herald.errors import CorruptHardStateError
from herald.raft import HardState
from herald.storage import SimFileSystem, SimulatedCrash
from herald.storage.fs import join
from herald.storage.logstore import RECOVERING_FILE

from .scripts import DATA_DIR, load
from .test_corruption import new_fs, open_store, populate, record_offsets, segments


def damage_last_record(fs: SimFileSystem) -> None:
    last_segment = segments(fs)[-1]
    fs.corrupt(last_segment, record_offsets(fs, last_segment)[-1] + 40)


def set_term(fs: SimFileSystem, term: int) -> None:
    store = open_store(fs)
    load(store)
    store.write(HardState(term, 1, 0), [], None)
    store.sync()
    store.close()


def test_clean_log_is_not_recovering() -> None:
    fs = new_fs()
    populate(fs)
    assert load(open_store(fs)).recovering_term == 0


def test_torn_write_inside_a_record_is_not_suspicious() -> None:
    fs = new_fs()
    populate(fs)
    last_segment = segments(fs)[-1]
    fs.truncate(last_segment, record_offsets(fs, last_segment)[-1] + 50)
    assert load(open_store(fs)).recovering_term == 0
    assert not fs.exists(join(DATA_DIR, RECOVERING_FILE))


@pytest.mark.parametrize("damage", ["checksum", "zeros", "length"])
def test_suspicious_tail_makes_the_node_recover(damage: str) -> None:
    fs = new_fs()
    populate(fs)
    set_term(fs, 4)
    if damage == "checksum":
        damage_last_record(fs)
    elif damage == "length":
        # A flipped bit makes the last record's length run past the end of the file:
        # it looks like a write torn short, but the record is whole (raft seed 769
        # lost an acknowledged entry this way).
        last_segment = segments(fs)[-1]
        fs.corrupt(last_segment, record_offsets(fs, last_segment)[-1] + 5, 0x10)
    else:
        last_segment = segments(fs)[-1]
        fs.overwrite(last_segment, len(fs.media(last_segment)), bytes(512))
    store = open_store(fs)
    assert load(store).recovering_term == 4
    store.close()
    # The marker survives a restart even though the log now looks clean...
    store = open_store(fs)
    assert load(store).recovering_term == 4
    # ...until the node reports it caught up.
    store.mark_recovered()
    store.close()
    assert not fs.exists(join(DATA_DIR, RECOVERING_FILE))
    assert load(open_store(fs)).recovering_term == 0


def test_marker_survives_power_loss_right_after_load() -> None:
    fs = new_fs()
    populate(fs)
    set_term(fs, 2)
    damage_last_record(fs)
    assert load(open_store(fs)).recovering_term == 2
    fs.crash()
    assert load(open_store(fs)).recovering_term == 2


def test_repair_makes_the_node_recover() -> None:
    fs = new_fs()
    populate(fs)
    set_term(fs, 3)
    first_segment = segments(fs)[0]
    fs.corrupt(first_segment, record_offsets(fs, first_segment)[1] + 40)
    state = load(open_store(fs, repair=True))
    assert state.repaired
    assert state.recovering_term == 3


def test_later_damage_raises_the_marker_term() -> None:
    fs = new_fs()
    populate(fs)
    set_term(fs, 2)
    damage_last_record(fs)
    store = open_store(fs)
    assert load(store).recovering_term == 2
    store.write(HardState(6, 0, 0), [], None)
    store.sync()
    store.close()
    damage_last_record(fs)
    assert load(open_store(fs)).recovering_term == 6


def load_and_close(fs: SimFileSystem, **options: object) -> int:
    store = open_store(fs, **options)
    term = load(store).recovering_term
    store.close()
    return term


def test_damaged_marker_is_refused_then_repaired_conservatively() -> None:
    fs = new_fs()
    populate(fs)
    set_term(fs, 2)
    damage_last_record(fs)
    assert load_and_close(fs) == 2
    set_term(fs, 5)
    fs.corrupt(join(DATA_DIR, RECOVERING_FILE), 3)
    with pytest.raises(CorruptHardStateError, match=RECOVERING_FILE):
        load(open_store(fs))
    # The refusal left the directory unlocked; repair uses the current term,
    # which is never earlier than the one the marker held.
    assert load_and_close(fs, repair=True) == 5
    assert load_and_close(fs) == 5


@pytest.mark.parametrize("repair", [False, True])
def test_crash_at_every_step_of_a_cut_back_never_hides_it(repair: bool) -> None:
    """Marker first, then the cut: a power loss at any file operation of the
    recovering load leaves either the damage or the marker behind."""
    crash_point = 1
    while True:
        fs = new_fs()
        populate(fs)
        set_term(fs, 3)
        if repair:
            first_segment = segments(fs)[0]
            fs.corrupt(first_segment, record_offsets(fs, first_segment)[1] + 40)
        else:
            damage_last_record(fs)
        fs.arm_crash(crash_point)
        try:
            term = load_and_close(fs, repair=repair)
        except SimulatedCrash:
            fs.crash()
            assert load_and_close(fs, repair=repair) == 3, f"crash at operation {crash_point}"
            crash_point += 1
            continue
        fs.arm_crash(None)
        assert term == 3
        break
    assert crash_point > 3  # the loop really crashed inside the marker write and the cut
