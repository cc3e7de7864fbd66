"""The simulated world: nodes running the real node host over a simulated network and disk.

Each node is a :class:`~herald.node.host.NodeHost` (the same class the real
runtime uses) wired to the real write-ahead log (:class:`WalLogStore`) on its
own simulated disk (:class:`SimFileSystem`), the :class:`SimNetwork` and a small
digest state machine. The world owns virtual time: it ticks each node at its
own (possibly drifting) clock rate, delivers messages, completes fsyncs after a
seed-drawn latency, and carries out the nemesis's crashes (power losses),
pauses and partitions.

A node whose storage refuses to start (corruption) is handed to a simulated
operator, who restarts it with ``repair=True`` after a while; if it refuses
even then (a damaged hard state), the node stays down for the rest of the run.
A failed fsync or read crashes the node, which restarts and recovers.
Nothing here reads a real clock or a global random generator.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from herald.broker import Broker
from herald.errors import (
    CorruptionError,
    NotLeaderError,
    ProposalDroppedError,
    StorageIOError,
    UnsupportedFormatError,
)
from herald.node.clock import Instant
from herald.node.groups import NodeCore, NodeReady
from herald.node.host import HostObserver, NodeHost, Transport
from herald.node.server import ServerCore
from herald.raft import (
    Config,
    Entry,
    EntryKind,
    Message,
    MessageType,
    Raft,
    ReadState,
    Ready,
    Role,
    Snapshot,
    Storage,
)
from herald.storage import DiskFaults, SimFileSystem, WalLogStore
from herald.storage.layout import claim_group_count, group_dir

if TYPE_CHECKING:
    from .links import SimLink

from .invariants import RaftChecker, SafetyViolation
from .network import SimNetwork
from .options import SimOptions
from .scheduler import MS, SECOND, Scheduler, fmt_time

__all__ = [
    "DATA_DIR",
    "EPOCH",
    "DigestStateMachine",
    "DiskFactory",
    "Op",
    "Replica",
    "ServerFactory",
    "SimNode",
    "World",
    "digest_broker",
]

#: What a state machine that never reads the log back answers for its pin.
_READS_NO_ENTRY = 1 << 62

#: What a running node's storage can raise that kills the process (the real
#: runtime treats them as fatal too): an IO error, or damage found reading back.
_RUNNING_FAILURES = (StorageIOError, CorruptionError)

Tracer = Callable[[str], None]
#: Builds a node's disk; tests pass broken ones to show the checkers catch them.
DiskFactory = Callable[[random.Random, DiskFaults], SimFileSystem]
DATA_DIR = "/data"
#: Where the simulated wall clocks start (2027-01-15, in microseconds since 1970).
EPOCH = 1_800_000_000 * SECOND
#: No command is ever stamped before this (see SimWorld.on_applied).
_TIME_FLOOR = EPOCH - 24 * 3600 * SECOND
#: How long the simulated operator takes to notice a node that refused to start.
OPERATOR_DELAY = 300 * MS


class DigestStateMachine:
    """A state machine whose whole state is a count and a hash chain of what it applied.

    Two replicas have the same digest at an index iff they applied the same
    entries up to it, which is exactly what the checkers need to compare.
    """

    __slots__ = ("count", "digest")

    def __init__(self) -> None:
        self.count = 0
        self.digest = b"\0" * 8

    def apply(self, entry: Entry) -> object:
        self.fold(entry)
        return self.count

    def fold(self, entry: Entry) -> None:
        """Chain ``entry`` into the digest."""
        self.count += 1
        self.digest = hashlib.blake2b(self.digest + entry.data, digest_size=8).digest()

    def snapshot(self) -> bytes:
        return struct.pack(">Q", self.count) + self.digest

    def checkpoint(self) -> Sequence[bytes | memoryview]:
        return [self.snapshot()]

    def pin(self) -> int:
        return _READS_NO_ENTRY

    def restore(self, data: bytes, index: int) -> None:
        (self.count,) = struct.unpack(">Q", data[:8])
        self.digest = data[8:16]


@dataclass(slots=True)
class Op:
    """One client operation, Jepsen-style: invoked, then ok / fail / info."""

    client: int
    kind: str  # "propose" or "read"
    data: bytes
    invoke_time: int
    node: int
    index: int = 0
    term: int = 0
    status: str = "invoke"  # invoke -> ok | fail | info
    complete_time: int = 0
    must_cover: int = 0  # reads: the highest index acknowledged before the read began
    result: object = None  # what the state machine answered, when ok
    #: Called (from its own event) when the client learns the outcome.
    callback: Callable[[Op], None] | None = None


@dataclass(slots=True)
class SimNode:
    """One simulated server: its disk survives crashes, everything else does not."""

    id: int
    disk: SimFileSystem
    rng: random.Random
    host: NodeHost | None = None
    machine: DigestStateMachine | None = None
    #: The request core, in worlds whose clients speak Herald's protocol.
    server: NodeCore | None = None
    up: bool = False
    paused: bool = False
    incarnation: int = 0
    clock_rate: float = 1.0  # the rate now, which clock faults change
    base_clock_rate: float = 1.0  # the node's own drift, which they don't
    clock_skew: int = 0  # its wall clock minus true time, for command timestamps
    # Its monotonic clock: ``mono_base`` at true time ``mono_at``, then ``clock_rate``.
    mono_base: int = 0
    mono_at: int = 0
    #: Client connections to this node: all, by number, and by the core's link id.
    connections: dict[int, SimLink] = field(default_factory=dict)
    links: dict[int, SimLink] = field(default_factory=dict)
    #: Client bytes that arrived while paused: (link, data).
    held_bytes: list[tuple[SimLink, bytes]] = field(default_factory=list)
    held: list[Message] = field(default_factory=list)
    deferred: list[Ready | NodeReady] = field(default_factory=list)
    #: A slice of a checkpoint is being written (an event of its own, beside the
    #: Ready cycles, as the real runtime's checkpoint thread runs beside its loop).
    writing_checkpoint: bool = False
    # An armed crash waits for its moment ("before_sync", "after_sync" or
    # "after_vote"), then the node stays down for ``armed_outage``.
    armed: str = ""
    armed_outage: int = 0
    waiting_reads: list[tuple[Op, ReadState]] = field(default_factory=list)
    repair_next: bool = False  # the operator restarts it with repair=True
    dead: bool = False  # refused to start even with repair: down for good
    #: One per Raft group the node hosts (index = group); ``host`` and
    #: ``machine`` above are group 0's.
    replicas: list[Replica] = field(default_factory=list)


@dataclass(slots=True)
class Replica:
    """One Raft group's member on a node: its host while the node is up, and the
    recovery bookkeeping that outlives crashes."""

    group: int
    host: NodeHost | None = None
    machine: DigestStateMachine | None = None
    #: While its store says its log was cut back: the marker's term, and whether
    #: an entry of a later term has been made durable since (which ends recovery).
    recovering_term: int = 0
    caught_up: bool = False


class _Transport:
    __slots__ = ("_send",)

    def __init__(self, send: Callable[[Message], None]) -> None:
        self._send = send

    def send(self, messages: Sequence[Message]) -> None:
        for message in messages:
            self._send(message)


class _Observer:
    """Forwards a host's events to the world for one group of one node incarnation."""

    __slots__ = ("_replica", "_world")

    def __init__(self, world: World, node: SimNode, group: int) -> None:
        self._world = world
        self._replica = (node, node.replicas[group])

    def on_persisted(self, node: int, entries: Sequence[Entry], storage: Storage) -> None:
        replica = self._replica[1]
        self._world.checkers[replica.group].on_persisted(node, entries, storage)
        self._world.on_persisted(replica, entries)

    def on_applied(self, node: int, entry: Entry, result: object) -> None:
        self._world.on_applied(*self._replica, entry, result)

    def on_snapshot_installed(self, node: int, snapshot: Snapshot) -> None:
        self._world.on_snapshot_installed(*self._replica, snapshot)

    def on_read_state(self, node: int, read_state: ReadState) -> None:
        self._world.on_read_state(self._replica[0], read_state)


