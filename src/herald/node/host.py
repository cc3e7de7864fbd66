"""The node host: drives one Raft core with durable storage, a transport and a state machine.

This is the code that turns the core's :class:`~herald.raft.Ready` into IO, in
the order the Ready contract demands. It is written once, against three small
ports, and used unchanged by the simulator (simulated network and disk) and by
the real runtime (sockets and files):

- :class:`LogStore`: the durable log. ``write`` may buffer; only ``sync`` makes
  what was written durable. ``load`` returns what survived the last crash.
- :class:`Transport`: ``send`` hands messages to the network (fire and forget).
- :class:`StateMachine`: applies committed entries, takes and restores snapshots.

Processing one Ready is split in two so a world can overlap the fsync with other
work and so a crash can strike between the write and the fsync::

    rd = host.begin()      # take the Ready, send what may go now, write (unsynced)
    host.sync(rd)          # fsync if needed (the real runtime runs this off-loop)
    host.finish(rd)        # send what waited for durability, apply, advance

A checkpoint (a restart point the state machine hands over as buffers) is
written beside that cycle: while ``host.wants_checkpoint_writes``, the world
calls ``host.write_checkpoint()`` when it likes -- the real runtime on a thread
of its own, beside the loop and the fsync; the simulator as events of their own
-- and the syncs start and keep it.

The host never reads a clock and never sleeps; the world decides when each
step happens.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from herald.raft import (
    Config,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    Raft,
    RawNode,
    ReadState,
    Ready,
    Snapshot,
    SnapshotMeta,
    Storage,
)

from .logview import LogView

__all__ = [
    "DurableState",
    "HostObserver",
    "LogStore",
    "NodeHost",
    "StateMachine",
    "Transport",
]


@dataclass(frozen=True, slots=True)
class DurableState:
    """What a node finds on stable storage when it starts."""

    hard_state: HardState
    #: Where the log starts: the snapshot Raft sends a follower that lags behind it.
    snapshot: Snapshot | None
    #: The entries after the snapshot's index up to this one are durable; the
    #: store reads them back (:meth:`LogStore.entries`).
    last_index: int
    # Set when the store was opened with an explicit repair flag and threw away a
    # damaged part of the log: entries from ``discarded_from_index`` on may have
    # been acknowledged before and are gone now, so this node must not vote (or
    # count towards any quorum) until a leader has brought it up to date again.
    repaired: bool = False
    discarded_from_index: int | None = None
    # Nonzero while the node must not vote: its log was cut back (repaired, or a
    # damaged last record that may have been acknowledged) when its term was
    # this. The store keeps it durably until ``mark_recovered`` (see
    # ``herald.raft.Config.recovering_term``).
    recovering_term: int = 0
    #: A newer state than the snapshot, at an index the log holds (None: the
    #: snapshot is the newest): what the state machine restores, so a restart
    #: replays only the entries after it.
    checkpoint: Snapshot | None = None


class LogStore(Protocol):
    """Durable storage of one node's Raft log, hard state and snapshot."""

    def load(self) -> DurableState:
        """Read back what is durable. Raises a StorageError if it cannot be trusted."""
        ...

    def term(self, index: int) -> int:
        """The term of a written entry (or of the snapshot's index)."""
        ...

    def entries(self, lo: int, hi: int, max_size: int) -> list[Entry]:
        """Written entries ``[lo, hi)``, at least one, within ``max_size`` bytes
        beyond the first (the Raft core's ``Storage.entries`` contract)."""
        ...

    def release(self, through: int) -> None:
        """Entries up to ``through`` will not be read again (a durable snapshot covers them)."""
        ...

    def write(
        self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None
    ) -> None:
        """Record a Ready's state; entries replace stored ones from the first index on.

        Nothing is promised durable until :meth:`sync` returns.
        """
        ...

    def sync(self) -> None:
        """Make everything written so far durable."""
        ...

    @property
    def checkpoint_wants_sync(self) -> bool:
        """The next :meth:`sync` has checkpoint work: start writing the checkpoint
        saved, or keep the one written whole (the host asks for a sync while it
        is idle until it is done)."""
        ...

    @property
    def checkpoint_wants_writes(self) -> bool:
        """:meth:`write_checkpoint` has more of a checkpoint to write."""
        ...

    def write_checkpoint(self) -> None:
        """Write the next slice of the checkpoint being written, durably; the last
        one publishes it. May run on a thread of its own, beside every other call
        (never two of these at once)."""
        ...

    def finish_checkpoint(self) -> None:
        """Write the checkpoint saved or being written whole and keep it, now."""
        ...

    def save_checkpoint_parts(
        self, meta: SnapshotMeta, state: Sequence[bytes | memoryview]
    ) -> None:
        """Keep a state taken at ``meta.index`` -- the buffers ``state``, joined --
        to restart from, durably by the next ``sync`` at the latest; the buffers
        stay unchanged until then. The log before it stays (the state may still
        read it), and only :meth:`promote` may make it where the log starts."""
        ...

    def promote(self, below: int) -> int:
        """The newest kept checkpoint below ``below`` becomes the snapshot the log
        starts at; returns its index (0: none qualifies)."""
        ...

    def read_snapshot(self, index: int) -> Snapshot:
        """The snapshot (or checkpoint) at ``index``, read back from where it is kept."""
        ...

    def mark_recovered(self) -> None:
        """The node caught up after a cut-back log: durably forget ``recovering_term``."""
        ...


