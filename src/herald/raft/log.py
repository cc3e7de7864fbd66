"""The Raft log as the core sees it: stable entries in storage, unstable ones in memory.

Entries enter the log unstable (appended by a leader or received from one) and
become stable when the host reports, through ``advance``, that it made them
durable. Only stable entries count towards the leader's own quorum vote and only
stable, committed entries are handed to the state machine.
"""

from __future__ import annotations

from herald.errors import CompactedError, InvariantError, UnavailableError

from .storage import Storage, limit_size
from .types import Entry, Snapshot

__all__ = ["RaftLog", "Unstable"]


class Unstable:
    """Entries and a snapshot the host has not yet made durable.

    Invariants:
    - ``entries[i].index == offset + i``;
    - if ``snapshot`` is set, ``offset == snapshot.index + 1`` until the first
      append after it, and the snapshot precedes every unstable entry;
    - everything below ``offset`` is in storage (or covered by its snapshot).
    """

    __slots__ = ("entries", "offset", "snapshot")

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset

    def maybe_first_index(self) -> int | None:
        if self.snapshot is not None:
            return self.snapshot.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.index
        return None

    def maybe_term(self, index: int) -> int | None:
        if index < self.offset:
            if self.snapshot is not None and self.snapshot.index == index:
                return self.snapshot.term
            return None
        position = index - self.offset
        if position >= len(self.entries):
            return None
        return self.entries[position].term

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` are durable, if ``index`` still has ``term``.

        A mismatch means a newer leader replaced the entries while they were
        being written; they stay unstable and are written again.
        """
        if self.maybe_term(index) == term and index >= self.offset:
            del self.entries[: index + 1 - self.offset]
            self.offset = index + 1

    def stable_snapshot_to(self, index: int) -> None:
        if self.snapshot is not None and self.snapshot.index == index:
            self.snapshot = None

    def restore(self, snapshot: Snapshot) -> None:
        self.offset = snapshot.index + 1
        self.entries = []
        self.snapshot = snapshot

    def truncate_and_append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        after = entries[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(entries)
        elif after <= self.offset:
            # Replacing entries storage already holds: they are stale from now on
            # and reads of them come from here until the host overwrites them.
            self.offset = after
            self.entries = list(entries)
        else:
            del self.entries[after - self.offset :]
            self.entries.extend(entries)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        return self.entries[lo - self.offset : hi - self.offset]


class RaftLog:
    """Storage plus unstable entries, with the commit and apply cursors.

    ``committed`` is the highest index known committed; ``applied`` the highest
    index the host reported applied. ``applied <= committed <= last_index()``.
    """

    __slots__ = ("applied", "committed", "max_apply_size", "storage", "unstable")

    def __init__(self, storage: Storage, max_apply_size: int) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        self.committed = first - 1
        self.applied = first - 1
        self.max_apply_size = max_apply_size

    # -- positions ----------------------------------------------------------------

    def first_index(self) -> int:
        index = self.unstable.maybe_first_index()
        return index if index is not None else self.storage.first_index()

    def last_index(self) -> int:
        index = self.unstable.maybe_last_index()
        return index if index is not None else self.storage.last_index()

    def stable_last_index(self) -> int:
        """The last index the host has made durable (0 while a snapshot is pending)."""
        if self.unstable.snapshot is not None:
            return 0
        return self.unstable.offset - 1

    def term(self, index: int) -> int:
        """The term of ``index``; raises Compacted/Unavailable outside the log."""
        term = self.unstable.maybe_term(index)
        if term is not None:
            return term
        dummy = self.first_index() - 1
        if index < dummy:
            raise CompactedError(f"index {index} compacted (first index {dummy + 1})")
        if index > self.last_index():
            raise UnavailableError(f"index {index} beyond last index {self.last_index()}")
        return self.storage.term(index)

    def term_or_zero(self, index: int) -> int:
        try:
            return self.term(index)
        except (CompactedError, UnavailableError):
            return 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, index: int, term: int) -> bool:
        # An index outside the log matches nothing, not even term 0.
        try:
            return self.term(index) == term
        except (CompactedError, UnavailableError):
            return False

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Section 5.4.1: a candidate's log is at least as up-to-date as ours."""
        our_term = self.last_term()
        return term > our_term or (term == our_term and last_index >= self.last_index())

    # -- appends --------------------------------------------------------------------

    def maybe_append(
        self, index: int, log_term: int, committed: int, entries: tuple[Entry, ...]
    ) -> int | None:
        """Figure 2, AppendEntries receiver: the last new index, or None on mismatch."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                raise InvariantError(
                    f"entry {conflict} conflicts with committed entry (committed {self.committed})"
                )
            self.append(entries[conflict - index - 1 :])
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> int:
        if not entries:
            return self.last_index()
        if entries[0].index - 1 < self.committed:
            raise InvariantError(
                f"append after {entries[0].index - 1} is below committed {self.committed}"
            )
        self.unstable.truncate_and_append(entries)
        return self.last_index()

    def find_conflict(self, entries: tuple[Entry, ...]) -> int:
        """The index of the first entry that is new or differs from ours; 0 if none."""
        last = self.last_index()
        for entry in entries:
            # Past our last index every entry is new: no need to look its term up.
            if entry.index > last or not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest ``i <= index`` whose term is ``<= term``, with that term.

        Used by both sides of the fast back-off (the Raft dissertation, section
        5.3's optimisation as etcd-raft implements it): a follower rejecting a probe
        names its last entry that could match; the leader skips its own log back to
        the same point, so one round trip skips a whole term's worth of entries.
        """
        while index > 0:
            try:
                our_term = self.term(index)
            except CompactedError:
                return index, 0
            except UnavailableError:
                index = self.last_index()
                continue
            if our_term <= term:
                return index, our_term
            index -= 1
        return 0, 0

    # -- commit and apply -----------------------------------------------------------

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index():
                raise InvariantError(
                    f"commit {index} beyond last index {self.last_index()}: log lost or corrupt"
                )
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """Section 5.4.2: only an entry of the leader's current term commits by counting."""
        if index > self.committed and self.term_or_zero(index) == term:
            self.commit_to(index)
            return True
        return False

    def applied_to(self, index: int) -> None:
        if index == 0:
            return
        if index > self.committed or index < self.applied:
            raise InvariantError(f"applied {index} outside [{self.applied}, {self.committed}]")
        self.applied = index

    def _apply_limit(self) -> int:
        return min(self.committed, self.stable_last_index())

    def has_next_committed_entries(self) -> bool:
        return self.unstable.snapshot is None and self._apply_limit() > self.applied

    def next_committed_entries(self) -> list[Entry]:
        """Committed, durable entries not yet applied, at most ``max_apply_size`` bytes."""
        if not self.has_next_committed_entries():
            return []
        lo = max(self.applied + 1, self.first_index())
        return self.slice(lo, self._apply_limit() + 1, self.max_apply_size)

    # -- reads ----------------------------------------------------------------------

    def entries_from(self, index: int, max_size: int) -> list[Entry]:
        if index > self.last_index():
            return []
        return self.slice(index, self.last_index() + 1, max_size)

    def slice(self, lo: int, hi: int, max_size: int) -> list[Entry]:
        """Entries ``[lo, hi)`` within ``max_size`` bytes (at least one)."""
        if lo < self.first_index():
            raise CompactedError(f"index {lo} compacted (first index {self.first_index()})")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"index {hi - 1} beyond last index {self.last_index()}")
        if lo >= hi:
            return []
        offset = self.unstable.offset
        if lo >= offset:
            return limit_size(self.unstable.slice(lo, hi), max_size)
        stored = self.storage.entries(lo, min(hi, offset), max_size)
        if hi <= offset or len(stored) < min(hi, offset) - lo:
            return stored
        return limit_size(stored + self.unstable.slice(offset, hi), max_size)

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def restore(self, snapshot: Snapshot) -> None:
        self.committed = snapshot.index
        self.unstable.restore(snapshot)

    def stable_to(self, index: int, term: int) -> None:
        self.unstable.stable_to(index, term)

    def stable_snapshot_to(self, index: int) -> None:
        self.unstable.stable_snapshot_to(index)