class ServerFactory(Protocol):
    """Builds one group's request core of a node on its log store and transport
    (queue worlds)."""

    def __call__(
        self,
        node: SimNode,
        group: int,
        store: WalLogStore,
        transport: Transport,
        rng: random.Random,
        now: Instant,
        observer: HostObserver,
    ) -> ServerCore: ...


class World:
    """A whole simulated cluster plus its clients, driven by one scheduler.

    Each node runs either a bare node host with a digest state machine (the Raft
    workload, whose clients propose to Raft directly) or, given a
    ``server_factory``, the real request core (:class:`ServerCore`), whose
    clients connect over simulated connections (:mod:`herald.sim.links`).
    """

    def __init__(
        self,
        options: SimOptions,
        rng: random.Random,
        raft_class: type[Raft] = Raft,
        tracer: Tracer | None = None,
        disk_factory: DiskFactory = SimFileSystem,
        machine_factory: Callable[[], DigestStateMachine] = DigestStateMachine,
        server_factory: ServerFactory | None = None,
        host_class: type[NodeHost] = NodeHost,
    ) -> None:
        self.options = options
        self.raft_class = raft_class
        self.host_class = host_class
        self.machine_factory = machine_factory
        self.server_factory = server_factory
        self.trace = tracer
        self.scheduler = Scheduler()
        #: Raft groups per node: the queue worlds' data groups (the Raft workload
        #: drives one group's hosts directly).
        self.groups = options.groups if server_factory is not None else 1
        #: One Raft checker per group; ``checker`` is group 0's.
        self.checkers = [RaftChecker() for _ in range(self.groups)]
        self.checker = self.checkers[0]
        self.rng = rng
        self.network = SimNetwork(
            self.scheduler, random.Random(rng.getrandbits(64)), options.network, self._deliver
        )
        self.voters = tuple(range(1, options.nodes + 1))
        self.nodes: dict[int, SimNode] = {}
        for node_id in self.voters:
            faults = options.media_faults if node_id in options.faulty_disks else options.crash_disk
            disk = disk_factory(random.Random(rng.getrandbits(64)), faults)
            node = SimNode(node_id, disk, random.Random(rng.getrandbits(64)))
            node.replicas = [Replica(group) for group in range(self.groups)]
            if options.drift:
                node.base_clock_rate = 1.0 + node.rng.uniform(-options.drift, options.drift)
                node.clock_rate = node.base_clock_rate
                node.clock_skew = int(node.rng.uniform(-options.drift, options.drift) * SECOND)
            self.nodes[node_id] = node
        # Client bookkeeping: proposals awaiting their index to be applied on the
        # node they were proposed to, and reads awaiting their answer.
        self.pending: dict[tuple[int, int], Op] = {}
        self.pending_reads: dict[bytes, Op] = {}
        self.history: list[Op] = []
        self.max_acked_index = 0
        self.crashes = 0
        self.restarts = 0
        self.refusals = 0
        self.repairs = 0
        self.wall_steps = 0
        self.on_new_leader: Callable[[SimNode], None] | None = None
        #: Called when a node crashes (the links layer resets its connections).
        self.on_crash: Callable[[SimNode], None] | None = None
        #: Called after every Ready cycle of a node with a server core (to send replies).
        self.on_output: Callable[[SimNode], None] | None = None
        #: Called when a paused node resumes (held client bytes are delivered).
        self.on_resume: Callable[[SimNode], None] | None = None
        #: How traces show a proposal's payload (workloads with binary commands replace it).
        self.describe_data: Callable[[bytes], str] = _printable
        #: Called when a linearizable read is served, with the node that served it.
        self.on_read_served: Callable[[Op, SimNode], None] | None = None

    # -- tracing ----------------------------------------------------------------------

    def log(self, text: str) -> None:
        if self.trace is not None:
            self.trace(f"{fmt_time(self.scheduler.now)} {text}")

    # -- node lifecycle ------------------------------------------------------------------

    def config_for(self, node_id: int) -> Config:
        o = self.options
        return Config(
            id=node_id,
            voters=self.voters,
            election_tick=o.election_tick,
            election_tick_max=o.election_tick_max,
            heartbeat_tick=o.heartbeat_tick,
            pre_vote=o.pre_vote,
            check_quorum=o.check_quorum,
            max_inflight_msgs=16,
            max_size_per_msg=64 * 1024,
        )

    def boot(self, node: SimNode) -> None:
        """Start (or restart) a node from whatever its disk holds."""
        if node.dead:
            return
        node.incarnation += 1
        machine: DigestStateMachine | None = None
        server: NodeCore | None = None
        try:
            if self.server_factory is not None:
                server = self._boot_server(node)
                host = server.cores[0].host
            else:
                store = self._open_store(node, DATA_DIR)
                transport = _Transport(self.network.send)
                rng = random.Random(node.rng.getrandbits(64))
                observer = _Observer(self, node, 0)
                machine = self.machine_factory()
                host = self.host_class(
                    self.config_for(node.id),
                    store,
                    transport,
                    machine,
                    rng,
                    snapshot_entries=self.options.snapshot_entries,
                    retain_entries=self.options.snapshot_entries // 4,
                    observer=observer,
                    raft_class=self.raft_class,
                )
        except StorageIOError as error:
            # A read error: transient, so the supervisor simply tries again.
            self.log(f"n{node.id} cannot start: {error}")
            self.scheduler.after(50 * MS, self._restart_if_down, node, node.incarnation)
            return
        except (CorruptionError, UnsupportedFormatError) as error:
            self.refusals += 1
            if node.repair_next:
                node.dead = True
                self.log(f"n{node.id} REFUSES to start even with repair, stays down: {error}")
                return
            node.repair_next = True
            self.log(f"n{node.id} REFUSES to start: {error}; the operator will repair it")
            self.scheduler.after(OPERATOR_DELAY, self._restart_if_down, node, node.incarnation)
            return
        if node.repair_next:
            self.repairs += 1
            node.repair_next = False
        node.host = host
        node.server = server
        if server is None:
            node.replicas[0].host = host
            node.replicas[0].machine = machine
        else:
            for core, replica in zip(server.cores, node.replicas, strict=True):
                replica.host = core.host
                replica.machine = _digests(core.broker)
        node.machine = node.replicas[0].machine
        node.up = True
        node.paused = False
        node.held.clear()
        node.held_bytes.clear()
        node.deferred.clear()
        node.writing_checkpoint = False
        node.waiting_reads.clear()
        for replica in node.replicas:
            replica_host = replica.host
            replica_machine = replica.machine
            assert replica_host is not None and replica_machine is not None
            raft = replica_host.node.raft
            self._check_recovery_marker(node, replica, replica_host)
            self.checkers[replica.group].on_restart(
                node.id, raft.log.applied, replica_machine.digest
            )
            self.log(
                f"n{node.id}{_group_tag(replica.group, self.groups)} boot term={raft.term} "
                f"applied={raft.log.applied} last={raft.log.last_index()}"
                + (f" recovering(t{raft.recovering_term})" if raft.recovering_term else "")
            )
        self._schedule_tick(node)
        self._pump(node)

    def _open_store(self, node: SimNode, directory: str) -> WalLogStore:
        return WalLogStore(
            node.disk,
            directory,
            # A quarter of the seeds use the smallest segments, so logs span
            # many and clean restarts replay sealed ones from the marker.
            segment_size=4096 if self.options.seed % 4 == 1 else self.options.segment_size,
            repair=node.repair_next,
            # Tiny slices, so a checkpoint is written across several syncs and
            # crashes and disk faults meet it half written (from the seed, not
            # drawn: the seeds' other choices stay what they were).
            checkpoint_slice=64 + (self.options.seed % 7) * 509,
        )

    def _boot_server(self, node: SimNode) -> NodeCore:
        """The node's request core: a store and a ServerCore per data group, laid
        out on its disk as ``herald serve --groups`` lays them out."""
        assert self.server_factory is not None
        groups = self.groups
        claim_group_count(node.disk, DATA_DIR, groups, repair=node.repair_next)
        stores: list[WalLogStore] = []
        try:
            for group in range(groups):
                stores.append(self._open_store(node, group_dir(DATA_DIR, group)))
            transport = _Transport(self.network.send)
            rngs = [random.Random(node.rng.getrandbits(64)) for _ in range(groups)]
            now = self.instant(node)
            cores = [
                self.server_factory(
                    node,
                    group,
                    stores[group],
                    transport,
                    rngs[group],
                    now,
                    _Observer(self, node, group),
                )
                for group in range(groups)
            ]
            return NodeCore(cores[0].config, groups, cores.__getitem__)
        except BaseException:
            # The groups opened so far let go of their directories: the supervisor
            # starts the node again on this disk.
            for store in stores:
                with contextlib.suppress(*_RUNNING_FAILURES):
                    store.close()
            raise

    def _check_recovery_marker(self, node: SimNode, replica: Replica, host: NodeHost) -> None:
        """Recovery ends on durable state only: a node whose log was cut back keeps
        its marker until an entry of a later term is durable. A marker gone before
        that lets a node missing acknowledged entries vote as if it had them."""
        if replica.recovering_term and not replica.caught_up and not host.recovering_term:
            raise SafetyViolation(
                "recovery",
                f"n{node.id}{_group_tag(replica.group, self.groups)} restarted without its "
                f"recovering marker (term {replica.recovering_term}) although no entry of a "
                f"later term was ever durable in its log",
            )
        replica.recovering_term = 0 if host.marker_ignored else host.recovering_term
        storage = host.storage
        # What it loaded may already end recovery (a snapshot of a later term).
        replica.caught_up = storage.term(storage.last_index()) > replica.recovering_term

    def on_persisted(self, replica: Replica, entries: Sequence[Entry]) -> None:
        if replica.recovering_term and any(e.term > replica.recovering_term for e in entries):
            replica.caught_up = True

    def crash(self, node: SimNode) -> None:
        """Power loss: the process and everything the disk had not made durable."""
        if not node.up:
            return
        node.up = False
        node.paused = False
        node.incarnation += 1
        if node.host is not None and (self.crashes + node.id) % 2 == 0:
            # Every other stop is a shutdown that leaves the clean marker first
            # (the sealed segments' descriptions), so the next start replays them
            # unread -- under the same disk faults. Chosen by count, not drawn:
            # the seeds' other choices stay what they were.
            # With no Ready in flight it is the runtime's clean stop: what is
            # applied is checkpointed and written whole first.
            host = node.host
            driver: NodeHost | NodeCore = node.server if node.server is not None else host
            if not driver.busy:
                with contextlib.suppress(*_RUNNING_FAILURES):
                    driver.checkpoint_at_stop()
            for replica in node.replicas:
                store = replica.host.log_store if replica.host is not None else None
                if isinstance(store, WalLogStore):
                    store.close(clean=True)
        lost = node.disk.unsynced_changes
        node.disk.crash()
        if self.on_crash is not None:
            self.on_crash(node)
        node.host = None
        node.server = None
        node.machine = None
        for replica in node.replicas:
            replica.host = None
            replica.machine = None
        node.held.clear()
        node.held_bytes.clear()
        node.deferred.clear()
        node.writing_checkpoint = False
        node.waiting_reads.clear()
        node.armed = ""
        self.crashes += 1
        self.log(f"n{node.id} CRASH (lost {lost} unsynced changes)")
        for key in [key for key in self.pending if key[0] == node.id]:
            op = self.pending.pop(key)
            self._complete(op, "info")
        for context in [c for c, op in self.pending_reads.items() if op.node == node.id]:
            self._complete(self.pending_reads.pop(context), "info")

    def _storage_failed(self, node: SimNode, error: StorageIOError | CorruptionError) -> None:
        """A failed write, fsync or read, or damage found reading the log back: the
        process must die and recover from what is really on disk (where recovery
        finds the damage again and refuses, and the operator repairs)."""
        self.log(f"n{node.id} storage failed ({error}): crash and recover")
        self.crash(node)
        self.scheduler.after(10 * MS, self._restart_if_down, node, node.incarnation)

    def arm_crash(self, node: SimNode, moment: str, outage: int) -> None:
        """Crash ``node`` at its next ``moment``; restart it ``outage`` later."""
        node.armed = moment
        node.armed_outage = outage

    def _armed_crash(self, node: SimNode) -> None:
        outage = node.armed_outage
        self.crash(node)
        self.scheduler.after(outage, self._restart_if_down, node, node.incarnation)

    def _restart_if_down(self, node: SimNode, incarnation: int) -> None:
        if node.incarnation == incarnation and not node.up:
            self.restart(node)

    def restart(self, node: SimNode) -> None:
        if node.up or node.dead:
            return
        self.restarts += 1
        self.boot(node)

    def pause(self, node: SimNode) -> None:
        if node.up and not node.paused:
            node.paused = True
            self.log(f"n{node.id} PAUSE")

    def resume(self, node: SimNode) -> None:
        if not node.up or not node.paused:
            return
        node.paused = False
        self.log(f"n{node.id} RESUME ({len(node.held)} held messages)")
        deferred, node.deferred = node.deferred, []
        for rd in deferred:
            if node.host is not None:
                self._finish(node, rd)
        held, node.held = node.held, []
        for message in held:
            self._deliver(message)
        if self.on_resume is not None and node.up and not node.paused:
            self.on_resume(node)

    # -- time -----------------------------------------------------------------------------

    def instant(self, node: SimNode) -> Instant:
        """The node's two clocks now: monotonic (drifting) and wall (skewed, stepped)."""
        mono = node.mono_base + int((self.scheduler.now - node.mono_at) * node.clock_rate)
        return Instant(mono, EPOCH + mono + node.clock_skew)

    def set_clock_rate(self, node: SimNode, rate: float) -> None:
        """The node's clock runs at ``rate`` from now on (ticks and its monotonic clock)."""
        node.mono_base = self.instant(node).mono
        node.mono_at = self.scheduler.now
        node.clock_rate = rate

    def _schedule_tick(self, node: SimNode) -> None:
        interval = max(1, round(self.options.tick_interval / node.clock_rate))
        self.scheduler.after(interval, self._tick, node, node.incarnation)

    def _tick(self, node: SimNode, incarnation: int) -> None:
        if node.incarnation != incarnation or not node.up:
            return
        self._schedule_tick(node)
        if node.paused or node.host is None:
            return
        self._tick_once(node)
        self._after_input(node)

    def _tick_once(self, node: SimNode) -> None:
        try:
            if node.server is not None:
                node.server.tick(self.instant(node))
            elif node.host is not None:
                node.host.tick()
        except _RUNNING_FAILURES as error:
            # Reading the log back failed (the core reads it to replicate).
            self._storage_failed(node, error)

    def jump_clock(self, node: SimNode, ticks: int) -> None:
        """The node's clocks leap forward (a VM resumed): many ticks fire at once."""
        if not node.up or node.paused or node.host is None:
            return
        self.log(f"n{node.id} CLOCK JUMP +{ticks} ticks")
        leap = ticks * self.options.tick_interval
        node.mono_base += leap
        for _ in range(ticks):
            self._tick_once(node)
            self._after_input(node)
            if node.host is None:
                return

    def step_wall_clock(self, node: SimNode, delta: int) -> None:
        """The node's wall clock alone steps by ``delta`` (an NTP step, an operator's typo)."""
        node.clock_skew += delta
        if delta > 0:
            self.wall_steps += 1
        self.log(f"n{node.id} WALL CLOCK STEP {delta / SECOND:+.0f}s")

    # -- messages ---------------------------------------------------------------------------

    def _deliver(self, message: Message) -> None:
        node = self.nodes[message.dst]
        if not node.up or node.host is None:
            return
        if node.paused:
            node.held.append(message)
            return
        if self.trace is not None:
            self.log(f"n{message.dst} <- n{message.src} {_describe(message)}")
        try:
            if node.server is not None:
                node.server.step((message,), self.instant(node))
            else:
                node.host.step(message)
        except _RUNNING_FAILURES as error:
            self._storage_failed(node, error)
            return
        self._after_input(node)

    # -- the Ready cycle --------------------------------------------------------------------

    def pump(self, node: SimNode) -> None:
        """Something reached the node from outside Raft (a client's bytes): run its loop."""
        self._after_input(node)

    def _after_input(self, node: SimNode) -> None:
        host = node.host
        if host is None:
            return
        self._observe(node, host)
        self._pump(node)

    def _observe(self, node: SimNode, host: NodeHost) -> None:
        if node.server is None:
            self._observe_group(node, 0, host)
            return
        for replica in node.replicas:
            if replica.host is not None:
                self._observe_group(node, replica.group, replica.host)

    def _observe_group(self, node: SimNode, group: int, host: NodeHost) -> None:
        raft = host.node.raft
        if self.checkers[group].observe(node.id, raft):
            self.log(
                f"n{node.id} LEADER of{_group_tag(group, self.groups)} term {raft.term} "
                f"(last index {raft.log.last_index()})"
            )
            if self.on_new_leader is not None:
                self.on_new_leader(node)

    def _pump(self, node: SimNode) -> None:
        """Run Ready cycles until one must wait for an fsync (or nothing is left)."""
        incarnation = node.incarnation
        try:
            while node.incarnation == incarnation and node.host is not None:
                host = node.host
                server = node.server
                if server.busy if server is not None else host.busy:
                    break
                rd: Ready | NodeReady | None
                rd = server.begin(self.instant(node)) if server is not None else host.begin()
                if rd is None:
                    break
                if rd.must_sync:
                    if node.armed == "before_sync":
                        self.log(f"n{node.id} crashes with a write in flight")
                        self._armed_crash(node)
                        return
                    self.scheduler.after(
                        self.options.fsync_latency, self._fsync_done, node, incarnation, rd
                    )
                    break
                if server is not None:
                    assert isinstance(rd, NodeReady)
                    server.finish(rd, self.instant(node))
                else:
                    assert isinstance(rd, Ready)
                    host.finish(rd)
                if node.host is not None:
                    self._observe(node, host)
        except _RUNNING_FAILURES as error:
            if node.incarnation == incarnation:
                self._storage_failed(node, error)
            return
        if node.server is not None and node.incarnation == incarnation and self.on_output:
            self.on_output(node)

    def _fsync_done(self, node: SimNode, incarnation: int, rd: Ready | NodeReady) -> None:
        if node.incarnation != incarnation or node.host is None:
            return
        if node.paused:
            node.deferred.append(rd)
            return
        self._finish(node, rd)

    def _finish(self, node: SimNode, rd: Ready | NodeReady) -> None:
        host = node.host
        assert host is not None
        incarnation = node.incarnation
        server = node.server
        try:
            if server is not None:
                assert isinstance(rd, NodeReady)
                server.sync(rd)
                server.finish(rd, self.instant(node))
            else:
                assert isinstance(rd, Ready)
                host.sync(rd)
                host.finish(rd)
        except _RUNNING_FAILURES as error:
            if node.incarnation == incarnation:
                self._storage_failed(node, error)
            return
        if node.armed == "after_sync" or (node.armed == "after_vote" and _grants_vote(rd)):
            self.log(f"n{node.id} crashes right after an fsync")
            self._armed_crash(node)
            return
        self._write_checkpoint_later(node)
        self._after_input(node)

    def _write_checkpoint_later(self, node: SimNode) -> None:
        """Schedule the next slice of the checkpoint under way, if there is one."""
        host = node.server if node.server is not None else node.host
        if node.writing_checkpoint or host is None or not host.wants_checkpoint_writes:
            return
        node.writing_checkpoint = True
        self.scheduler.after(
            self.options.fsync_latency, self._write_checkpoint, node, node.incarnation
        )

    def _write_checkpoint(self, node: SimNode, incarnation: int) -> None:
        """A slice of the checkpoint, written and synced between any two other
        events of the node: the store must not care where it falls."""
        host = node.server if node.server is not None else node.host
        if node.incarnation != incarnation or host is None:
            return
        if node.paused:
            self.scheduler.after(
                self.options.fsync_latency, self._write_checkpoint, node, incarnation
            )
            return
        node.writing_checkpoint = False
        try:
            host.write_checkpoint()
        except _RUNNING_FAILURES as error:
            self._storage_failed(node, error)
            return
        self._write_checkpoint_later(node)
        self._after_input(node)  # one written whole is kept by the next sync

    def on_applied(self, node: SimNode, replica: Replica, entry: Entry, result: object) -> None:
        machine = replica.machine
        assert machine is not None
        group = replica.group
        if node.server is not None:
            # The broker applied it; the digest follows every entry alike.
            machine.fold(entry)
            broker = node.server.cores[group].broker
            if entry.kind == EntryKind.NORMAL and broker.now < _TIME_FLOOR:
                # Simulated wall clocks start at EPOCH and no majority of them is
                # ever a day behind: a broker clock below that was stamped from no
                # clock at all (0, or a monotonic reading), and every deadline it
                # started would expire at once when real time arrived (a producer
                # forgotten, its retry stored twice: herald.node.clock).
                raise SafetyViolation(
                    "log time",
                    f"node {node.id}{_group_tag(group, self.groups)} applied entry "
                    f"{entry.index} at log time {broker.now}, before any clock's calendar",
                )
        self.checkers[group].on_applied(node.id, entry, machine.digest)
        if group:
            return  # the Raft workload's proposals and reads are group 0's
        op = self.pending.pop((node.id, entry.index), None)
        if op is not None:
            if entry.term == op.term and entry.data == op.data and entry.kind == EntryKind.NORMAL:
                op.result = result
                self._complete(op, "ok")
                self.max_acked_index = max(self.max_acked_index, entry.index)
            else:
                self._complete(op, "fail")
        if node.waiting_reads:
            self._serve_reads(node)

    def on_snapshot_installed(self, node: SimNode, replica: Replica, snapshot: Snapshot) -> None:
        if replica.recovering_term and snapshot.term > replica.recovering_term:
            replica.caught_up = True  # the leader's snapshot holds every committed entry
        machine = replica.machine
        assert machine is not None
        group = replica.group
        self.log(
            f"n{node.id}{_group_tag(group, self.groups)} installs snapshot at {snapshot.index}"
        )
        self.checkers[group].on_snapshot_installed(node.id, snapshot, machine.digest)
        if group:
            return
        # Proposals whose index the snapshot jumped over: the client never hears.
        for key in [k for k in self.pending if k[0] == node.id and k[1] <= snapshot.index]:
            op = self.pending.pop(key)
            term, data = self.checker.committed_entry(key[1])
            self._complete(op, "ok" if (term, data) == (op.term, op.data) else "fail")
            if op.status == "ok":
                self.max_acked_index = max(self.max_acked_index, key[1])

    def on_read_state(self, node: SimNode, read_state: ReadState) -> None:
        op = self.pending_reads.get(read_state.context)
        if op is None or op.node != node.id:
            return
        node.waiting_reads.append((op, read_state))
        self._serve_reads(node)

    def _serve_reads(self, node: SimNode) -> None:
        applied = self.checker.applied_index(node.id)
        still: list[tuple[Op, ReadState]] = []
        for op, read_state in node.waiting_reads:
            if read_state.index <= applied:
                self.pending_reads.pop(op.data, None)
                op.index = read_state.index
                self.checker.check_read(node.id, read_state, op.must_cover)
                self._complete(op, "ok")
                if self.on_read_served is not None:
                    self.on_read_served(op, node)
            else:
                still.append((op, read_state))
        node.waiting_reads = still

    # -- clients -------------------------------------------------------------------------------

    def propose(
        self,
        client: int,
        node_id: int,
        data: bytes,
        callback: Callable[[Op], None] | None = None,
    ) -> Op | int:
        """Propose at ``node_id``; returns the Op, or a leader hint (0: none) on refusal.

        ``callback`` hears the outcome; it is attached before the proposal runs,
        because the node may crash (and the outcome become unknown) within it.
        """
        node = self.nodes[node_id]
        if not node.up or node.paused or node.host is None:
            return 0
        try:
            index, term = node.host.propose(data)
        except NotLeaderError as error:
            return error.leader
        except ProposalDroppedError:
            return node_id
        op = Op(client, "propose", data, self.scheduler.now, node_id, index, term)
        op.callback = callback
        self.history.append(op)
        self.pending[(node_id, index)] = op
        if self.trace is not None:
            self.log(
                f"c{client} propose {self.describe_data(data)} at n{node_id} -> index {index} "
                f"term {term}"
            )
        self._after_input(node)
        return op

    def local_time(self, node_id: int) -> int:
        """The node's wall clock: true time plus its skew (never below zero)."""
        return max(0, self.scheduler.now + self.nodes[node_id].clock_skew)

    def read(self, client: int, node_id: int, context: bytes) -> Op | int:
        node = self.nodes[node_id]
        if not node.up or node.paused or node.host is None:
            return 0
        try:
            node.host.node.read_index(context)
        except NotLeaderError as error:
            return error.leader
        op = Op(
            client, "read", context, self.scheduler.now, node_id, must_cover=self.max_acked_index
        )
        self.history.append(op)
        self.pending_reads[context] = op
        self._after_input(node)
        return op

    def expire(self, op: Op) -> None:
        """The client gave up waiting: the outcome is unknown to it."""
        if op.status != "invoke":
            return
        if op.kind == "read":
            self.pending_reads.pop(op.data, None)
        self._complete(op, "info", keep_pending=op.kind == "propose")

    def _complete(self, op: Op, status: str, keep_pending: bool = False) -> None:
        if op.status == "info" and status in ("ok", "fail"):
            # The client had given up, but the world learns the truth anyway; the
            # checkers use it (an acknowledged write must never be lost).
            op.status = status
            return
        if op.status != "invoke":
            return
        op.status = status
        op.complete_time = self.scheduler.now
        if op.callback is not None:
            # Its own event: the client reacts after the host finished this step.
            self.scheduler.after(0, op.callback, op)
        if self.trace is not None and op.kind == "propose":
            self.log(f"c{op.client} {status} {self.describe_data(op.data)} index {op.index}")

    # -- queries ---------------------------------------------------------------------------

    def live_nodes(self) -> list[SimNode]:
        """Nodes that can run: all but those whose storage refused even repair."""
        return [node for node in self.nodes.values() if not node.dead]

    def leader(self, group: int = 0) -> SimNode | None:
        """The up, unpaused node leading ``group`` in the highest term, if any."""
        best: SimNode | None = None
        best_term = -1
        for node in self.nodes.values():
            host = node.replicas[group].host
            if node.up and not node.paused and host is not None:
                raft = host.node.raft
                if raft.role == Role.LEADER and raft.term > best_term:
                    best, best_term = node, raft.term
        return best