class Transport(Protocol):
    def send(self, messages: Sequence[Message]) -> None:
        """Hand messages to the network; delivery is not guaranteed."""
        ...


class StateMachine(Protocol):
    def apply(self, entry: Entry) -> object:
        """Apply one committed NORMAL entry; returns a result for the proposer."""
        ...

    def snapshot(self) -> bytes:
        """Serialize the state as of the last applied entry."""
        ...

    def checkpoint(self) -> Sequence[bytes | memoryview]:
        """What :meth:`snapshot` returns, as buffers to write one after the other,
        valid until written whatever is applied meanwhile (a checkpoint: taken on
        the event loop, written by the fsync thread)."""
        ...

    def pin(self) -> int:
        """The lowest log index the state still reads (any index past the applied one
        if it reads none): the log keeps every entry from there on, and a snapshot
        Raft sends must lie below it, so every entry a follower needs follows it."""
        ...

    def restore(self, data: bytes, index: int) -> None:
        """Replace the state by a snapshot taken at ``index``."""
        ...


class HostObserver(Protocol):
    """Hooks for whoever watches the host: the simulator's checkers, metrics."""

    def on_persisted(self, node: int, entries: Sequence[Entry], storage: Storage) -> None: ...

    def on_applied(self, node: int, entry: Entry, result: object) -> None: ...

    def on_snapshot_installed(self, node: int, snapshot: Snapshot) -> None: ...

    def on_read_state(self, node: int, read_state: ReadState) -> None: ...


class _NullObserver:
    def on_persisted(self, node: int, entries: Sequence[Entry], storage: Storage) -> None:
        pass

    def on_applied(self, node: int, entry: Entry, result: object) -> None:
        pass

    def on_snapshot_installed(self, node: int, snapshot: Snapshot) -> None:
        pass

    def on_read_state(self, node: int, read_state: ReadState) -> None:
        pass


