"""Each safety check of the simulator fires on a planted violation (Raft paper, Figure 3)."""

from __future__ import annotations

import random

import pytest

from herald.raft import (
    Config,
    Entry,
    EntryKind,
    MemoryStorage,
    Raft,
    ReadState,
    Role,
    Snapshot,
    SnapshotMeta,
)
from herald.sim.invariants import RaftChecker, SafetyViolation


def leader(node: int, term: int, entries: list[Entry], committed: int = 0) -> Raft:
    storage = MemoryStorage((1, 2, 3))
    storage.append(entries)
    raft = Raft(Config(id=node, voters=(1, 2, 3)), storage, random.Random(0))
    raft.term = term
    raft.role = Role.LEADER
    raft.log.committed = committed
    return raft


def test_election_safety_two_leaders_in_one_term() -> None:
    checker = RaftChecker()
    assert checker.observe(1, leader(1, 3, []))
    with pytest.raises(SafetyViolation, match="election safety"):
        checker.observe(2, leader(2, 3, []))


def test_same_leader_seen_twice_is_fine() -> None:
    checker = RaftChecker()
    raft = leader(1, 3, [])
    assert checker.observe(1, raft)
    assert not checker.observe(1, raft)


def test_log_matching_same_index_and_term_different_payload() -> None:
    checker = RaftChecker()
    storage = MemoryStorage()
    checker.on_persisted(1, [Entry(1, 1, b"a")], storage)
    with pytest.raises(SafetyViolation, match="log matching"):
        checker.on_persisted(2, [Entry(1, 1, b"b")], storage)


def test_log_matching_same_entry_different_predecessor() -> None:
    checker = RaftChecker()
    first = MemoryStorage()
    first.append([Entry(1, 1, b"x")])
    second = MemoryStorage()
    second.append([Entry(2, 1, b"y")])
    checker.on_persisted(1, [Entry(3, 2, b"z")], first)
    with pytest.raises(SafetyViolation, match="log matching"):
        checker.on_persisted(2, [Entry(3, 2, b"z")], second)


def test_leader_completeness_missing_committed_entry() -> None:
    checker = RaftChecker()
    entries = [Entry(1, 1, b"a"), Entry(2, 2, b"b")]
    old = leader(1, 2, entries, committed=2)
    checker.observe(1, old)
    checker.observe(1, old)  # records that term 2's leader committed index 2
    with pytest.raises(SafetyViolation, match="leader completeness"):
        checker.observe(2, leader(2, 3, [Entry(1, 1, b"a")]))


def test_leader_completeness_conflicting_committed_entry() -> None:
    checker = RaftChecker()
    old = leader(1, 2, [Entry(1, 1, b"a"), Entry(2, 2, b"b")], committed=2)
    checker.observe(1, old)
    checker.observe(1, old)
    with pytest.raises(SafetyViolation, match="leader completeness"):
        checker.observe(2, leader(2, 3, [Entry(1, 1, b"a"), Entry(1, 2, b"c")]))


def test_leader_of_an_older_term_need_not_hold_later_commits() -> None:
    """Completeness binds leaders of *later* terms only (a stale leader may lag)."""
    checker = RaftChecker()
    new = leader(1, 5, [Entry(1, 1, b"a"), Entry(5, 2, b"b")], committed=2)
    checker.observe(1, new)
    checker.observe(1, new)
    checker.observe(2, leader(2, 4, [Entry(1, 1, b"a")]))


def test_state_machine_safety_different_entries_applied_at_one_index() -> None:
    checker = RaftChecker()
    checker.on_applied(1, Entry(1, 1, b"a"), b"d1")
    with pytest.raises(SafetyViolation, match="state machine safety"):
        checker.on_applied(2, Entry(1, 1, b"b"), b"d1")


def test_state_machine_safety_applied_out_of_order() -> None:
    checker = RaftChecker()
    checker.on_applied(1, Entry(1, 1, b"a"), b"d1")
    with pytest.raises(SafetyViolation, match="right after"):
        checker.on_applied(1, Entry(1, 3, b"c"), b"d3")


def test_state_machine_safety_applied_twice() -> None:
    checker = RaftChecker()
    checker.on_applied(1, Entry(1, 1, b"a"), b"d1")
    with pytest.raises(SafetyViolation, match="right after"):
        checker.on_applied(1, Entry(1, 1, b"a"), b"d1")


def test_state_machine_safety_divergent_state() -> None:
    checker = RaftChecker()
    checker.on_applied(1, Entry(1, 1, b"a"), b"d1")
    with pytest.raises(SafetyViolation, match="differs"):
        checker.on_applied(2, Entry(1, 1, b"a"), b"other")


def test_snapshot_with_wrong_state_is_caught() -> None:
    checker = RaftChecker()
    checker.on_applied(1, Entry(1, 1, b"a"), b"d1")
    checker.on_applied(1, Entry(1, 2, b"b"), b"d2")
    snapshot = Snapshot(SnapshotMeta(index=2, term=1))
    with pytest.raises(SafetyViolation, match="snapshot install"):
        checker.on_snapshot_installed(2, snapshot, b"d1")


def test_snapshot_of_state_nobody_had_is_caught() -> None:
    checker = RaftChecker()
    with pytest.raises(SafetyViolation, match="no node ever applied"):
        checker.on_restart(1, 5, b"x")


def test_noop_entries_count_as_log_positions() -> None:
    checker = RaftChecker()
    checker.on_applied(1, Entry(1, 1, b"", EntryKind.NOOP), b"d0")
    checker.on_applied(2, Entry(1, 1, b"", EntryKind.NOOP), b"d0")
    assert checker.commit_index == 1


def test_stale_read_is_caught() -> None:
    checker = RaftChecker()
    checker.check_read(1, ReadState(5, b"r"), must_cover=5)
    with pytest.raises(SafetyViolation, match="linearizable read"):
        checker.check_read(1, ReadState(4, b"r"), must_cover=5)
