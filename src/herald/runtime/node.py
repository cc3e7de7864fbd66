"""The node server: the request core over real sockets, real files, a real clock and a thread.

Everything a node decides is :class:`herald.node.server.ServerCore`'s (the
simulator drives the same object); this shell owns what a seed cannot replay:
the listener and the connections, the peer links, the timer that ticks the
core, the clock readings it hands in, and the fsync thread.

The Ready loop
--------------

Every input -- a client frame, a peer frame, a tick, a finished fsync -- only
changes the core's memory and *kicks* the loop (one ``call_soon``). The kicked
:meth:`NodeServer._pump` then:

1. takes a Ready (``core.begin``: it first proposes the writes collected
   since the last pump as one entry and issues one read-index for the reads);
   the host sends the messages that may leave at once and buffers the writes.
   The peer links only collect; a Ready that must be synced flushes them
   before its fsync starts (a leader's appends go to the followers now, while
   its own fsync runs), the others after the clients' replies are written;
2. if the Ready must be durable, runs ``core.sync`` in the single fsync thread
   and returns. Meanwhile the loop keeps reading sockets, stepping messages
   and collecting requests; they pile up in the core and in the next batch.
   When the fsync returns, ``core.finish`` (on the loop thread) sends what
   waited for durability, applies committed entries and answers their
   requests, and the pump runs again with everything that arrived meanwhile:
   one entry, one write, one fsync for all of it (group commit);
3. writes every connection's replies, one ``transport.write`` each.

The log store is touched only by ``begin``/``finish`` on the loop thread and
``sync`` on the fsync thread, never two at once: no ``begin`` runs while a
sync is in flight. The one exception is a checkpoint's writing: a third thread
writes it, a slice (``core.write_checkpoint``) after each sync, beside the
loop and the next sync -- it touches only the checkpoint's own file and
buffers -- or slice after slice while no sync is in flight. A clean stop
checkpoints what is applied and writes it whole, so the next start replays
nothing before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from herald.broker import Broker
from herald.errors import OutcomeUnknownError, ShuttingDownError, StorageError
from herald.node.clock import Instant
from herald.node.groups import NodeCore, NodeReady
from herald.node.server import ClientLink, ServerCore
from herald.raft import Entry, ReadState, Snapshot, Storage
from herald.storage import FileSystem, OsFileSystem, WalLogStore
from herald.storage.layout import claim_group_count, group_dir
from herald.storage.volatile import VolatileFileSystem

from .config import NodeConfig, parse_address
from .connection import Connection
from .peers import PeerTransport

__all__ = ["NodeServer", "now"]

log = logging.getLogger("herald.runtime")


def now() -> Instant:
    """This process's clocks, as the core takes them."""
    return Instant(time.monotonic_ns() // 1000, time.time_ns() // 1000)


class _Logger:
    """The host's events an operator wants in the log."""

    def on_persisted(self, node: int, entries: Sequence[Entry], storage: Storage) -> None:
        pass

    def on_applied(self, node: int, entry: Entry, result: object) -> None:
        pass

    def on_snapshot_installed(self, node: int, snapshot: Snapshot) -> None:
        log.info(
            "installed the leader's snapshot at index %d (term %d, %d bytes)",
            snapshot.index,
            snapshot.term,
            len(snapshot.data),
        )

    def on_read_state(self, node: int, read_state: ReadState) -> None:
        pass


class NodeServer:
    """One node: the request core, the listener, the peer links, the timer, the fsync thread.

    Construct it (opens and recovers the data directory: raises StorageError
    subclasses when storage refuses), then ``await start()`` inside a running
    loop, and ``await stop()`` to shut down gracefully. Not thread-safe: the
    loop thread owns it, apart from the fsync thread's ``core.sync``.
    """

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.node_id = config.node_id
        self.connections: set[Connection] = set()
        self._by_link: dict[int, Connection] = {}
        self.transport = PeerTransport(self)
        fs: FileSystem = VolatileFileSystem() if config.volatile_storage else OsFileSystem()
        claim_group_count(fs, config.data_dir, config.groups, repair=config.repair)
        #: One log store per data group (herald.storage.layout).
        self.stores: list[WalLogStore] = []
        started = time.monotonic()
        rng = random.Random()
        try:
            for group in range(config.groups):
                self.stores.append(
                    WalLogStore(
                        fs,
                        group_dir(config.data_dir, group),
                        repair=config.repair,
                        cache_bytes=config.log_cache_bytes,
                    )
                )
            clock = now()

            def make_core(group: int) -> ServerCore:
                return ServerCore(
                    config,
                    self.stores[group],
                    self.transport,
                    random.Random(rng.getrandbits(64)),
                    clock,
                    observer=_Logger(),
                    group=group,
                    group_count=config.groups,
                )

            self.core = NodeCore(config, config.groups, make_core)
        except BaseException:
            for store in self.stores:
                store.close()
            raise
        for group_core in self.core.cores:
            raft_log = group_core.host.node.raft.log
            log.info(
                "node %d%s recovered in %.3f s: state at %d, log %d..%d, commit %d",
                config.node_id,
                f" group {group_core.group}" if config.groups > 1 else "",
                time.monotonic() - started,
                raft_log.applied,
                raft_log.first_index(),
                raft_log.last_index(),
                raft_log.committed,
            )
        self.now = now
        self._leading = set(self.core.leading())
        self._kicked = False
        self._syncing = False
        self._stopping = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: asyncio.Server | None = None
        self._fsync_pool: ThreadPoolExecutor | None = None
        self._sync_future: asyncio.Future[None] | None = None
        self._checkpoint_pool: ThreadPoolExecutor | None = None
        self._checkpoint_future: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.failed: asyncio.Future[BaseException] | None = None
        self.syncs = 0
        self._tick_due = 0.0

    @property
    def broker(self) -> Broker:
        return self.core.broker

    @property
    def stats(self) -> dict[str, int]:
        return {**self.core.stats, "syncs": self.syncs}

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Listen, dial the peers, start the timer. Raises OSError if the port is taken."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.failed = loop.create_future()
        self._fsync_pool = ThreadPoolExecutor(1, thread_name_prefix="herald-fsync")
        self._checkpoint_pool = ThreadPoolExecutor(1, thread_name_prefix="herald-checkpoint")
        host, port = parse_address(self.config.listen_address)
        self._listener = await loop.create_server(
            lambda: Connection(self), host, port, reuse_address=True, backlog=1024
        )
        self.transport.start()
        self._tick_due = loop.time() + self.config.tick_interval
        self._timer = loop.call_at(self._tick_due, self._on_tick)
        self.kick()

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
        core = self.core
        if self._listener is not None:
            self._listener.close()
        core.begin_shutdown()
        if core.is_leader() and config.transfer_on_shutdown and len(config.voters) > 1:
            await self._hand_over_leadership()
        deadline = loop.time() + config.shutdown_grace
        while core.in_flight and loop.time() < deadline and not self._closed:
            await asyncio.sleep(0.005)
        core.fail_in_flight(OutcomeUnknownError("the node shut down before the command committed"))
        core.fail_reads(ShuttingDownError(f"node {self.node_id} is shutting down"))
        core.answer_parked_empty()
        self._flush_output()
        await self._close()

    async def _hand_over_leadership(self) -> None:
        """Every group this node leads goes to its most up-to-date follower first."""
        assert self._loop is not None
        moving = []
        for core in self.core.cores:
            target = core.handover_target()
            if target and core.transfer_leadership(target):
                self.core.touch(core.group)
                which = f" of group {core.group}" if self.config.groups > 1 else ""
                log.info("handing leadership%s to node %d before shutting down", which, target)
                moving.append(core)
        if not moving:
            return
        self.kick()
        ticks = self.config.election_tick_max * 2
        deadline = self._loop.time() + ticks * self.config.tick_interval
        while (
            any(core.is_leader() for core in moving)
            and self._loop.time() < deadline
            and not self._closed
        ):
            await asyncio.sleep(0.005)

    async def _close(self) -> None:
        """Stop everything; make the log durable and release it."""
        if self._closed:
            return
        # From here on the pump does nothing: no new Ready begins, and a sync in
        # flight is only waited for (its Ready is durable, never finished).
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for connection in list(self.connections):
            connection.flush()
            connection.close()
        await self.transport.close()
        for pending in (self._sync_future, self._checkpoint_future):
            if pending is not None:
                with contextlib.suppress(Exception):
                    await pending
        failed = self.failed is not None and self.failed.done()
        clean = False
        try:
            if not failed:
                # Commit-index records are written without an fsync; make them durable.
                for store in self.stores:
                    store.sync()
                clean = True
                self._checkpoint_at_stop()
        finally:
            # A clean close leaves the segments' descriptions: the next start
            # need not read the log (herald.storage.logstore.WalLogStore.close).
            for store in self.stores:
                store.close(clean=clean)
            for pool in (self._fsync_pool, self._checkpoint_pool):
                if pool is not None:
                    pool.shutdown(wait=True)
        if self._listener is not None:
            await self._listener.wait_closed()

    def _checkpoint_at_stop(self) -> None:
        """Checkpoint the applied state whole before the store closes: the next
        start restores it and replays only what was committed after it."""
        started = time.monotonic()
        try:
            self.core.checkpoint_at_stop()
        except StorageError as error:
            # The log still holds everything: the next start replays more.
            log.warning("node %d: no checkpoint at stop: %s", self.node_id, error)
            return
        log.info(
            "node %d checkpointed at stop in %.3f s",
            self.node_id,
            time.monotonic() - started,
        )

    async def abort(self) -> None:
        """Stop without the courtesies (after a fatal error): close, no final sync."""
        self._stopping = True
        if self._listener is not None:
            self._listener.close()
        await self._close()

    def fatal(self, error: BaseException) -> None:
        """Storage failed (or a core invariant broke): stop serving at once."""
        log.critical("fatal: %s: %s", type(error).__name__, error, exc_info=error)
        self._stopping = True
        if self.failed is not None and not self.failed.done():
            self.failed.set_result(error)

    # -- connections --------------------------------------------------------------------

    def register(self, link: ClientLink, connection: Connection) -> None:
        self._by_link[link.id] = connection

    def unregister(self, connection: Connection) -> None:
        self.connections.discard(connection)
        link = connection.protocol.link
        if link is not None:
            self._by_link.pop(link.id, None)

    # -- the Ready loop -----------------------------------------------------------------

    def kick(self) -> None:
        if not self._kicked and self._loop is not None:
            self._kicked = True
            self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        self._kicked = False
        if self._closed or (self.failed is not None and self.failed.done()):
            return
        try:
            if not self._syncing:
                core = self.core
                while True:
                    rd = core.begin(self.now())
                    if rd is None:
                        break
                    if rd.must_sync:
                        self.transport.flush()  # the appends travel while this node syncs
                        self._start_sync(rd)
                        break
                    self._finish(rd)
            self._flush_output()
            # After the replies: a commit's notice to the followers (what a Ready
            # without writes sends) is not what a client waits for.
            self.transport.flush()
        except Exception as error:
            self.fatal(error)

    def _start_sync(self, rd: NodeReady) -> None:
        assert self._loop is not None and self._fsync_pool is not None
        self._syncing = True
        future = self._loop.run_in_executor(self._fsync_pool, self.core.sync, rd)
        self._sync_future = future
        future.add_done_callback(lambda done: self._synced(rd, done))

    def _synced(self, rd: NodeReady, future: asyncio.Future[None]) -> None:
        self._syncing = False
        self._sync_future = None
        self.syncs += 1
        if not self._came_back(future):
            return
        try:
            self._finish(rd)
            self.transport.flush()  # acknowledgements first: the leader waits on them
        except Exception as failure:
            self.fatal(failure)
            return
        self._pump()
        self._write_checkpoint()

    def _came_back(self, future: asyncio.Future[None]) -> bool:
        """A thread's work is done: whether the loop goes on with it (not if the
        node is closing, nor if it failed: then the node stops)."""
        if self._closed:
            return False
        error = future.exception()
        if error is not None:
            self.fatal(error)
            return False
        return True

    def _write_checkpoint(self) -> None:
        """Hand the checkpoint thread the next slice, if there is one and it is free.

        Paced by the log: one slice per sync while syncs follow one another (the
        slice's flush runs beside the next sync's, not inside it), slice after
        slice while none is in flight."""
        if (
            self._checkpoint_future is not None
            or self._closed
            or not self.core.wants_checkpoint_writes
        ):
            return
        assert self._loop is not None and self._checkpoint_pool is not None
        future = self._loop.run_in_executor(self._checkpoint_pool, self.core.write_checkpoint)
        self._checkpoint_future = future
        future.add_done_callback(self._checkpoint_written)

    def _checkpoint_written(self, future: asyncio.Future[None]) -> None:
        self._checkpoint_future = None
        if not self._came_back(future):
            return
        if not self._syncing:
            self._write_checkpoint()
        self.kick()  # a checkpoint written whole is kept by the next sync

    def _finish(self, rd: NodeReady) -> None:
        core = self.core
        core.finish(rd, self.now())
        for group_core, group_rd in rd.parts:
            if group_rd.soft_state is not None:
                self._note_role(group_core)

    def _note_role(self, core: ServerCore) -> None:
        leading = core.is_leader()
        group = core.group
        if leading == (group in self._leading):
            return
        which = f" of group {group}" if self.config.groups > 1 else ""
        if leading:
            self._leading.add(group)
            log.info("node %d is the leader%s in term %d", self.node_id, which, core.term)
        else:
            self._leading.discard(group)
            log.info(
                "node %d stepped down%s in term %d (leader now %s)",
                self.node_id,
                which,
                core.term,
                core.leader or "unknown",
            )

    def _flush_output(self) -> None:
        by_link = self._by_link
        for link in self.core.take_dirty():
            connection = by_link.get(link.id)
            if connection is not None:
                connection.flush()
            else:
                link.take_replies()

    # -- timers ---------------------------------------------------------------------------

    def _on_tick(self) -> None:
        assert self._loop is not None
        if self._closed:
            return
        # How late the timer fires is how long the loop was kept from it: the pause
        # everything waiting on this node saw.
        fired = self._loop.time()
        lag = fired - self._tick_due
        self._tick_due = fired + self.config.tick_interval
        self._timer = self._loop.call_at(self._tick_due, self._on_tick)
        try:
            now = self.now()
            self.core.note_loop_lag(int(lag * 1_000_000), now)
            self.core.tick(now)
        except Exception as error:
            self.fatal(error)
            return
        self.kick()

    # -- peers ----------------------------------------------------------------------------

    def report_unreachable(self, node: int) -> None:
        if not self._closed:
            self.core.report_unreachable(node)
            self.kick()

    def status(self) -> dict[str, object]:
        return self.core.status()
