"""Raft's safety properties, checked on every event of a simulated run.

The properties of the Raft paper's Figure 3, each checked where it can first fail:

- Election Safety: at most one leader per term (checked whenever a node is seen
  as leader).
- Log Matching: if two logs hold an entry with the same index and term, the
  entries and all entries before them are identical (checked when a node makes
  an entry durable: same (index, term) must mean same payload and same
  preceding term, which by induction covers the whole prefix).
- Leader Completeness: a leader of term T holds every entry committed in a term
  before T (checked when a node is first seen leading a term). "Committed in
  term t" means a leader of term t counted it committed, which can be long after
  the term that created it: the checker records, per term, the highest commit
  index its leader reached.
- State Machine Safety: no two nodes apply different entries at one index, and
  each node applies every index exactly once per incarnation, in order; a
  snapshot installed at index i carries the state every other node had at i.

Committed entries are learned from applies: an entry applied anywhere is
committed, so the checker needs no oracle beyond what nodes actually do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from herald.errors import CompactedError
from herald.raft import Entry, EntryKind, Raft, ReadState, Role, Snapshot, Storage

__all__ = ["RaftChecker", "SafetyViolation"]


class SafetyViolation(Exception):  # noqa: N818 - it is a finding, not an error of ours
    """A safety property failed; ``rule`` names it."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule = rule
        self.detail = detail


@dataclass(slots=True)
class _Applied:
    index: int = 0
    digest: bytes = b""


class RaftChecker:
    """Watches every node of a run; raises :class:`SafetyViolation` on the first breach."""

    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}
        # Log Matching: (index, term) -> (kind, payload, term of the entry before).
        self._entries: dict[tuple[int, int], tuple[EntryKind, bytes, int]] = {}
        # State Machine Safety: the committed log, learned from applies.
        # Position i holds entry i's term; 0 is a sentinel.
        self.committed_terms: list[int] = [0]
        self._committed_entries: list[tuple[EntryKind, bytes]] = [(EntryKind.NOOP, b"")]
        self._digests: list[bytes] = [b""]
        self._applied: dict[int, _Applied] = {}
        # Leader Completeness: term -> (highest index its leader committed, that entry's term).
        self._commits: dict[int, tuple[int, int]] = {}

    # -- Election Safety and Leader Completeness ---------------------------------------

    def observe(self, node: int, raft: Raft) -> bool:
        """Call after every event that may have changed ``raft``'s role.

        Returns True when ``node`` is seen leading its term for the first time.
        """
        if raft.role != Role.LEADER:
            return False
        term = raft.term
        known = self.leaders.get(term)
        if known == node:
            committed = raft.log.committed
            if committed > self._commits.get(term, (0, 0))[0]:
                self._commits[term] = (committed, raft.log.term(committed))
            return False
        if known is not None:
            raise SafetyViolation(
                "election safety", f"nodes {known} and {node} both lead term {term}"
            )
        self.leaders[term] = node
        self._check_leader_completeness(node, raft)
        return True

    def _check_leader_completeness(self, node: int, raft: Raft) -> None:
        # Log Matching (checked separately) makes holding the last entry committed
        # in an earlier term enough to hold every entry before it too.
        last, last_term = 0, 0
        for term, (index, entry_term) in self._commits.items():
            if term < raft.term and index > last:
                last, last_term = index, entry_term
        if last == 0:
            return
        log = raft.log
        if log.last_index() < last:
            raise SafetyViolation(
                "leader completeness",
                f"node {node} leads term {raft.term} with last index {log.last_index()} "
                f"but entry {last} (term {last_term}) was committed in an earlier term",
            )
        try:
            term = log.term(last)
        except CompactedError:
            return  # inside the leader's snapshot, whose state was checked on install
        if term != last_term:
            raise SafetyViolation(
                "leader completeness",
                f"node {node} leads term {raft.term} with entry {last} of term {term}, "
                f"but entry {last} of term {last_term} was committed in an earlier term",
            )

    # -- Log Matching ------------------------------------------------------------------

    def on_persisted(self, node: int, entries: Sequence[Entry], storage: Storage) -> None:
        known = self._entries
        for entry in entries:
            previous_term = storage.term(entry.index - 1)
            record = (entry.kind, entry.data, previous_term)
            existing = known.setdefault((entry.index, entry.term), record)
            if existing != record:
                raise SafetyViolation(
                    "log matching",
                    f"node {node} holds entry {entry.index} of term {entry.term} as "
                    f"{record!r}, another node as {existing!r}",
                )

    # -- State Machine Safety -------------------------------------------------------------

    def on_restart(self, node: int, snapshot_index: int, digest: bytes) -> None:
        self._applied[node] = _Applied(snapshot_index, digest)
        if snapshot_index:
            self._check_digest(node, snapshot_index, digest, "restart from snapshot")

    def on_applied(self, node: int, entry: Entry, digest: bytes) -> None:
        state = self._applied.setdefault(node, _Applied())
        if entry.index != state.index + 1:
            raise SafetyViolation(
                "state machine safety",
                f"node {node} applied entry {entry.index} right after {state.index}",
            )
        state.index = entry.index
        state.digest = digest
        terms = self.committed_terms
        if entry.index == len(terms):
            terms.append(entry.term)
            self._committed_entries.append((entry.kind, entry.data))
            self._digests.append(digest)
            return
        if entry.index > len(terms):
            raise SafetyViolation(
                "state machine safety",
                f"node {node} applied entry {entry.index} but no node applied "
                f"{len(terms)} before it",
            )
        if terms[entry.index] != entry.term or self._committed_entries[entry.index] != (
            entry.kind,
            entry.data,
        ):
            raise SafetyViolation(
                "state machine safety",
                f"node {node} applied entry {entry.index} (term {entry.term}, "
                f"{entry.data!r}); another node applied (term {terms[entry.index]}, "
                f"{self._committed_entries[entry.index][1]!r}) there",
            )
        self._check_digest(node, entry.index, digest, "apply")

    def on_snapshot_installed(self, node: int, snapshot: Snapshot, digest: bytes) -> None:
        state = self._applied.setdefault(node, _Applied())
        if snapshot.index <= state.index:
            raise SafetyViolation(
                "state machine safety",
                f"node {node} installed snapshot {snapshot.index} over applied {state.index}",
            )
        state.index = snapshot.index
        state.digest = digest
        self._check_digest(node, snapshot.index, digest, "snapshot install")

    def _check_digest(self, node: int, index: int, digest: bytes, how: str) -> None:
        if index >= len(self._digests):
            raise SafetyViolation(
                "state machine safety",
                f"node {node} has state at {index} ({how}) no node ever applied",
            )
        if self._digests[index] != digest:
            raise SafetyViolation(
                "state machine safety",
                f"node {node}'s state at {index} ({how}) differs from the state "
                f"other nodes had there",
            )

    # -- queries ------------------------------------------------------------------------

    @property
    def commit_index(self) -> int:
        return len(self.committed_terms) - 1

    def committed_entry(self, index: int) -> tuple[int, bytes]:
        return self.committed_terms[index], self._committed_entries[index][1]

    def applied_index(self, node: int) -> int:
        state = self._applied.get(node)
        return state.index if state is not None else 0

    def check_read(self, node: int, read_state: ReadState, must_cover: int) -> None:
        """A linearizable read must see every write acknowledged before it began."""
        if read_state.index < must_cover:
            raise SafetyViolation(
                "linearizable read",
                f"node {node} answered read {read_state.context!r} at index "
                f"{read_state.index}, but entry {must_cover} was acknowledged "
                f"before the read began",
            )
