"""The server's request core: one node's Raft host, broker and client requests, sans-IO.

:class:`ServerCore` is everything a Herald node does between bytes arriving and
bytes leaving, except the bytes: it turns client requests into broker commands
batched into log entries, answers each request once its entry applies (or its
fate is known), serves reads after a read-index round, holds long polls,
sheds load, and stamps commands with the time a majority of clocks agree on
(:mod:`herald.node.clock`). It never reads a clock, a socket or a file: time
enters as an :class:`~herald.node.clock.Instant` with every input, and the log
store and peer transport are the node host's ports. The asyncio server
(:mod:`herald.runtime.node`) and the simulator drive the same object.

The driving loop (both worlds)::

    core.receive(link, requests, now) / core.step(messages, now) / core.tick(now)
    rd = core.begin(now)           # propose what was collected; the host's begin
    core.sync(rd)                  # fsync if rd.must_sync (may run on another thread)
    core.finish(rd, now)           # persisted sends, apply, answer, advance
    for link in core.take_dirty(): write(link.take_replies())
    core.write_checkpoint()        # while core.wants_checkpoint_writes, any thread

No ``begin`` may run while a sync is in flight (``finish`` first).

Requests
--------

Writes become broker commands stamped at arrival; the commands collected
until the next ``begin`` become ONE ``Batch`` entry (group commit), whose index
and term are remembered with one reply slot per command. When the entry at
that index applies with that term, each slot gets its command's result. When
a *different* entry applies there, the proposal was lost for certain
(:class:`ProposalLostError`: it cannot be committed any more). When the fate
cannot be known -- this node stopped leading and no entry arrives in time, it
proposed at the index again after losing and regaining leadership (another
node may still hold the older entry and commit it), or a snapshot jumped over
the index -- the answer is :class:`OutcomeUnknownError`.

**A connection's writes reach the log in the order they were sent.** Once a
write of a connection is turned away without being carried out (overload, not
the leader, shutting down, a leadership transfer), every later write of that
connection to this core's Raft group is turned away with the same answer
until it closes: a client resends turned-away requests, in order, on its next
connection, and a later publish must never overtake an earlier one (the broker
accepts any first sequence number from a producer it does not know). A queue
lives in one group, so that order is all a queue's writes need; the group's
refusal does not stand in the way of the connection's writes to other groups
a node serves (``ClientLink.refusals``).

Reads wait for a read-index round and for the node to apply up to the index
it returns. ``Status`` is answered at once by any node; everything else, on a
follower, is a ``NotLeaderError`` with the leader's address.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final, TypeAlias

from herald.broker import (
    MAX_ACKS,
    MAX_NAME,
    AckedMany,
    AckMany,
    Batch,
    BatchResult,
    Broker,
    Carried,
    Carry,
    Command,
    Deliveries,
    Left,
    Nacked,
    Receipt,
    Redriven,
    Tick,
    batch_spans,
    encode,
    encode_ack_many,
    encode_batch,
)
from herald.errors import (
    BrokerError,
    CompactedError,
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
    UnavailableError,
    UsageError,
)
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
    SoftState,
    Storage,
)
from herald.wire import protocol as w
from herald.wire.protocol import ErrorInfo, Reply

from .clock import Instant, LogClock
from .config import NodeConfig
from .convert import (
    WRITE_REQUESTS,
    command_for,
    dead_letter_wire,
    error_info,
    peeked_wire,
    reply_value,
)
from .host import HostObserver, LogStore, NodeHost, Transport

__all__ = ["ClientLink", "Instant", "ServerCore"]

SECOND: Final = 1_000_000
#: Quiet for this long (no entry written or applied), the node gives a
#: checkpoint still being written syncs of its own (NodeHost.begin).
_IDLE_AFTER: Final = 100_000
#: With no timer due, the leader proposes a broker Tick this often (us).
_IDLE_TICK: Final = 1_000_000
#: The most messages one Peek shows.
MAX_PEEK: Final = 1000


_U64: Final = 2**64


def _good_name(name: str) -> bool:
    """A queue or group name the broker's commands accept (herald.broker.commands)."""
    return 0 < len(name) <= MAX_NAME and name.isprintable()


def _each(slots: list[_Waiting]) -> list[_Slot]:
    """Every request waiting on ``slots``, in order."""
    flat: list[_Slot] = []
    for slot in slots:
        if isinstance(slot, list):
            flat.extend(slot)
        elif slot is not None:
            flat.append(slot)
    return flat


class ClientLink:
    """The core's side of one client connection: its replies and its standing."""

    __slots__ = ("closed", "dirty", "failed", "id", "name", "refusals", "replies", "unanswered")

    def __init__(self, link_id: int, name: str) -> None:
        self.id = link_id
        self.name = name
        #: Replies not yet taken by the shell (see :meth:`take_replies`).
        self.replies: list[Reply] = []
        #: Requests received and not yet answered (for the shell's flow control).
        self.unanswered = 0
        #: Per Raft group: once set, every later write of this connection to a
        #: queue of that group gets this answer. Per group, because a node that
        #: does not lead one group turns its writes away while it serves another's.
        self.refusals: dict[int, ErrorInfo] = {}
        self.dirty = False
        self.closed = False
        #: A request met a bug of ours: the shell should close this connection.
        self.failed = False

    def take_replies(self) -> list[Reply]:
        replies, self.replies = self.replies, []
        self.unanswered -= len(replies)
        return replies


