"""RaftLog, Unstable and MemoryStorage against a plain list model (hypothesis).

The model is the log as the core must see it (a list of entries from index 1), the
index up to which the host made it durable, the commit and apply cursors, and the
index storage compacted to. Operations are those the core and the host perform:
a leader's append (with truncation), a follower's AppendEntries (Figure 2, receiver
steps 2-5), persisting a prefix of the unstable entries, a stale stable_to, commit,
apply, compaction, and the fast back-off lookup.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from herald.errors import CompactedError, InvariantError, UnavailableError
from herald.raft import ConfState, Entry, MemoryStorage
from herald.raft.log import RaftLog

BIG = 1 << 30


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.storage = MemoryStorage((1,))
        self.log = RaftLog(self.storage, BIG)
        self.model: list[Entry] = []
        self.stable = 0
        self.committed = 0
        self.applied = 0
        self.compacted = 0
        self.serial = 0

    # -- helpers ------------------------------------------------------------------------

    def model_term(self, index: int) -> int:
        if index == 0:
            return 0
        if index == self.compacted:
            return self.storage.term(index)
        return self.model[index - 1].term

    def new_entries(
        self, start: int, increments: list[int], base: int | None = None
    ) -> list[Entry]:
        term = max(self.model_term(start - 1) if base is None else base, 1)
        entries = []
        for offset, step in enumerate(increments):
            term += step
            self.serial += 1
            # Payload sizes vary so that size-limited slices end at varied places.
            payload = b"%d:" % self.serial + b"x" * (self.serial * 7 % 40)
            entries.append(Entry(term, start + offset, payload))
        return entries

    def limited(self, lo: int, max_size: int) -> list[Entry]:
        """The model's entries from ``lo`` within ``max_size`` bytes, at least one."""
        taken: list[Entry] = []
        total = 0
        for entry in self.model[lo - 1 :]:
            total += entry.size()
            if taken and total > max_size:
                break
            taken.append(entry)
        return taken

    def replace_from(self, entries: list[Entry]) -> None:
        first = entries[0].index
        self.model = self.model[: first - 1] + entries
        self.stable = min(self.stable, first - 1)

    # -- operations ------------------------------------------------------------------------

    @rule(data=st.data(), increments=st.lists(st.integers(0, 1), min_size=1, max_size=5))
    def leader_style_append(self, data: st.DataObject, increments: list[int]) -> None:
        start = data.draw(st.integers(self.committed + 1, len(self.model) + 1), label="start")
        entries = self.new_entries(start, increments)
        assert self.log.append(entries) == entries[-1].index
        self.replace_from(entries)

    @rule(data=st.data(), increments=st.lists(st.integers(0, 1), max_size=5))
    def follower_append(self, data: st.DataObject, increments: list[int]) -> None:
        """Figure 2, AppendEntries receiver steps 2-5, from a leader that agrees with
        every committed entry (prev at or after the commit index)."""
        prev = data.draw(st.integers(self.committed, len(self.model) + 1), label="prev")
        prev_term = data.draw(
            st.sampled_from([self.model_term(min(prev, len(self.model))), 1, 7]), label="lt"
        )
        leader_commit = data.draw(st.integers(0, prev + len(increments) + 2), label="commit")
        entries = self.new_entries(prev + 1, increments, base=prev_term)
        matches = prev <= len(self.model) and self.model_term(prev) == prev_term
        result = self.log.maybe_append(prev, prev_term, leader_commit, tuple(entries))
        if not matches:
            assert result is None
            return
        last_new = prev + len(entries)
        assert result == last_new
        for entry in entries:
            if entry.index > len(self.model) or self.model[entry.index - 1].term != entry.term:
                self.replace_from(entries[entry.index - prev - 1 :])
                break
        self.committed = max(self.committed, min(leader_commit, last_new))

    @precondition(lambda self: self.stable < len(self.model))
    @rule(data=st.data())
    def persist_prefix(self, data: st.DataObject) -> None:
        unstable = self.log.unstable.entries
        count = data.draw(st.integers(1, len(unstable)), label="count")
        written = unstable[:count]
        self.storage.append(written)
        self.log.stable_to(written[-1].index, written[-1].term)
        self.stable = written[-1].index

    @precondition(lambda self: self.stable < len(self.model))
    @rule(data=st.data())
    def stale_stable_to(self, data: st.DataObject) -> None:
        """A write finished for entries a newer append replaced: nothing becomes stable."""
        index = data.draw(st.integers(self.stable + 1, len(self.model)), label="index")
        self.log.stable_to(index, self.model_term(index) + 1)

    @precondition(lambda self: self.committed < len(self.model))
    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(self.committed + 1, len(self.model)), label="commit")
        self.log.commit_to(index)
        self.committed = index

    @rule()
    def commit_beyond_log_is_refused(self) -> None:
        with pytest.raises(InvariantError):
            self.log.commit_to(len(self.model) + 1)

    @rule()
    def append_below_commit_is_refused(self) -> None:
        if self.committed:
            with pytest.raises(InvariantError):
                self.log.append([Entry(99, self.committed)])

    @rule()
    def apply(self) -> None:
        expected = self.model[self.applied : min(self.committed, self.stable)]
        got = self.log.next_committed_entries()
        assert got == expected
        assert self.log.has_next_committed_entries() == bool(expected)
        if got:
            self.log.applied_to(got[-1].index)
            self.applied = got[-1].index

    @precondition(lambda self: self.applied > self.compacted)
    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(self.compacted + 1, self.applied), label="compact")
        self.storage.create_snapshot(index, ConfState((1,)), b"")
        self.storage.compact(index)
        self.compacted = index

    @rule(data=st.data())
    def find_conflict_by_term(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.model) + 3), label="index")
        term = data.draw(st.integers(0, 8), label="term")
        expected = (0, 0)
        i = min(index, len(self.model))
        while i > 0:
            if i < self.compacted:
                expected = (i, 0)
                break
            if self.model_term(i) <= term:
                expected = (i, self.model_term(i))
                break
            i -= 1
        assert self.log.find_conflict_by_term(index, term) == expected

    @rule(index=st.integers(0, 40), term=st.integers(0, 8))
    def is_up_to_date(self, index: int, term: int) -> None:
        last_term = self.model_term(len(self.model))
        expected = term > last_term or (term == last_term and index >= len(self.model))
        assert self.log.is_up_to_date(index, term) == expected

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def positions(self) -> None:
        log = self.log
        assert log.last_index() == len(self.model)
        assert log.first_index() == self.compacted + 1
        assert log.stable_last_index() == self.stable
        assert log.committed == self.committed
        assert log.applied == self.applied
        assert log.last_term() == self.model_term(len(self.model))

    @invariant()
    def terms_and_slices(self) -> None:
        log = self.log
        for index in range(self.compacted, len(self.model) + 1):
            assert log.term(index) == self.model_term(index)
        if self.compacted:
            with pytest.raises(CompactedError):
                log.term(self.compacted - 1)
            with pytest.raises(CompactedError):
                log.slice(self.compacted, len(self.model) + 1, BIG)
        with pytest.raises(UnavailableError):
            log.term(len(self.model) + 1)
        assert log.term_or_zero(len(self.model) + 1) == 0
        first = self.compacted + 1
        for lo in range(first, len(self.model) + 2):
            hi = min(lo + 3, len(self.model) + 1)
            assert log.slice(lo, hi, BIG) == self.model[lo - 1 : hi - 1]
        for lo in range(first, len(self.model) + 1):
            for max_size in (0, 60, 150):
                assert log.slice(lo, len(self.model) + 1, max_size) == self.limited(lo, max_size)

    @invariant()
    def storage_holds_the_stable_prefix(self) -> None:
        assert self.log.unstable.entries == self.model[self.stable :]
        assert self.log.unstable.offset == self.stable + 1
        assert self.storage.first_index() == self.compacted + 1
        if self.stable > self.compacted:
            stored = self.storage.entries(self.compacted + 1, self.stable + 1, BIG)
            assert stored == self.model[self.compacted : self.stable]


TestLogModel = LogMachine.TestCase
TestLogModel.settings = settings(
    max_examples=150,
    stateful_step_count=30,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