class NodeHost:
    """One Raft node wired to its ports. Not thread-safe; one world drives it."""

    def __init__(
        self,
        config: Config,
        log_store: LogStore,
        transport: Transport,
        state_machine: StateMachine,
        rng: random.Random,
        *,
        snapshot_entries: int = 1000,
        retain_entries: int = 100,
        checkpoint_bytes: int = 16 << 20,
        observer: HostObserver | None = None,
        raft_class: type[Raft] = Raft,
    ) -> None:
        self.id = config.id
        self.log_store = log_store
        self.transport = transport
        self.state_machine = state_machine
        self.observer: HostObserver = observer or _NullObserver()
        self.snapshot_entries = snapshot_entries
        self.checkpoint_bytes = checkpoint_bytes
        self.retain_entries = retain_entries
        self._applied_bytes = 0  # entry data applied since the last checkpoint
        self._checkpoint_size = 0  # bytes of the last checkpoint taken here
        self._applied_total = 0  # entry data applied since this host started
        self._base_total = 0  # _applied_total when the log's snapshot was taken (0: before)
        self._checkpoint_totals: dict[int, int] = {}  # of the checkpoints taken here
        #: Set when the state machine's pin keeps the newest checkpoint from becoming
        #: where the log starts: (that checkpoint's index, the bytes of log it would
        #: let go). The request core may then copy the few old messages forward.
        self.carry_hint: tuple[int, int] | None = None
        self.conf = ConfState(tuple(sorted(config.voters)))

        durable = log_store.load()
        self.storage = LogView(log_store, self.conf.voters, durable)
        applied = 0
        # The newest state kept: a checkpoint (ahead of where the log starts), or
        # the snapshot. Only the entries after it are replayed.
        newest = durable.checkpoint or durable.snapshot
        if newest is not None and not newest.is_empty():
            state_machine.restore(newest.data, newest.index)
            applied = newest.index
        #: The index of the newest checkpoint taken (or restored).
        self._checkpointed = applied
        hard_state = durable.hard_state
        if hard_state.commit < applied:
            # Commit-only hard-state writes are not fsynced (the Ready contract
            # allows it), but a durable snapshot only ever covers committed
            # entries, so the commit index is at least the snapshot's index.
            hard_state = replace(hard_state, commit=applied)
        self.storage.set_hard_state(hard_state)
        self.node = RawNode(
            replace(config, applied=applied, recovering_term=durable.recovering_term),
            self.storage,
            rng,
            raft_class,
        )
        #: The store keeps its recovering marker while this is nonzero (see
        #: ``_caught_up``). A core that ignores the marker (a single voter, which
        #: has nobody to catch up from) lets it go at the first ``finish``.
        self._recovering_term = durable.recovering_term
        self._marker_ignored = durable.recovering_term != 0 and not self.node.raft.recovering_term
        self._in_flight: Ready | None = None
        # What begin returns, when Raft has nothing to do, while a checkpoint is
        # still being written: a sync with nothing else in it, so the writing
        # goes on while the node is idle (it would wait for the next write, and
        # a restart in between replays the log since the checkpoint before).
        self._idle = Ready(None, None, (), (), None, (), (), (), True)

    @property
    def recovering_term(self) -> int:
        """The term of the store's recovering marker while the store keeps it (0: none)."""
        return self._recovering_term

    @property
    def marker_ignored(self) -> bool:
        """The core ignores the marker (a single voter): it goes at the first finish."""
        return self._marker_ignored

    # -- inputs -----------------------------------------------------------------------

    def tick(self) -> None:
        self.node.tick()

    def step(self, message: Message) -> None:
        self.node.step(message)

    def propose(self, data: bytes) -> tuple[int, int]:
        """Propose ``data``; returns (index, term). It committed iff the entry
        applied at that index has that term. Raises NotLeaderError."""
        index = self.node.propose(data)
        return index, self.node.raft.term

    def propose_many(self, payloads: list[bytes]) -> tuple[int, int]:
        """Propose a batch; returns (first index, term)."""
        index = self.node.propose_many(payloads)
        return index, self.node.raft.term

    # -- the Ready cycle --------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A Ready is between ``begin`` and ``finish``."""
        return self._in_flight is not None

    def has_ready(self) -> bool:
        return self._in_flight is None and self.node.has_ready()

    def begin(self, *, idle: bool = True) -> Ready | None:
        """Take the next Ready, send what may go at once, and write (unsynced).

        ``idle``: the node has been quiet for a while, so when Raft has nothing
        to do a checkpoint still being written gets a sync of its own (one that
        would otherwise hold up the next write's sync behind a slice of it)."""
        if self._in_flight is not None:
            return None
        if not self.node.has_ready():
            if not (idle and self.log_store.checkpoint_wants_sync):
                return None
            self._in_flight = self._idle
            return self._idle
        rd = self.node.ready()
        self._in_flight = rd
        if rd.messages:
            self.transport.send(rd.messages)
        if rd.hard_state is not None or rd.entries or rd.snapshot is not None:
            self.log_store.write(rd.hard_state, rd.entries, rd.snapshot)
        return rd

    def sync(self, rd: Ready) -> None:
        """Make ``rd``'s writes durable if the contract needs it. May run off-loop."""
        if rd.must_sync:
            self.log_store.sync()

    @property
    def wants_checkpoint_writes(self) -> bool:
        """:meth:`write_checkpoint` has work (the world calls it when it likes)."""
        return self.log_store.checkpoint_wants_writes

    def write_checkpoint(self) -> None:
        """Write the next slice of the checkpoint under way. Touches only its file
        and its buffers, so the real runtime runs it on a thread of its own beside
        everything else (a large checkpoint never holds up the log's syncs)."""
        self.log_store.write_checkpoint()

    def checkpoint_at_stop(self) -> None:
        """A clean stop: checkpoint what is applied and write it whole, so the next
        start restores it and replays nothing before it. Call with no Ready in
        flight, after the last sync."""
        applied = self.node.raft.log.applied
        if applied > self._checkpointed:
            meta = SnapshotMeta(index=applied, term=self.storage.term(applied), conf=self.conf)
            self.log_store.save_checkpoint_parts(meta, self.state_machine.checkpoint())
            self._checkpointed = applied
        self.log_store.finish_checkpoint()

    def finish(self, rd: Ready) -> None:
        """Everything of ``rd`` that had to wait for durability, then advance."""
        if rd is not self._in_flight:
            raise RuntimeError("finish() must be given the Ready begin() returned")
        if rd is self._idle:
            self._in_flight = None  # a sync for the checkpoint only: Raft gave nothing
            return
        storage = self.storage
        if rd.snapshot is not None:
            storage.apply_snapshot(rd.snapshot)
        if rd.entries:
            storage.append(rd.entries)
            self.observer.on_persisted(self.id, rd.entries, storage)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        if rd.persisted_messages:
            self.transport.send(rd.persisted_messages)
        if rd.snapshot is not None:
            self.state_machine.restore(rd.snapshot.data, rd.snapshot.index)
            self.observer.on_snapshot_installed(self.id, rd.snapshot)
        for entry in rd.committed_entries:
            result = self.state_machine.apply(entry) if entry.kind == EntryKind.NORMAL else None
            self._applied_bytes += len(entry.data)
            self._applied_total += len(entry.data)
            self.observer.on_applied(self.id, entry, result)
        for read_state in rd.read_states:
            self.observer.on_read_state(self.id, read_state)
        self._in_flight = None
        self.node.advance(rd)
        if rd.committed_entries:
            self._maybe_compact(rd.committed_entries[-1].index)
        if self._recovering_term and self._caught_up():
            self.log_store.mark_recovered()
            self._recovering_term = 0

    def _caught_up(self) -> bool:
        """The *durable* log holds an entry of a term after the recovering one.

        Only then may the marker go: the Raft core ends its recovery as soon as
        its log holds such an entry, durable or not, but an entry still in
        flight to the disk can be lost with a crash, and a node restarting with
        the cut-back log and no marker would vote as if it had caught up. The
        storage here holds what ``finish`` knows to be durable. A single voter
        has nobody to catch up from (see ``herald.raft.Raft``), so its core
        ignores the marker from the start.
        """
        if self._marker_ignored:
            return True
        storage = self.storage
        return storage.term(storage.last_index()) > self._recovering_term

    def process_all(self) -> None:
        """Run Ready cycles back to back until there is nothing left (synchronous worlds)."""
        while True:
            rd = self.begin()
            if rd is None:
                return
            self.sync(rd)
            if self.wants_checkpoint_writes:
                self.write_checkpoint()
            self.finish(rd)

    def _maybe_compact(self, applied: int) -> None:
        """Every ``snapshot_entries`` entries, checkpoint the state; then let the log
        start at the newest checkpoint below the state machine's pin.

        A checkpoint is a restart point: the log before it stays, because the state
        may still read it (a broker reads message bodies from the entries that
        published them). Only a checkpoint below the pin may become the snapshot
        Raft sends a lagging follower: everything the state reads is in the entries
        after it, which the follower receives as log entries.
        """
        storage = self.storage
        # A checkpoint is the whole state, so it is spaced by its own size too:
        # writing checkpoints never costs more than writing the log (at a million
        # retained messages one is 30 MiB; every 16 MiB of log, they were twice
        # the log's own writes). A crash restart replays at most that much log.
        spacing = max(self.checkpoint_bytes, self._checkpoint_size)
        if applied - self._checkpointed < self.snapshot_entries and self._applied_bytes < spacing:
            return
        self._applied_bytes = 0
        meta = SnapshotMeta(index=applied, term=storage.term(applied), conf=self.conf)
        parts = self.state_machine.checkpoint()
        self._checkpoint_size = sum(memoryview(part).nbytes for part in parts)
        # Durable before anything depends on it.
        self.log_store.save_checkpoint_parts(meta, parts)
        self._checkpointed = applied
        totals = self._checkpoint_totals
        totals[applied] = self._applied_total
        while len(totals) > 4:
            del totals[next(iter(totals))]
        pin = self.state_machine.pin()
        promoted = self.log_store.promote(pin)
        if promoted:
            storage.use_snapshot(promoted, self.conf)
            self._base_total = totals.get(promoted, self._base_total)
        self.carry_hint = (
            (applied, self._applied_total - self._base_total) if pin <= applied else None
        )
        base = storage.snapshot_meta.index
        storage.compact(max(storage.first_index() - 1, min(base, applied - self.retain_entries)))