class _Slot:
    """One request awaiting its command's result."""

    __slots__ = ("deadline", "link", "request")

    def __init__(self, link: ClientLink, request: w.Request, deadline: int) -> None:
        self.link = link
        self.request = request
        #: For a long-polling Deliver, when to give up waiting (monotonic µs); else 0.
        self.deadline = deadline


class _AckRun:
    """Acks of one group that arrived one after another, to be proposed as one
    AckMany: a consumer acks every message, and one command per ack was most of
    what every replica decoded and applied while a backlog drained. A run is
    only extended while it is the last command of the batch, so the log still
    holds every connection's writes in the order they were sent."""

    __slots__ = ("group", "queue", "sequences", "slots", "time", "tokens")

    def __init__(self, queue: str, group: str, time: int) -> None:
        self.queue = queue
        self.group = group
        self.time = time  # the first ack's: a lease valid then is valid for all
        self.sequences: list[int] = []
        self.tokens: list[int] = []
        self.slots: list[_Slot] = []

    def command(self) -> AckMany:
        return AckMany(
            self.queue, self.group, tuple(self.sequences), tuple(self.tokens), time=self.time
        )


#: Who waits for one command of a batch: one request, the requests of an ack
#: run (in its order), or nobody (the broker Tick).
_Waiting: TypeAlias = "_Slot | list[_Slot] | None"


@dataclass(slots=True)
class _Proposal:
    term: int
    size: int
    commands: list[Command]  # what the entry encodes, as built (see ServerCore.apply)
    lengths: list[int]  # the length of each command's encoding, in order
    slots: list[_Waiting]  # one per command


@dataclass(slots=True)
class _PendingRead:
    deadline: int
    reads: list[_Slot]


_Handler: TypeAlias = Callable[[ClientLink, w.Request, int], None]

_DURABLE = "durable"


#: The responses that carry the sender's wall clock to the leader (or the
#: candidate): heartbeat responses keep the readings fresh, and vote responses
#: give a new leader a majority's readings the moment it is elected, so it can
#: stamp its first commands at once (see herald.node.clock).
_CLOCK_CARRIERS: Final = frozenset(
    {
        MessageType.HEARTBEAT_RESPONSE,
        MessageType.VOTE_RESPONSE,
        MessageType.PRE_VOTE_RESPONSE,
    }
)


class _StampingTransport:
    """The host's transport, with this node's wall clock on the responses that
    carry it (``_CLOCK_CARRIERS``)."""

    __slots__ = ("_core", "_inner")

    def __init__(self, inner: Transport, core: ServerCore) -> None:
        self._inner = inner
        self._core = core

    def send(self, messages: Sequence[Message]) -> None:
        carriers = _CLOCK_CARRIERS
        if any(message.type in carriers for message in messages):
            wall = self._core.now.wall
            messages = [
                replace(message, wall=wall) if message.type in carriers else message
                for message in messages
            ]
        self._inner.send(messages)