_DIGEST_BROKERS: dict[type[Broker], type[Broker]] = {}


def digest_broker(broker_class: type[Broker] = Broker) -> Broker:
    """A broker of ``broker_class`` with the digest chain the Raft checker compares
    replicas by: the world folds each entry into it as it applies (whichever way
    the request core applies it), and it travels in the snapshot, ahead of the
    broker's own state."""
    cls = _DIGEST_BROKERS.get(broker_class)
    if cls is None:

        def snapshot(self: Broker) -> bytes:
            return _digests(self).snapshot() + broker_class.snapshot(self)

        def checkpoint(self: Broker) -> list[bytes | memoryview]:
            return [_digests(self).snapshot(), *broker_class.checkpoint(self)]

        def restore(self: Broker, data: bytes, index: int) -> None:
            _digests(self).restore(data[:16], index)
            broker_class.restore(self, data[16:], index)

        # No __slots__: instances get a __dict__ for the digest chain.
        cls = type(
            f"Digest{broker_class.__name__}",
            (broker_class,),
            {"snapshot": snapshot, "checkpoint": checkpoint, "restore": restore},
        )
        _DIGEST_BROKERS[broker_class] = cls
    broker = cls()
    broker.__dict__["digests"] = DigestStateMachine()
    return broker


def _digests(broker: Broker) -> DigestStateMachine:
    digests = broker.__dict__.get("digests")
    if not isinstance(digests, DigestStateMachine):
        raise TypeError("a simulated server core needs a broker made by digest_broker()")
    return digests


def _group_tag(group: int, groups: int) -> str:
    """How traces name a group: not at all in a world of one."""
    return f" g{group}" if groups > 1 else ""


def _printable(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    return text if text.isprintable() else f"<{len(data)} bytes>"


def _grants_vote(rd: Ready | NodeReady) -> bool:
    return any(m.type == MessageType.VOTE_RESPONSE and not m.reject for m in rd.persisted_messages)


def _describe(m: Message) -> str:
    text = f"{m.type.name} t{m.term}"
    if m.type.name.startswith("APPEND") or m.type.name in ("VOTE", "PRE_VOTE"):
        text += f" i{m.index} lt{m.log_term}"
    if m.entries:
        text += f" +{len(m.entries)}[{m.entries[0].index}..{m.entries[-1].index}]"
    if m.commit:
        text += f" c{m.commit}"
    if m.reject:
        text += f" REJECT hint{m.reject_hint}"
    if m.snapshot is not None:
        text += f" snap@{m.snapshot.index}"
    if m.context:
        text += f" ctx={m.context.decode(errors='replace')}"
    return text
