"""The node server: one process, one Raft node, the broker, clients and peers on one port.

The Ready loop
--------------

Every input -- a client frame, a peer frame, a tick, a finished fsync -- only
changes the core's memory and *kicks* the loop (one ``call_soon``). The kicked
:meth:`NodeServer._pump` then:

1. proposes the writes collected since the last pump as ONE ``Batch`` entry
   (and issues one read-index for the reads collected);
2. takes a Ready: ``host.begin()`` sends the messages that may leave at once
   (a leader's appends go to the followers now, while its own fsync runs) and
   buffers the writes;
3. if the Ready must be durable, runs ``host.sync`` in the single fsync thread
   and returns. Meanwhile the loop keeps reading sockets, stepping messages
   and collecting requests; they pile up in the core and in the next batch.
   When the fsync returns, ``host.finish`` (on the loop thread) sends what
   waited for durability, applies committed entries and answers their
   requests, and the pump runs again with everything that arrived meanwhile:
   one entry, one write, one fsync for all of it (group commit);
4. writes every connection's replies, one ``transport.write`` each.

The log store is touched only by ``begin``/``finish`` on the loop thread and
``sync`` on the fsync thread, never two at once: no ``begin`` runs while a
sync is in flight.

Requests
--------

Writes become broker commands stamped with this leader's clock; the entry's
index and term are remembered with one reply slot per command. When the entry
at that index applies with that term, each slot gets its command's result;
with another term the proposal was lost (:class:`ProposalLostError`). A leader
that steps down answers what it had in flight with
:class:`OutcomeUnknownError`. Reads wait for a read-index round and for the
node to apply up to the index it returns. ``Status`` is answered at once by
any node; everything else, on a follower, is a ``NotLeaderError`` with the
leader's address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeAlias

from herald.broker import (
    Batch,
    BatchResult,
    Broker,
    Command,
    Deliveries,
    Left,
    Nacked,
    Receipt,
    Redriven,
    Tick,
    encode,
    encode_batch,
)
from herald.errors import (
    BrokerError,
    HeraldError,
    InvalidCommandError,
    InvariantError,
    NotLeaderError,
    OutcomeUnknownError,
    OverloadedError,
    ProposalDroppedError,
    ProposalLostError,
    RequestTimeoutError,
    ShuttingDownError,
    WrongGroupError,
)
from herald.node.host import NodeHost
from herald.raft import (
    Config,
    Entry,
    EntryKind,
    MemoryStorage,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SoftState,
)
from herald.storage import FileSystem, OsFileSystem, WalLogStore
from herald.storage.volatile import VolatileFileSystem
from herald.wire import protocol as w
from herald.wire.protocol import PROTOCOL_VERSION, ErrorInfo, Reply

from .config import NodeConfig, parse_address
from .connection import Connection
from herald.node.convert import (
    WRITE_REQUESTS,
    command_for,
    dead_letter_wire,
    error_info,
    reply_value,
)
from .peers import PeerTransport

__all__ = ["NodeServer"]

log = logging.getLogger("herald.runtime")

#: One request awaiting its command's result: the connection, the request, and
#: for a long-polling Deliver its deadline on the loop's clock (else 0.0).
Slot: TypeAlias = tuple[Connection, Any, float]
_Handler: TypeAlias = Callable[[Connection, Any, int], None]


@dataclass(slots=True)
class _Proposal:
    term: int
    size: int
    time: int  # the Batch command's own timestamp
    commands: list[Command]  # what the entry encodes, as built (see NodeServer.apply)
    slots: list[Slot | None]  # None: a command nobody waits for (the broker Tick)


def _now_us() -> int:
    return time.time_ns() // 1000


class NodeServer:
    """One node: the NodeHost with the broker, the listener, the peer links, the timers.

    Construct it (opens and recovers the data directory: raises StorageError
    subclasses when storage refuses), then ``await start()`` inside a running
    loop, and ``await stop()`` to shut down gracefully. Not thread-safe: the
    loop thread owns it, apart from the fsync thread's ``host.sync``.
    """

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.node_id = config.node_id
        self.broker = Broker()
        self.connections: set[Connection] = set()
        self.transport = PeerTransport(self)
        raft_config = Config(
            id=config.node_id,
            voters=config.voters,
            election_tick=config.election_tick,
            election_tick_max=config.election_tick_max,
            heartbeat_tick=config.heartbeat_tick,
            pre_vote=True,
            check_quorum=True,
            max_size_per_msg=1 << 20,
            max_inflight_msgs=256,
        )
        fs: FileSystem = VolatileFileSystem() if config.volatile_storage else OsFileSystem()
        self.store = WalLogStore(fs, config.data_dir, repair=config.repair)
        try:
            self.host = NodeHost(
                raft_config,
                self.store,
                self.transport,
                self,
                random.Random(),
                snapshot_entries=config.snapshot_entries,
                retain_entries=config.retain_entries,
                observer=self,
            )
        except BaseException:
            self.store.close()
            raise
        self.raft = self.host.node.raft
        self.applied = self.raft.log.applied
        # Writes collected since the last proposal: encoded commands and their slots.
        self._batch: list[bytes] = []
        self._batch_commands: list[Command] = []
        self._batch_slots: list[Slot | None] = []
        self._batch_bytes = 0
        self._proposals: dict[int, _Proposal] = {}
        self._uncommitted = 0
        # Reads: collected, waiting for their read-index, waiting to be applied.
        self._reads: list[tuple[Connection, Any]] = []
        self._read_prefix = os.urandom(8)
        self._read_seq = 0
        self._reads_pending: dict[bytes, tuple[float, list[tuple[Connection, Any]]]] = {}
        self._reads_ready: list[tuple[int, list[tuple[Connection, Any]]]] = []
        # Long-polling delivers whose Deliver found nothing: queue -> group -> slots.
        self._parked: dict[str, dict[str, deque[Slot]]] = {}
        self._parked_count = 0
        self._next_poll_expiry = float("inf")
        self._wake: dict[str, int] = {}
        self._dirty: list[Connection] = []
        self._kicked = False
        self._syncing = False
        self._stopping = False
        self._closed = False
        self._role = self.raft.role
        self._orphaned_since = 0.0  # when this node last stopped leading
        self._not_leader_info: tuple[int, ErrorInfo] | None = None
        self._handlers: dict[type, _Handler] = dict.fromkeys(WRITE_REQUESTS, self._on_write)
        self._handlers.update(
            {
                w.ListQueues: self._on_read,
                w.Stats: self._on_read,
                w.DeadLetters: self._on_read,
                w.Status: self._on_status,
            }
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: asyncio.Server | None = None
        self._fsync_pool: ThreadPoolExecutor | None = None
        self._sync_future: asyncio.Future[None] | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self.failed: asyncio.Future[BaseException] | None = None
        self.stats = {"entries_proposed": 0, "commands_proposed": 0, "syncs": 0}

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Listen, dial the peers, start the timers. Raises OSError if the port is taken."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.failed = loop.create_future()
        self._fsync_pool = ThreadPoolExecutor(1, thread_name_prefix="herald-fsync")
        host, port = parse_address(self.config.listen_address)
        self._listener = await loop.create_server(
            lambda: Connection(self), host, port, reuse_address=True, backlog=1024
        )
        self.transport.start()
        self._timers = [
            loop.call_later(self.config.tick_interval, self._on_tick),
            loop.call_later(self.config.broker_tick_interval, self._on_broker_tick),
        ]
        self._kick()

    @property
    def address(self) -> tuple[str, int]:
        """The address actually bound (useful with port 0)."""
        assert self._listener is not None and self._listener.sockets
        name = self._listener.sockets[0].getsockname()
        return name[0], name[1]

    async def stop(self) -> None:
        """Graceful shutdown: stop accepting, hand over leadership, let what is in
        flight apply (briefly), fail the rest, make the log durable, close it."""
        if self._stopping or self._loop is None:
            return
        self._stopping = True
        loop = self._loop
        config = self.config
        if self._listener is not None:
            self._listener.close()
        self._fail_batch(ShuttingDownError("the node is shutting down"))
        if self._is_leader() and config.transfer_on_shutdown and len(config.voters) > 1:
            await self._hand_over_leadership()
        deadline = loop.time() + config.shutdown_grace
        while self._proposals and loop.time() < deadline and not self._closed:
            await asyncio.sleep(0.005)
        self._fail_in_flight(OutcomeUnknownError("the node shut down before the command committed"))
        self._fail_reads(error_info(ShuttingDownError(f"node {self.node_id} is shutting down")))
        self._answer_parked_empty()
        self._flush_output()
        await self._close()

    async def _hand_over_leadership(self) -> None:
        assert self._loop is not None
        progress = self.host.node.status().progress
        followers = [(match, node) for node, match in progress if node != self.node_id]
        if not followers:
            return
        _, target = max(followers)
        log.info("handing leadership to node %d before shutting down", target)
        try:
            self.host.node.transfer_leader(target)
        except NotLeaderError:
            return
        self._kick()
        ticks = self.config.election_tick_max * 2
        deadline = self._loop.time() + ticks * self.config.tick_interval
        while self._is_leader() and self._loop.time() < deadline and not self._closed:
            await asyncio.sleep(0.005)

    async def _close(self) -> None:
        """Stop everything; make the log durable and release it."""
        if self._closed:
            return
        # From here on the pump does nothing: no new Ready begins, and a sync in
        # flight is only waited for (its Ready is durable, never finished).
        self._closed = True
        for timer in self._timers:
            timer.cancel()
        for connection in list(self.connections):
            connection.flush()
            connection.close()
        await self.transport.close()
        sync = self._sync_future
        if sync is not None:
            with contextlib.suppress(Exception):
                await sync
        failed = self.failed is not None and self.failed.done()
        try:
            if not failed:
                # Commit-index records are written without an fsync; make them durable.
                self.store.sync()
        finally:
            self.store.close()
            if self._fsync_pool is not None:
                self._fsync_pool.shutdown(wait=True)
        if self._listener is not None:
            await self._listener.wait_closed()

    async def abort(self) -> None:
        """Stop without the courtesies (after a fatal error): close, no final sync."""
        self._stopping = True
        if self._listener is not None:
            self._listener.close()
        await self._close()

    def _fatal(self, error: BaseException) -> None:
        """Storage failed (or a core invariant broke): stop serving at once."""
        log.critical("fatal: %s: %s", type(error).__name__, error, exc_info=error)
        self._stopping = True
        if self.failed is not None and not self.failed.done():
            self.failed.set_result(error)

    # -- the Ready loop -----------------------------------------------------------------

    def _kick(self) -> None:
        if not self._kicked and self._loop is not None:
            self._kicked = True
            self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        self._kicked = False
        if self._closed or (self.failed is not None and self.failed.done()):
            return
        try:
            if not self._syncing:
                if self._batch:
                    self._propose_batch()
                if self._reads:
                    self._issue_reads()
                host = self.host
                while True:
                    rd = host.begin()
                    if rd is None:
                        break
                    if rd.must_sync:
                        self._start_sync(rd)
                        break
                    self._finish(rd)
            self._flush_output()
        except Exception as error:
            self._fatal(error)

    def _start_sync(self, rd: Ready) -> None:
        assert self._loop is not None and self._fsync_pool is not None
        self._syncing = True
        future = self._loop.run_in_executor(self._fsync_pool, self.host.sync, rd)
        self._sync_future = future
        future.add_done_callback(lambda done: self._synced(rd, done))

    def _synced(self, rd: Ready, future: asyncio.Future[None]) -> None:
        self._syncing = False
        self._sync_future = None
        self.stats["syncs"] += 1
        if self._closed:
            return
        error = future.exception()
        if error is not None:
            self._fatal(error)
            return
        try:
            self._finish(rd)
        except Exception as failure:
            self._fatal(failure)
            return
        self._pump()

    def _finish(self, rd: Ready) -> None:
        self.host.finish(rd)
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state)
        if self._reads_ready:
            self._serve_ready_reads()
        if self._wake:
            self._wake_polls()

    def _flush_output(self) -> None:
        dirty = self._dirty
        if dirty:
            self._dirty = []
            for connection in dirty:
                connection.flush()

    def mark_dirty(self, connection: Connection) -> None:
        self._dirty.append(connection)
        self._kick()

    # -- timers ---------------------------------------------------------------------------

    def _on_tick(self) -> None:
        assert self._loop is not None
        if self._closed:
            return
        self._timers[0] = self._loop.call_later(self.config.tick_interval, self._on_tick)
        try:
            self.host.tick()
        except Exception as error:
            self._fatal(error)
            return
        if self._parked_count and self._loop.time() >= self._next_poll_expiry:
            self._expire_polls()
        self._kick()

    def _on_broker_tick(self) -> None:
        assert self._loop is not None
        if self._closed:
            return
        self._timers[1] = self._loop.call_later(
            self.config.broker_tick_interval, self._on_broker_tick
        )
        if self._reads_pending:
            self._expire_reads()
        if not self._is_leader():
            self._check_orphans()
            return
        if self._stopping:
            return
        tick = Tick(time=_now_us())
        self._add_to_batch(tick, encode(tick), None)
        # Time moved: leases may have expired and delayed nacks come due.
        if self._parked_count:
            for queue in list(self._parked):
                self._wake[queue] = 1 << 30
            self._wake_polls()
        self._kick()

    # -- peers ----------------------------------------------------------------------------

    def on_raft(self, messages: Sequence[Any]) -> None:
        """Step a peer's messages. Raises WrongGroupError for a misaddressed one (the
        connection is dropped); any other failure of the core is fatal."""
        step = self.host.step
        try:
            for message in messages:
                step(message)
        except WrongGroupError:
            raise
        except Exception as error:
            self._fatal(error)
            return
        self._kick()

    def report_unreachable(self, node: int) -> None:
        if not self._closed:
            self.host.node.report_unreachable(node)
            self._kick()

    def check_peer(self, hello: w.Hello) -> str:
        """Why a peer's Hello is refused ("" when it is welcome)."""
        config = self.config
        if hello.cluster != config.cluster:
            return (
                f"cluster {hello.cluster!r} is not this node's cluster {config.cluster!r}: "
                "check --cluster"
            )
        if hello.node == self.node_id or hello.node not in config.peers:
            return f"node {hello.node} is not a peer of node {self.node_id}: check --peers"
        return ""

    def welcome(self) -> w.Welcome:
        leader = self.raft.lead
        return w.Welcome(
            PROTOCOL_VERSION,
            self.node_id,
            leader,
            self.config.peers.get(leader, ""),
            self.config.max_in_flight,
            self.config.max_frame,
        )

    # -- role ---------------------------------------------------------------------------

    def _is_leader(self) -> bool:
        return self.raft.role == Role.LEADER

    def _not_leader(self) -> ErrorInfo:
        leader = self.raft.lead
        cached = self._not_leader_info
        if cached is not None and cached[0] == leader:
            return cached[1]
        if leader == self.node_id:
            # The leader itself, refusing for a moment (a leadership transfer).
            leader = 0
        address = self.config.peers.get(leader, "")
        info = ErrorInfo(
            "NotLeaderError",
            f"node {self.node_id} is not the leader (leader: {leader or 'unknown'})",
            address,
        )
        self._not_leader_info = (self.raft.lead, info)
        return info

    def _on_soft_state(self, soft: SoftState) -> None:
        was_leader = self._role == Role.LEADER
        self._role = soft.role
        if soft.role == Role.LEADER and not was_leader:
            log.info("node %d is the leader of term %d", self.node_id, self.raft.term)
        elif was_leader and soft.role != Role.LEADER:
            log.info(
                "node %d stepped down in term %d (leader now %s)",
                self.node_id,
                self.raft.term,
                soft.leader or "unknown",
            )
            self._fail_batch(None)
            # Proposals in flight stay: the new leader most likely holds their
            # entries and commits them, and each one is answered when the entry
            # at its index applies here (with its term or not). Only if that does
            # not happen soon is the outcome reported unknown (_check_orphans).
            assert self._loop is not None
            self._orphaned_since = self._loop.time()
            self._fail_reads(self._not_leader())
            self._fail_parked()

    # -- client requests --------------------------------------------------------------------

    def on_requests(self, connection: Connection, requests: list[Any]) -> None:
        connection.note_requests(len(requests))
        if self._stopping or not self._is_leader():
            self._refuse(connection, requests)
            return
        now = _now_us()
        handlers = self._handlers
        try:
            for request in requests:
                handlers[type(request)](connection, request, now)
        except InvariantError as error:
            self._fatal(error)
        except Exception:
            # A bug met by this input: drop the connection, keep the node serving.
            log.exception("closing %s: a request failed unexpectedly", connection.name)
            connection.close()

    def _refuse(self, connection: Connection, requests: list[Any]) -> None:
        if self._stopping and (self.raft.lead in (0, self.node_id)):
            info = error_info(ShuttingDownError(f"node {self.node_id} is shutting down"))
        else:
            info = self._not_leader()
        for request in requests:
            if type(request) is w.Status:
                self._on_status(connection, request, 0)
            else:
                connection.add(Reply(request.id, False, None, info))

    def _on_write(self, connection: Connection, request: Any, now: int) -> None:
        if self._uncommitted + self._batch_bytes > self.config.max_uncommitted_bytes:
            connection.add(Reply(request.id, False, None, _OVERLOADED))
            return
        try:
            command = command_for(request, now)
            payload = encode(command)
        except InvalidCommandError as error:
            connection.add(Reply(request.id, False, None, error_info(error)))
            return
        deadline = 0.0
        if type(request) is w.Deliver and request.wait:
            assert self._loop is not None
            deadline = self._loop.time() + request.wait / 1_000_000
        self._add_to_batch(command, payload, (connection, request, deadline))

    def _add_to_batch(self, command: Command, payload: bytes, slot: Slot | None) -> None:
        self._batch.append(payload)
        self._batch_commands.append(command)
        self._batch_slots.append(slot)
        self._batch_bytes += len(payload)
        if self._batch_bytes >= self.config.max_batch_bytes:
            self._propose_batch()
        self._kick()

    def _propose_batch(self) -> None:
        payloads, commands, slots = self._batch, self._batch_commands, self._batch_slots
        self._batch, self._batch_commands, self._batch_slots, self._batch_bytes = [], [], [], 0
        now = _now_us()
        data = encode_batch(payloads, now)
        try:
            index, term = self.host.propose(data)
        except NotLeaderError:
            self._answer_all(slots, self._not_leader())
            return
        except ProposalDroppedError as error:
            # A leadership transfer is under way: the client retries at the new leader.
            self._answer_all(slots, ErrorInfo("NotLeaderError", str(error), ""))
            return
        replaced = self._proposals.get(index)
        if replaced is not None:
            # Proposed here in an older term, before this node lost and regained
            # leadership with a shorter log: that entry is gone for good.
            self._uncommitted -= replaced.size
            lost = ProposalLostError("another leader's entry replaced this command's entry")
            self._answer_all(replaced.slots, error_info(lost))
        self._proposals[index] = _Proposal(term, len(data), now, commands, slots)
        self._uncommitted += len(data)
        self.stats["entries_proposed"] += 1
        self.stats["commands_proposed"] += len(slots)

    def _check_orphans(self) -> None:
        """Proposals of a leader that stepped down, unresolved after the grace period:
        the entries were lost or this node cannot hear the new leader. Unknown."""
        assert self._loop is not None
        if not self._proposals:
            return
        grace = max(1.0, 4 * self.config.election_tick_max * self.config.tick_interval)
        if self._loop.time() - self._orphaned_since >= grace:
            self._fail_in_flight(
                OutcomeUnknownError("leadership changed before the command committed")
            )

    def _answer_all(self, slots: list[Slot | None], info: ErrorInfo) -> None:
        for slot in slots:
            if slot is not None:
                slot[0].add(Reply(slot[1].id, False, None, info))

    def _fail_batch(self, error: HeraldError | None) -> None:
        """Answer writes not yet proposed (they were not applied)."""
        if self._batch_slots:
            slots = self._batch_slots
            self._batch, self._batch_commands, self._batch_slots, self._batch_bytes = [], [], [], 0
            self._answer_all(slots, self._not_leader() if error is None else error_info(error))

    def _fail_in_flight(self, error: HeraldError) -> None:
        """Answer every proposal still waiting for its entry: the outcome is unknown."""
        if not self._proposals:
            return
        info = error_info(error, self.config.peers.get(self.raft.lead, ""))
        proposals = self._proposals
        self._proposals = {}
        self._uncommitted = 0
        for proposal in proposals.values():
            self._answer_all(proposal.slots, info)

    # -- the state machine (the host's StateMachine port) -------------------------------------

    def apply(self, entry: Entry) -> object:
        """Apply a committed entry to the broker.

        An entry this node proposed is applied from the commands it encoded
        instead of decoding its bytes again: the entry at the proposal's index
        has the proposal's term, so it is the very entry proposed (Raft's log
        matching), and the codec round-trips every command exactly
        (``decode(encode(c)) == c``, property-tested in tests/broker), so the
        broker -- a pure function of the command values -- ends in the same
        state as every replica that decoded the bytes. It saves the leader a
        third of its apply work, where the leader is the busiest node.
        """
        proposal = self._proposals.get(entry.index)
        if proposal is None or proposal.term != entry.term or entry.kind != EntryKind.NORMAL:
            return self.broker.apply(entry)
        broker = self.broker
        broker.applied_index = entry.index
        return broker.execute(Batch(tuple(proposal.commands), time=proposal.time))

    def snapshot(self) -> bytes:
        return self.broker.snapshot()

    def restore(self, data: bytes, index: int) -> None:
        self.broker.restore(data, index)

    # -- applying ---------------------------------------------------------------------------

    def on_persisted(self, node: int, entries: Sequence[Entry], storage: MemoryStorage) -> None:
        pass

    def on_snapshot_installed(self, node: int, snapshot: Snapshot) -> None:
        self.applied = snapshot.index
        log.info(
            "installed the leader's snapshot at index %d (term %d, %d bytes)",
            snapshot.index,
            snapshot.term,
            len(snapshot.data),
        )

    def on_applied(self, node: int, entry: Entry, result: object) -> None:
        index = entry.index
        self.applied = index
        proposal = self._proposals.pop(index, None)
        if proposal is None:
            return
        self._uncommitted -= proposal.size
        slots = proposal.slots
        if entry.term != proposal.term:
            lost = ProposalLostError("another leader's entry replaced this command's entry")
            self._answer_all(slots, error_info(lost, self.config.peers.get(self.raft.lead, "")))
            return
        if type(result) is not BatchResult:
            # The whole entry was refused (cannot happen for batches this node encoded).
            error = result if isinstance(result, BaseException) else OutcomeUnknownError("?")
            self._answer_all(slots, error_info(error))
            return
        wake = self._wake
        for slot, outcome in zip(slots, result.results, strict=True):
            kind = type(outcome)
            if kind is Receipt:
                if not outcome.duplicate:  # type: ignore[attr-defined]
                    queue = outcome.queue  # type: ignore[attr-defined]
                    wake[queue] = wake.get(queue, 0) + 1
                if slot is not None:
                    o: Any = outcome
                    slot[0].add(Reply(slot[1].id, True, [o.queue, o.sequence, o.duplicate, _DUR]))
                continue
            if slot is None:
                continue
            if isinstance(outcome, BrokerError):
                slot[0].add(Reply(slot[1].id, False, None, error_info(outcome)))
            elif kind is Deliveries:
                self._delivered(slot, outcome)  # type: ignore[arg-type]
            else:
                if kind is Nacked or kind is Left or kind is Redriven:
                    self._note_returned(outcome)
                slot[0].add(Reply(slot[1].id, True, reply_value(outcome)))

    def _note_returned(self, outcome: Any) -> None:
        """Messages came back for redelivery: wake long polls of their queue."""
        if type(outcome) is Nacked:
            count = 0 if outcome.dead_lettered else 1
        elif type(outcome) is Left:
            count = outcome.released
        else:
            count = len(outcome.sequences)
        if count:
            self._wake[outcome.queue] = self._wake.get(outcome.queue, 0) + count

    # -- long polling -------------------------------------------------------------------

    def _delivered(self, slot: Slot, outcome: Deliveries) -> None:
        connection, request, deadline = slot
        if outcome.deliveries or not deadline or self._stopping:
            connection.add(Reply(request.id, True, reply_value(outcome)))
            return
        assert self._loop is not None
        if connection.closed:
            return
        if self._loop.time() >= deadline:
            connection.add(Reply(request.id, True, []))
            return
        groups = self._parked.setdefault(request.queue, {})
        groups.setdefault(request.group, deque()).append(slot)
        self._parked_count += 1
        self._next_poll_expiry = min(self._next_poll_expiry, deadline)

    def _wake_polls(self) -> None:
        """Propose again the parked Delivers of queues that may have messages now."""
        wake, self._wake = self._wake, {}
        if not self._parked_count or not self._is_leader() or self._stopping:
            return
        now = _now_us()
        for queue, count in wake.items():
            groups = self._parked.get(queue)
            if groups is None:
                continue
            for group in list(groups):
                polls = groups[group]
                for _ in range(min(count, len(polls))):
                    slot = polls.popleft()
                    self._parked_count -= 1
                    if slot[0].closed:
                        continue
                    try:
                        command = command_for(slot[1], now)
                        payload = encode(command)
                    except InvalidCommandError as error:  # pragma: no cover - it passed once
                        slot[0].add(Reply(slot[1].id, False, None, error_info(error)))
                        continue
                    self._add_to_batch(command, payload, slot)
                if not polls:
                    del groups[group]
            if not groups:
                del self._parked[queue]

    def _expire_polls(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        earliest = float("inf")
        for queue in list(self._parked):
            groups = self._parked[queue]
            for group in list(groups):
                kept: deque[Slot] = deque()
                for slot in groups[group]:
                    if slot[0].closed:
                        continue
                    if slot[2] <= now:
                        slot[0].add(Reply(slot[1].id, True, []))
                    else:
                        kept.append(slot)
                        earliest = min(earliest, slot[2])
                self._parked_count -= len(groups[group]) - len(kept)
                if kept:
                    groups[group] = kept
                else:
                    del groups[group]
            if not groups:
                del self._parked[queue]
        self._next_poll_expiry = earliest

    def _answer_parked_empty(self) -> None:
        parked, self._parked = self._parked, {}
        self._parked_count = 0
        for groups in parked.values():
            for polls in groups.values():
                for connection, request, _ in polls:
                    connection.add(Reply(request.id, True, []))

    def _fail_parked(self) -> None:
        parked, self._parked = self._parked, {}
        self._parked_count = 0
        info = self._not_leader()
        for groups in parked.values():
            for polls in groups.values():
                for connection, request, _ in polls:
                    connection.add(Reply(request.id, False, None, info))

    # -- reads --------------------------------------------------------------------------------

    def _on_read(self, connection: Connection, request: Any, now: int) -> None:
        self._reads.append((connection, request))
        self._kick()

    def _issue_reads(self) -> None:
        assert self._loop is not None
        reads, self._reads = self._reads, []
        self._read_seq += 1
        context = self._read_prefix + self._read_seq.to_bytes(8, "big")
        try:
            self.host.node.read_index(context)
        except NotLeaderError:
            info = self._not_leader()
            for connection, request in reads:
                connection.add(Reply(request.id, False, None, info))
            return
        self._reads_pending[context] = (self._loop.time() + self.config.read_timeout, reads)

    def on_read_state(self, node: int, read_state: ReadState) -> None:
        pending = self._reads_pending.pop(read_state.context, None)
        if pending is not None:
            self._reads_ready.append((read_state.index, pending[1]))

    def _serve_ready_reads(self) -> None:
        waiting: list[tuple[int, list[tuple[Connection, Any]]]] = []
        for index, reads in self._reads_ready:
            if index > self.applied:
                waiting.append((index, reads))
                continue
            for connection, request in reads:
                connection.add(self._serve_read(request))
        self._reads_ready = waiting

    def _serve_read(self, request: Any) -> Reply:
        broker = self.broker
        try:
            if type(request) is w.ListQueues:
                return Reply(request.id, True, list(broker.list_queues()))
            if type(request) is w.Stats:
                return Reply(request.id, True, broker.stats(request.queue))
            letters = broker.dead_letters(
                request.queue, request.group or None, request.limit or None
            )
            return Reply(request.id, True, [dead_letter_wire(letter) for letter in letters])
        except BrokerError as error:
            return Reply(request.id, False, None, error_info(error))

    def _expire_reads(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        for context, (deadline, reads) in list(self._reads_pending.items()):
            if deadline <= now:
                del self._reads_pending[context]
                info = error_info(RequestTimeoutError("no read-index answer in time; retry"))
                for connection, request in reads:
                    connection.add(Reply(request.id, False, None, info))

    def _fail_reads(self, info: ErrorInfo) -> None:
        pending, self._reads_pending = self._reads_pending, {}
        ready, self._reads_ready = self._reads_ready, []
        new, self._reads = self._reads, []
        groups = [reads for _, reads in pending.values()] + [reads for _, reads in ready] + [new]
        for reads in groups:
            for connection, request in reads:
                connection.add(Reply(request.id, False, None, info))

    # -- status -------------------------------------------------------------------------------

    def _on_status(self, connection: Connection, request: Any, now: int) -> None:
        connection.add(Reply(request.id, True, self.status()))

    def status(self) -> dict[str, Any]:
        """The cluster as this node sees it (the Status request's value)."""
        status = self.host.node.status()
        peers = self.config.peers
        progress = dict(status.progress)
        return {
            "node": self.node_id,
            "role": status.role.name.lower(),
            "term": status.term,
            "leader": status.leader,
            "leader_address": peers.get(status.leader, ""),
            "commit": status.commit,
            "applied": self.applied,
            "last_index": status.last_index,
            "recovering": status.recovering,
            "peers": [
                {
                    "node": node,
                    "address": address,
                    "match": progress.get(node),
                    "lag": (status.last_index - progress[node] if node in progress else None),
                }
                for node, address in sorted(peers.items())
            ],
        }


_DUR = "durable"
_OVERLOADED = error_info(OverloadedError("too much uncommitted work on the leader; retry shortly"))