class ServerCore:
    """One node: the node host with the broker, the client requests, the log's clock.

    Construct it with the node's ports (raises StorageError subclasses when the
    log store refuses to load). Not thread-safe: one world drives it, apart from
    :meth:`sync`, which may run on another thread while nothing else runs.
    """

    def __init__(
        self,
        config: NodeConfig,
        store: LogStore,
        transport: Transport,
        rng: random.Random,
        now: Instant,
        *,
        broker: Broker | None = None,
        observer: HostObserver | None = None,
        raft_class: type[Raft] = Raft,
        host_class: type[NodeHost] = NodeHost,
        group: int = 0,
        group_count: int = 1,
    ) -> None:
        self.config = config
        self.node_id = config.node_id
        #: The data group this core serves, of ``group_count`` on the node
        #: (herald.node.groups.NodeCore runs one core per group).
        self.group = group
        self.group_count = group_count
        if not 0 <= group < group_count:
            raise UsageError(f"group {group} is not one of 0..{group_count - 1}")
        #: What a Status request is answered with (the node's view, set by NodeCore).
        self.status_view: Callable[[], dict[str, object]] = self.status
        self.now = now
        self.broker = broker if broker is not None else Broker()
        # Message bodies stay in the log: the broker reads them back from it.
        self.broker.reader = self._read_entry
        self._observer = observer
        raft_config = Config(
            id=config.node_id,
            group=group,
            voters=config.voters,
            election_tick=config.election_tick,
            election_tick_max=config.election_tick_max,
            heartbeat_tick=config.heartbeat_tick,
            pre_vote=config.pre_vote,
            check_quorum=config.check_quorum,
            max_size_per_msg=config.max_size_per_msg,
            max_inflight_msgs=config.max_inflight_msgs,
        )
        self.host = host_class(
            raft_config,
            store,
            _StampingTransport(transport, self),
            self,
            rng,
            snapshot_entries=config.snapshot_entries,
            checkpoint_bytes=config.checkpoint_bytes,
            retain_entries=config.retain_entries,
            observer=self,
            raft_class=raft_class,
        )
        self._raft = self.host.node.raft
        self.applied = self._raft.log.applied
        tick = _micros(config.tick_interval)
        self._clock = LogClock(
            config.node_id, config.voters, freshness=4 * config.election_tick_max * tick
        )
        self._broker_tick = max(1, _micros(config.broker_tick_interval))
        self._next_broker_tick = now.mono + self._broker_tick
        self._last_tick = now.mono - _IDLE_TICK  # the first broker tick proposes one
        self._read_timeout = _micros(config.read_timeout)
        self._orphan_grace = max(SECOND, 4 * config.election_tick_max * tick)
        # Writes collected since the last proposal.
        self._batch: list[bytes] = []
        self._batch_commands: list[Command | _AckRun] = []
        self._batch_slots: list[_Waiting] = []
        self._batch_bytes = 0
        self._open_run: _AckRun | None = None  # the batch's last command, if it is a run
        self._last_entries = now.mono  # when a Ready last wrote or applied entries
        self._runs = 0  # ack runs in the batch
        self._proposals: dict[int, _Proposal] = {}
        self._carrying = 0  # the index of the Carry proposed last
        self._recent_entries: dict[int, bytes] = {}  # committed entries read last
        self._loop_lags: deque[tuple[int, int]] = deque(maxlen=60)  # (second, longest)
        self._loop_lag_max = 0
        self._uncommitted = 0
        # Reads: collected, waiting for their read-index, waiting to be applied.
        self._reads: list[_Slot] = []
        self._read_seq = 0
        self._read_prefix = rng.getrandbits(64).to_bytes(8, "big")
        self._reads_pending: dict[bytes, _PendingRead] = {}
        self._reads_ready: list[tuple[int, list[_Slot]]] = []
        # Long-polling delivers whose Deliver found nothing: queue -> group -> slots.
        self._parked: dict[str, dict[str, deque[_Slot]]] = {}
        self._parked_count = 0
        self._next_poll_expiry = _NEVER
        self._wake: dict[str, int] = {}
        self._dirty: list[ClientLink] = []
        self._links = 0
        self._role = self._raft.role
        self._orphaned_since = 0
        self._not_leader_info: tuple[int, ErrorInfo] | None = None
        self._handlers: dict[type, _Handler] = dict.fromkeys(WRITE_REQUESTS, self._on_write)
        self._handlers.update(
            {
                w.Ack: self._on_ack,
                w.ListQueues: self._on_read,
                w.Stats: self._on_read,
                w.DeadLetters: self._on_read,
                w.Peek: self._on_read,
                w.Status: self._on_status,
            }
        )
        self.stopping = False
        self.stats = {
            "entries_proposed": 0,
            "commands_proposed": 0,
            "turned_away": 0,
            "messages_carried": 0,
        }

    # -- connections ------------------------------------------------------------------------

    def connect(self, name: str) -> ClientLink:
        """A client connection completed its handshake."""
        self._links += 1
        return ClientLink(self._links, name)

    def disconnect(self, link: ClientLink) -> None:
        """The connection is gone: nothing more is sent to it."""
        link.closed = True
        link.replies = []

    def take_dirty(self) -> list[ClientLink]:
        """The open links with replies waiting (each once), in the order they got them."""
        dirty, self._dirty = self._dirty, []
        out = []
        for link in dirty:
            link.dirty = False
            if not link.closed:
                out.append(link)
        return out

    def _reply(self, link: ClientLink, reply: Reply) -> None:
        if link.closed:
            return
        link.replies.append(reply)
        if not link.dirty:
            link.dirty = True
            self._dirty.append(link)

    def answer(self, link: ClientLink, reply: Reply) -> None:
        """Send ``reply`` on ``link`` with this core's replies (the node's own answers)."""
        self._reply(link, reply)

    def _error(self, slot: _Slot, info: ErrorInfo) -> None:
        self._reply(slot.link, Reply(slot.request.id, False, None, info))

    # -- inputs -----------------------------------------------------------------------------

    def receive(self, link: ClientLink, requests: Sequence[w.Request], now: Instant) -> None:
        """Requests of one frame from ``link``. Raises InvariantError (fatal) only."""
        self.now = now
        link.unanswered += len(requests)
        if self.stopping or not self.is_leader():
            self._refuse(link, requests)
            return
        # One stamp for the whole frame: they arrived together.
        stamp = self._stamp(now)
        handlers = self._handlers
        try:
            for request in requests:
                handlers[type(request)](link, request, stamp)
        except InvariantError:
            raise
        except Exception:
            # A bug met by this input: drop the connection, keep the node serving.
            link.failed = True

    def step(self, messages: Sequence[Message], now: Instant) -> None:
        """A peer's Raft messages. Raises WrongGroupError for a misaddressed one."""
        self.now = now
        step = self.host.step
        clock = self._clock
        for message in messages:
            if message.wall and message.type in _CLOCK_CARRIERS:
                clock.observe(message.src, message.wall, now)
            step(message)

    def report_unreachable(self, node: int) -> None:
        self.host.node.report_unreachable(node)

    def tick(self, now: Instant) -> None:
        """One Raft tick, plus the housekeeping that time brings."""
        self.now = now
        self.host.tick()
        mono = now.mono
        if self._parked_count and mono >= self._next_poll_expiry:
            self._expire_polls()
        if mono < self._next_broker_tick:
            return
        self._next_broker_tick = mono + self._broker_tick
        if self._reads_pending:
            self._expire_reads()
        if not self.is_leader():
            self._check_orphans()
            return
        if self.stopping:
            return
        if self.host.carry_hint is not None:
            self._maybe_carry(now)
        stamp = self._stamp(now)
        if not stamp:
            return  # no time to tell yet (see _on_write)
        due = self.broker.next_timer()
        if (due is None or due > stamp) and mono - self._last_tick < _IDLE_TICK:
            # Nothing is due: a Tick would move the clock and fire nothing. One
            # a second keeps the log's time near the clocks' (for the gauges);
            # ten a second in every idle group was most of what it cost.
            return
        self._last_tick = mono
        tick = Tick(time=stamp)
        self._add_to_batch(tick, encode(tick), None)
        # Time moved: leases may have expired and delayed nacks come due.
        if self._parked_count:
            for queue in self._parked:
                self._wake[queue] = 1 << 30
            self._wake_polls()

    def _maybe_carry(self, now: Instant) -> None:
        """Copy the few old messages that keep the log from being compacted forward.

        The host says when the broker's pin keeps its newest checkpoint from
        becoming where the log starts. If what lies before that checkpoint is
        mostly settled -- the live publishes there are at most an eighth of the
        log they hold back, and few -- one Carry entry copies them forward, and
        the next checkpoint can start the log past them. A log that is mostly
        live (a real backlog) is left alone: copying it would only double it.
        One look per checkpoint, one Carry in flight at a time.
        """
        hint = self.host.carry_hint
        self.host.carry_hint = None
        if hint is None or self._carrying > self.applied:
            return
        checkpoint, span = hint
        budget = min(span // 8, _CARRY_BYTES)
        found = self.broker.carry_candidates(checkpoint + 1, _CARRY_LIMIT, budget)
        if not found:
            return
        items = []
        for queue, incarnation, group, ref in found:
            try:
                data = self._read_entry(ref.index)
            except (CompactedError, UnavailableError):
                return  # not this node's to carry (it lost those entries)
            publish = data[ref.offset : ref.offset + ref.length]
            items.append(Carried(queue, incarnation, group, ref.sequence, publish))
        carry = Carry(tuple(items), time=self._stamp(now))
        try:
            index, _term = self.host.propose(encode(carry))
        except (NotLeaderError, ProposalDroppedError):
            return
        self._carrying = index
        self.stats["messages_carried"] += len(items)

    # -- the Ready cycle ----------------------------------------------------------------------

    def begin(self, now: Instant) -> Ready | None:
        """Propose what was collected, then take the host's next Ready (sent and
        written, not synced). None when there is nothing to do."""
        self.now = now
        if self._batch:
            self._propose_batch()
        if self._reads:
            self._issue_reads()
        mono = now.mono
        rd = self.host.begin(idle=mono - self._last_entries >= _IDLE_AFTER)
        if rd is not None and (rd.entries or rd.committed_entries):
            self._last_entries = mono
        return rd

    def sync(self, rd: Ready) -> None:
        """Make ``rd``'s writes durable (may run off the driving thread)."""
        self.host.sync(rd)

    @property
    def wants_checkpoint_writes(self) -> bool:
        """:meth:`write_checkpoint` has work (see :mod:`herald.node.host`)."""
        return self.host.wants_checkpoint_writes

    def write_checkpoint(self) -> None:
        """The next slice of the checkpoint under way (may run on a thread of its
        own, beside everything else here)."""
        self.host.write_checkpoint()

    def checkpoint_at_stop(self) -> None:
        """A clean stop, after the last sync: checkpoint what is applied, whole."""
        self.host.checkpoint_at_stop()

    def finish(self, rd: Ready, now: Instant) -> None:
        self.now = now
        self.host.finish(rd)
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state)
        if self._reads_ready:
            self._serve_ready_reads()
        if self._wake:
            self._wake_polls()

    @property
    def busy(self) -> bool:
        """A Ready is between ``begin`` and ``finish``."""
        return self.host.busy

    # -- role ---------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self._raft.role == Role.LEADER

    @property
    def leader(self) -> int:
        return self._raft.lead

    @property
    def term(self) -> int:
        return self._raft.term

    def _not_leader(self) -> ErrorInfo:
        leader = self._raft.lead
        cached = self._not_leader_info
        if cached is not None and cached[0] == leader:
            return cached[1]
        shown = 0 if leader == self.node_id else leader  # a transfer, refusing for a moment
        info = ErrorInfo(
            "NotLeaderError",
            f"node {self.node_id} is not the leader (leader: {shown or 'unknown'})",
            self.config.peers.get(shown, ""),
        )
        self._not_leader_info = (leader, info)
        return info

    def _on_soft_state(self, soft: SoftState) -> None:
        was_leader = self._role == Role.LEADER
        self._role = soft.role
        if was_leader and soft.role != Role.LEADER:
            self._fail_batch(None)
            # Proposals in flight stay: the new leader most likely holds their
            # entries and commits them, and each one is answered when the entry
            # at its index applies here (with its term or not). Only if that does
            # not happen soon is the outcome reported unknown (_check_orphans).
            self._orphaned_since = self.now.mono
            self._fail_reads(self._not_leader())
            self._fail_parked()

    def _refuse(self, link: ClientLink, requests: Sequence[w.Request]) -> None:
        if self.stopping and self._raft.lead in (0, self.node_id):
            info = error_info(ShuttingDownError(f"node {self.node_id} is shutting down"))
        else:
            info = self._not_leader()
        for request in requests:
            if type(request) is w.Status:
                self._on_status(link, request, 0)
            elif type(request) in WRITE_REQUESTS:
                self._turn_away(link, request, info)
            else:
                self._reply(link, Reply(request.id, False, None, info))

    def _turn_away(self, link: ClientLink, request: w.Request, info: ErrorInfo) -> None:
        """Answer a write that was not carried out; the connection's later writes
        get the same answer (they must not overtake this one)."""
        link.refusals[self.group] = info
        self.stats["turned_away"] += 1
        self._reply(link, Reply(request.id, False, None, info))

    # -- writes -----------------------------------------------------------------------------

    def _stamp(self, now: Instant) -> int:
        """The time written into commands proposed ``now`` (see herald.node.clock)."""
        return self._clock.stamp(now, self.broker.now)

    def _admit(self, link: ClientLink, request: w.Request, stamp: int) -> bool:
        """Whether a write may go into the batch; if not, it has been turned away."""
        refusal = link.refusals.get(self.group) if link.refusals else None
        if refusal is not None:
            self._turn_away(link, request, refusal)
            return False
        if self._uncommitted + self._batch_bytes > self.config.max_uncommitted_bytes:
            self._turn_away(link, request, _OVERLOADED)
            return False
        if not stamp:
            # The log has no time yet and a majority's clocks have not been heard:
            # a command stamped 0 would have every deadline it starts expire the
            # moment real time arrives (herald.node.clock). Rare: vote responses
            # carry the clocks, so a new leader normally has them when elected.
            self._turn_away(link, request, _NO_TIME)
            return False
        return True

    def _on_ack(self, link: ClientLink, request: w.Request, stamp: int) -> None:
        assert type(request) is w.Ack
        sequence, token = request.sequence, request.token
        if not (0 <= sequence < _U64 and 0 <= token < _U64):
            self._on_write(link, request, stamp)  # the Ack's own check says what is wrong
            return
        run = self._open_run
        if (
            run is None
            or run.queue != request.queue
            or run.group != request.group
            or len(run.sequences) >= MAX_ACKS
        ):
            if not (_good_name(request.queue) and _good_name(request.group)):
                self._on_write(link, request, stamp)
                return
            if not self._admit(link, request, stamp):
                return
            run = _AckRun(request.queue, request.group, stamp)
            self._batch.append(b"")  # encoded when proposed
            self._batch_commands.append(run)
            self._batch_slots.append(run.slots)
            self._batch_bytes += 64
            self._open_run = run
            self._runs += 1
        elif not self._admit(link, request, stamp):
            return
        run.sequences.append(sequence)
        run.tokens.append(token)
        run.slots.append(_Slot(link, request, 0))
        self._batch_bytes += 16
        if self._batch_bytes >= self.config.max_batch_bytes:
            self._propose_batch()

    def _on_write(self, link: ClientLink, request: w.Request, stamp: int) -> None:
        if not self._admit(link, request, stamp):
            return
        try:
            command = command_for(request, stamp)
            payload = encode(command)
        except InvalidCommandError as error:
            self._reply(link, Reply(request.id, False, None, error_info(error)))
            return
        deadline = 0
        if type(request) is w.Deliver and request.wait:
            deadline = self.now.mono + request.wait
        self._add_to_batch(command, payload, _Slot(link, request, deadline))

    def _add_to_batch(self, command: Command, payload: bytes, slot: _Slot | None) -> None:
        self._open_run = None
        self._batch.append(payload)
        self._batch_commands.append(command)
        self._batch_slots.append(slot)
        self._batch_bytes += len(payload)
        if self._batch_bytes >= self.config.max_batch_bytes:
            self._propose_batch()

    def _propose_batch(self) -> None:
        payloads, collected, slots = self._batch, self._batch_commands, self._batch_slots
        self._batch, self._batch_commands, self._batch_slots, self._batch_bytes = [], [], [], 0
        self._open_run = None
        commands: list[Command] = []
        if self._runs:
            self._runs = 0
            for i, command in enumerate(collected):
                if isinstance(command, _AckRun):
                    run = command.command()
                    payloads[i] = encode_ack_many(
                        run.queue, run.group, run.sequences, run.tokens, run.time
                    )
                    commands.append(run)
                else:
                    commands.append(command)
        else:
            commands = collected  # type: ignore[assignment]
        # The batch's own time is its first command's: stamps only grow, so it
        # never runs ahead of the commands inside it.
        data = encode_batch(payloads, commands[0].time)
        try:
            index, term = self.host.propose(data)
        except NotLeaderError:
            self._turn_away_all(slots, self._not_leader())
            return
        except ProposalDroppedError as error:
            # A leadership transfer is under way: the client retries at the new leader.
            self._turn_away_all(slots, ErrorInfo("NotLeaderError", str(error), ""))
            return
        replaced = self._proposals.get(index)
        if replaced is not None:
            # Proposed here in an older term, before this node lost and regained
            # leadership with a log cut back below it. Another node may still
            # hold that older entry and a later leader commit it: unknown.
            self._uncommitted -= replaced.size
            self._answer_all(replaced.slots, self._replaced_answer())
        lengths = [len(payload) for payload in payloads]
        self._proposals[index] = _Proposal(term, len(data), commands, lengths, slots)
        self._uncommitted += len(data)
        self.stats["entries_proposed"] += 1
        self.stats["commands_proposed"] += len(slots)

    def _replaced_answer(self) -> ErrorInfo:
        """The answer to the commands of a proposal whose index this node proposed at
        again after losing and regaining leadership: their fate is unknown."""
        return _UNKNOWN_REPLACED

    def _turn_away_all(self, slots: list[_Waiting], info: ErrorInfo) -> None:
        for slot in _each(slots):
            slot.link.refusals[self.group] = info
            self._error(slot, info)

    def _check_orphans(self) -> None:
        """Proposals of a leader that stepped down, unresolved after the grace period:
        the entries were lost or this node cannot hear the new leader. Unknown."""
        if self._proposals and self.now.mono - self._orphaned_since >= self._orphan_grace:
            self.fail_in_flight(
                OutcomeUnknownError("leadership changed before the command committed")
            )

    def _answer_all(self, slots: list[_Waiting], info: ErrorInfo) -> None:
        for slot in _each(slots):
            self._error(slot, info)

    def _fail_batch(self, error: HeraldError | None) -> None:
        """Answer writes not yet proposed (they were not carried out)."""
        if self._batch_slots:
            slots = self._batch_slots
            self._batch, self._batch_commands, self._batch_slots, self._batch_bytes = [], [], [], 0
            self._open_run, self._runs = None, 0
            self._turn_away_all(slots, self._not_leader() if error is None else error_info(error))

    def fail_in_flight(self, error: HeraldError) -> None:
        """Answer every proposal still waiting for its entry with ``error``."""
        if not self._proposals:
            return
        info = error_info(error, self.config.peers.get(self._raft.lead, ""))
        proposals = self._proposals
        self._proposals = {}
        self._uncommitted = 0
        for proposal in proposals.values():
            self._answer_all(proposal.slots, info)

    @property
    def in_flight(self) -> int:
        """Proposals awaiting their entry."""
        return len(self._proposals)

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
            # Nobody waits here for this entry's results (on_applied answers only
            # proposals), so its Delivers need not build their deliveries.
            return self.broker.apply(entry, answered=False)
        commands = proposal.commands
        batch = Batch(tuple(commands), time=commands[0].time)
        return self.broker.apply_decoded(entry.index, batch, batch_spans(proposal.lengths))

    def snapshot(self) -> bytes:
        return self.broker.snapshot()

    def checkpoint(self) -> Sequence[bytes | memoryview]:
        return self.broker.checkpoint()

    def pin(self) -> int:
        return self.broker.pin()

    def restore(self, data: bytes, index: int) -> None:
        self.broker.restore(data, index)

    # -- the host's observer ------------------------------------------------------------------

    def on_persisted(self, node: int, entries: Sequence[Entry], storage: Storage) -> None:
        if self._observer is not None:
            self._observer.on_persisted(node, entries, storage)

    def on_snapshot_installed(self, node: int, snapshot: Snapshot) -> None:
        self.applied = snapshot.index
        # Proposals whose index the snapshot jumped over: which entry committed
        # there is not known here any more.
        for index in [i for i in self._proposals if i <= snapshot.index]:
            proposal = self._proposals.pop(index)
            self._uncommitted -= proposal.size
            self._answer_all(proposal.slots, _UNKNOWN_SNAPSHOT)
        if self._observer is not None:
            self._observer.on_snapshot_installed(node, snapshot)

    def on_read_state(self, node: int, read_state: ReadState) -> None:
        pending = self._reads_pending.pop(read_state.context, None)
        if pending is not None:
            self._reads_ready.append((read_state.index, pending.reads))
        if self._observer is not None:
            self._observer.on_read_state(node, read_state)

    def on_applied(self, node: int, entry: Entry, result: object) -> None:
        self.applied = entry.index
        if self._observer is not None:
            self._observer.on_applied(node, entry, result)
        proposal = self._proposals.pop(entry.index, None)
        if proposal is None:
            return
        self._uncommitted -= proposal.size
        slots = proposal.slots
        if entry.term != proposal.term:
            # Another entry committed at this index: ours never can be.
            lost = ProposalLostError("another leader's entry replaced this command's entry")
            self._answer_all(slots, error_info(lost, self.config.peers.get(self._raft.lead, "")))
            return
        if type(result) is not BatchResult:
            # The whole entry was refused (cannot happen for batches this node encoded).
            error = (
                result
                if isinstance(result, HeraldError)
                else InvariantError(f"a batch applied to {type(result).__name__}")
            )
            self._answer_all(slots, error_info(error))
            return
        wake = self._wake
        for slot, outcome in zip(slots, result.results, strict=True):
            if isinstance(slot, list):
                self._answer_run(slot, outcome)
                continue
            if type(outcome) is Receipt:
                if not outcome.duplicate:
                    wake[outcome.queue] = wake.get(outcome.queue, 0) + 1
                if slot is not None:
                    self._reply(slot.link, Reply(slot.request.id, True, reply_value(outcome)))
                continue
            if slot is None:
                continue
            if isinstance(outcome, BrokerError):
                self._error(slot, error_info(outcome))
            elif type(outcome) is Deliveries:
                self._delivered(slot, outcome)
            else:
                if type(outcome) in (Nacked, Left, Redriven):
                    self._note_returned(outcome)
                self._reply(slot.link, Reply(slot.request.id, True, reply_value(outcome)))

    def _answer_run(self, slots: list[_Slot], outcome: object) -> None:
        """Answer each ack of a run (see _AckRun) with its own outcome."""
        if type(outcome) is not AckedMany:
            info = error_info(
                outcome
                if isinstance(outcome, HeraldError)
                else InvariantError(f"an ack run applied to {type(outcome).__name__}")
            )
            for slot in slots:
                self._error(slot, info)
            return
        reply = self._reply
        for slot, refusal in zip(slots, outcome.outcomes, strict=True):
            if refusal is None:
                reply(slot.link, Reply(slot.request.id, True, None))
            else:
                self._error(slot, error_info(refusal))

    def _note_returned(self, outcome: object) -> None:
        """Messages came back for redelivery: wake long polls of their queue."""
        if isinstance(outcome, Nacked):
            count, queue = (0 if outcome.dead_lettered else 1), outcome.queue
        elif isinstance(outcome, Left):
            count, queue = outcome.released, outcome.queue
        elif isinstance(outcome, Redriven):
            count, queue = len(outcome.sequences), outcome.queue
        else:
            return
        if count:
            self._wake[queue] = self._wake.get(queue, 0) + count

    # -- long polling -------------------------------------------------------------------------

    def _delivered(self, slot: _Slot, outcome: Deliveries) -> None:
        if outcome.deliveries or not slot.deadline or self.stopping:
            self._answer_delivery(slot, outcome)
            return
        if slot.link.closed:
            return
        if self.now.mono >= slot.deadline:
            self._reply(slot.link, Reply(slot.request.id, True, []))
            return
        request = slot.request
        assert isinstance(request, w.Deliver)
        groups = self._parked.setdefault(request.queue, {})
        groups.setdefault(request.group, deque()).append(slot)
        self._parked_count += 1
        self._next_poll_expiry = min(self._next_poll_expiry, slot.deadline)

    def _answer_delivery(self, slot: _Slot, outcome: Deliveries) -> None:
        """Reply with the deliveries, their bodies read back from the log.

        A node applies a delivery just after the entries that hold its messages
        (they are live, so the log keeps them), so the bodies are there. If one is
        not -- a state restored from a checkpoint that a compacted log no longer
        backs -- the answer is "unknown": the leases run out and the messages come
        back, which at-least-once allows; at-most-once may lose them, as it may.
        """
        try:
            value = reply_value(outcome)
        except (CompactedError, UnavailableError) as error:
            self._error(slot, error_info(_body_gone(error)))
            return
        self._reply(slot.link, Reply(slot.request.id, True, value))

    def _wake_polls(self) -> None:
        """Propose again the parked Delivers of queues that may have messages now."""
        wake, self._wake = self._wake, {}
        if not self._parked_count or not self.is_leader() or self.stopping:
            return
        stamp = self._stamp(self.now)
        for queue, count in wake.items():
            groups = self._parked.get(queue)
            if groups is None:
                continue
            for group in list(groups):
                polls = groups[group]
                for _ in range(min(count, len(polls))):
                    slot = polls.popleft()
                    self._parked_count -= 1
                    if slot.link.closed:
                        continue
                    try:
                        command = command_for(slot.request, stamp)
                        payload = encode(command)
                    except InvalidCommandError as error:  # pragma: no cover - it passed once
                        self._error(slot, error_info(error))
                        continue
                    self._add_to_batch(command, payload, slot)
                if not polls:
                    del groups[group]
            if not groups:
                del self._parked[queue]

    def _expire_polls(self) -> None:
        now = self.now.mono
        earliest = _NEVER
        for queue in list(self._parked):
            groups = self._parked[queue]
            for group in list(groups):
                kept: deque[_Slot] = deque()
                for slot in groups[group]:
                    if slot.link.closed:
                        continue
                    if slot.deadline <= now:
                        self._reply(slot.link, Reply(slot.request.id, True, []))
                    else:
                        kept.append(slot)
                        earliest = min(earliest, slot.deadline)
                self._parked_count -= len(groups[group]) - len(kept)
                if kept:
                    groups[group] = kept
                else:
                    del groups[group]
            if not groups:
                del self._parked[queue]
        self._next_poll_expiry = earliest

    def answer_parked_empty(self) -> None:
        """Answer every parked long poll with nothing (the node is stopping)."""
        parked, self._parked = self._parked, {}
        self._parked_count = 0
        for groups in parked.values():
            for polls in groups.values():
                for slot in polls:
                    self._reply(slot.link, Reply(slot.request.id, True, []))

    def _fail_parked(self) -> None:
        parked, self._parked = self._parked, {}
        self._parked_count = 0
        info = self._not_leader()
        for groups in parked.values():
            for polls in groups.values():
                for slot in polls:
                    self._error(slot, info)

    # -- reads --------------------------------------------------------------------------------

    def _on_read(self, link: ClientLink, request: w.Request, stamp: int) -> None:
        if type(request) is w.ListQueues and request.group != self.group:
            info = ErrorInfo(
                "InvalidCommandError",
                f"no data group {request.group}: the cluster's are 0..{self.group_count - 1}",
            )
            self._reply(link, Reply(request.id, False, None, info))
            return
        self._reads.append(_Slot(link, request, 0))

    def _issue_reads(self) -> None:
        reads, self._reads = self._reads, []
        self._read_seq += 1
        context = self._read_prefix + self._read_seq.to_bytes(8, "big")
        try:
            self.host.node.read_index(context)
        except NotLeaderError:
            info = self._not_leader()
            for slot in reads:
                self._error(slot, info)
            return
        self._reads_pending[context] = _PendingRead(self.now.mono + self._read_timeout, reads)

    def _serve_ready_reads(self) -> None:
        waiting: list[tuple[int, list[_Slot]]] = []
        for index, reads in self._reads_ready:
            if index > self.applied:
                waiting.append((index, reads))
                continue
            for slot in reads:
                self._reply(slot.link, self._serve_read(slot.request))
        self._reads_ready = waiting

    def _read_entry(self, index: int) -> bytes:
        """The data of committed entry ``index``, from the log (durable or still in
        flight to the disk). Raises CompactedError if this node no longer has it.

        The last few are kept: a delivery reads many messages of one entry, and a
        committed entry never changes.
        """
        recent = self._recent_entries
        data = recent.get(index)
        if data is None:
            data = self._raft.log.slice(index, index + 1, 1 << 62)[0].data
            if len(recent) >= _RECENT_ENTRIES:
                del recent[next(iter(recent))]
            recent[index] = data
        return data

    def _serve_read(self, request: w.Request) -> Reply:
        broker = self.broker
        try:
            if type(request) is w.ListQueues:
                return Reply(request.id, True, list(broker.list_queues()))
            if type(request) is w.Stats:
                return Reply(request.id, True, broker.stats(request.queue))
            if type(request) is w.Peek:
                limit = request.limit if 0 < request.limit <= MAX_PEEK else MAX_PEEK
                peeked = broker.peek(request.queue, request.group or None, limit)
                return Reply(request.id, True, [peeked_wire(p) for p in peeked])
            assert type(request) is w.DeadLetters
            letters = broker.dead_letters(
                request.queue, request.group or None, request.limit or None
            )
            return Reply(request.id, True, [dead_letter_wire(letter) for letter in letters])
        except BrokerError as error:
            return Reply(request.id, False, None, error_info(error))
        except (CompactedError, UnavailableError) as error:
            # A body this node no longer has (see _answer_delivery).
            return Reply(request.id, False, None, error_info(_body_gone(error)))

    def _expire_reads(self) -> None:
        now = self.now.mono
        for context, pending in list(self._reads_pending.items()):
            if pending.deadline <= now:
                del self._reads_pending[context]
                info = error_info(RequestTimeoutError("no read-index answer in time; retry"))
                for slot in pending.reads:
                    self._error(slot, info)

    def fail_reads(self, error: HeraldError) -> None:
        """Answer every read not yet served with ``error``."""
        self._fail_reads(error_info(error))

    def _fail_reads(self, info: ErrorInfo) -> None:
        pending, self._reads_pending = self._reads_pending, {}
        ready, self._reads_ready = self._reads_ready, []
        new, self._reads = self._reads, []
        groups = [p.reads for p in pending.values()] + [reads for _, reads in ready] + [new]
        for reads in groups:
            for slot in reads:
                self._error(slot, info)

    # -- status and handshakes ------------------------------------------------------------------

    def _on_status(self, link: ClientLink, request: w.Request, stamp: int) -> None:
        self._reply(link, Reply(request.id, True, self.status_view()))

    def note_loop_lag(self, lag: int, now: Instant) -> None:
        """The shell's event loop was kept from its timer ``lag`` microseconds: kept as
        the longest such pause of each second, for the last minute (status)."""
        second = now.mono // SECOND
        lags = self._loop_lags
        if lags and lags[-1][0] == second:
            if lag > lags[-1][1]:
                lags[-1] = (second, lag)
        else:
            lags.append((second, lag))
        self._loop_lag_max = max(self._loop_lag_max, lag)

    def status(self) -> dict[str, object]:
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
            # The longest pause of the event loop in each of the last 60 seconds,
            # newest first, and since the node started (milliseconds).
            "loop_lag_ms": [round(lag / 1000, 1) for _second, lag in reversed(self._loop_lags)],
            "loop_lag_max_ms": round(self._loop_lag_max / 1000, 1),
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

    # -- shutting down --------------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """Refuse new requests (ShuttingDownError), and the writes not yet proposed."""
        self.stopping = True
        self._fail_batch(ShuttingDownError("the node is shutting down"))

    def handover_target(self) -> int:
        """The most up-to-date follower (0: none), to hand leadership to first."""
        if not self.is_leader():
            return 0
        progress = self.host.node.status().progress
        followers = [(match, node) for node, match in progress if node != self.node_id]
        return max(followers)[1] if followers else 0

    def offer_leadership(self, target: int) -> bool:
        """Hand this group's leadership to ``target`` if this node leads it, no
        transfer is under way, and ``target`` holds the whole log (so the
        transfer costs one round trip, not a catch-up). True if offered."""
        if not self.host.node.caught_up(target):
            return False
        return self.transfer_leadership(target)

    def transfer_leadership(self, target: int) -> bool:
        try:
            self.host.node.transfer_leader(target)
        except NotLeaderError:
            return False
        return True


#: Committed entries kept at hand for reading bodies (see ServerCore._read_entry).
_RECENT_ENTRIES: Final = 8
#: At most this many messages, and bytes of their publishes, in one Carry.
_CARRY_LIMIT: Final = 4096
_CARRY_BYTES: Final = 8 << 20


def _body_gone(error: Exception) -> OutcomeUnknownError:
    return OutcomeUnknownError(f"a message's body is no longer in this node's log ({error})")


def _micros(seconds: float) -> int:
    return round(seconds * SECOND)


_NEVER: Final = 1 << 62
_OVERLOADED: Final = error_info(
    OverloadedError("too much uncommitted work on the leader; retry shortly")
)
_NO_TIME: Final = error_info(
    OverloadedError(
        "the leader has not heard the time from a majority of the voters yet; retry shortly"
    )
)
_UNKNOWN_REPLACED: Final = error_info(
    OutcomeUnknownError(
        "this node proposed at the command's index again after losing leadership; "
        "another node may still commit the earlier entry"
    )
)
_UNKNOWN_SNAPSHOT: Final = error_info(
    OutcomeUnknownError("a snapshot replaced the log at the command's index")
)
