"""A node's Raft groups as one request core: :class:`NodeCore` over one ServerCore per group.

A node hosts ``groups`` data groups (docs/design.md, "Many Raft groups per
node"); queue ``q`` lives in group ``herald.wire.placement.group_of(q, groups)``,
and each group is a :class:`~herald.node.server.ServerCore` with its own Raft
core, broker, log store and checkpoints. :class:`NodeCore` is what the shells
drive: it has the ServerCore's driving surface (connect, receive, step, tick,
begin/sync/finish, take_dirty, ...) and runs every group inside it, so the
asyncio runtime and the simulator keep their one loop each:

- **Requests** of a frame are split by their queue's group, keeping their
  order within each group (a queue's order is all the broker promises); each
  group answers its own, on the connection's one link. ``Status`` is answered
  by the node (every group's role and leader, :meth:`NodeCore.status`);
  ``ListQueues`` names the group it asks (clients ask each).
- **Raft messages** go to the group they name; a message for a group this
  node does not host is a misconfigured peer (:class:`WrongGroupError`).
- **One Ready cycle for all groups**: :meth:`begin` takes every group's Ready
  that has work (asking only the groups an input touched since: a peer's
  message touches its group, a request its queue's, a tick or anything else
  every group; asking all 64 on every message was most of what idle groups
  cost), :meth:`sync` makes them durable, :meth:`finish` finishes them
  in the same order. No ``begin`` while a sync is in flight, as for one group.

- **Leaders spread over the nodes**: group ``g`` prefers voter ``g mod n``
  (of the sorted voters). Every few election timeouts, a node that leads a
  group it is not the preferred leader of offers it to the preferred one if
  that node holds the whole log (Raft's leadership transfer, one round trip);
  offers that do not take back off, so a preferred node that cannot win
  (partitioned, slow) costs a transfer attempt now and then, not a storm. With
  one group there is nothing to spread and no transfer is made.

A group's connection refusal stands for that group only
(``ClientLink.refusals``): a node that leads one group and follows another
serves the first and turns the second's writes away on the same connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from herald.broker import Broker
from herald.errors import HeraldError, UsageError, WrongGroupError
from herald.raft import Message, Ready
from herald.wire import protocol as w
from herald.wire.placement import group_of
from herald.wire.protocol import PROTOCOL_VERSION

from .clock import Instant
from .config import MAX_GROUPS, NodeConfig
from .server import ClientLink, ServerCore

__all__ = ["NodeCore", "NodeReady"]

#: How often (in election timeouts) a leader of a group it should not lead
#: offers it to the preferred leader, and the most an unsuccessful offer's
#: wait grows to (in periods).
_SPREAD_TIMEOUTS = 3
_SPREAD_BACKOFF_MAX = 16


class NodeReady:
    """One Ready cycle of a node: the Ready of every group that had work, in group order."""

    __slots__ = ("must_sync", "parts")

    def __init__(self, parts: list[tuple[ServerCore, Ready]]) -> None:
        self.parts = parts
        self.must_sync = any(rd.must_sync for _core, rd in parts)

    @property
    def persisted_messages(self) -> list[Message]:
        """Every group's messages that wait for this cycle's sync."""
        return [m for _core, rd in self.parts for m in rd.persisted_messages]


class NodeCore:
    """A node's groups behind one driving surface (see the module's docstring).

    ``make_core(group)`` builds group ``group``'s ServerCore (its store and broker
    are the caller's choice: the runtime gives each group its own directory, the
    simulator its own simulated one). Not thread-safe, as ServerCore: one world
    drives it, apart from :meth:`sync`.
    """

    def __init__(
        self, config: NodeConfig, groups: int, make_core: Callable[[int], ServerCore]
    ) -> None:
        if not 1 <= groups <= MAX_GROUPS:
            raise UsageError(f"a node hosts 1 to {MAX_GROUPS} groups, not {groups}")
        self.config = config
        self.node_id = config.node_id
        self.group_count = groups
        self.cores: list[ServerCore] = []
        for group in range(groups):
            core = make_core(group)
            if core.group != group or core.group_count != groups:
                raise UsageError(
                    f"make_core({group}) built a core of group {core.group} of {core.group_count}"
                )
            core.status_view = self.status
            self.cores.append(core)
        #: Groups that may have work for the next begin (an input reached them,
        #: or their last Ready is being finished); ``_all``: every group may.
        self._touched: set[int] = set()
        self._all = True
        #: The cycle between begin and finish (every group of it is busy).
        self._cycle: NodeReady | None = None
        voters = sorted(config.voters)
        #: Each group's preferred leader (see the module's docstring).
        self.preferred = [voters[group % len(voters)] for group in range(groups)]
        self._ticks = 0
        # Per group: the tick of its next leadership offer, and the wait after it.
        period = max(1, config.election_tick) * _SPREAD_TIMEOUTS
        self._spread_period = period
        self._next_offer = [period] * groups
        self._offer_wait = [period] * groups

    # -- what the shells and tests read ------------------------------------------------------

    @property
    def broker(self) -> Broker:
        """Group 0's broker (the only one of a single-group node)."""
        return self.cores[0].broker

    def core_of(self, queue: str) -> ServerCore:
        """The group core that holds ``queue``."""
        return self.cores[group_of(queue, self.group_count)]

    @property
    def stats(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for core in self.cores:
            for name, value in core.stats.items():
                total[name] = total.get(name, 0) + value
        return total

    # -- connections ---------------------------------------------------------------------------

    def connect(self, name: str) -> ClientLink:
        # A link is the node's, shared by every group: group 0's core numbers them.
        return self.cores[0].connect(name)

    def disconnect(self, link: ClientLink) -> None:
        self.cores[0].disconnect(link)

    def take_dirty(self) -> list[ClientLink]:
        """Every group's links with replies waiting, each once.

        A link is in at most one group's list: the flag it carries is shared, and
        only this call clears it."""
        if len(self.cores) == 1:
            return self.cores[0].take_dirty()
        out: list[ClientLink] = []
        for core in self.cores:
            out.extend(core.take_dirty())
        return out

    # -- inputs ---------------------------------------------------------------------------------

    def receive(self, link: ClientLink, requests: Sequence[w.Request], now: Instant) -> None:
        """One frame's requests, each to its queue's group, in order within a group."""
        cores = self.cores
        if len(cores) == 1:
            cores[0].receive(link, requests, now)
            return
        count = self.group_count
        split: dict[int, list[w.Request]] = {}
        for request in requests:
            group = 0
            if isinstance(request, w.ListQueues):
                # Out of range: group 0 answers that there is no such group.
                group = request.group if 0 <= request.group < count else 0
            elif not isinstance(request, w.Status):  # Status: the node's view, from 0
                queue: str = request.queue
                group = group_of(queue, count)
            batch = split.get(group)
            if batch is None:
                split[group] = [request]
            else:
                batch.append(request)
        touched = self._touched
        for group, batch in split.items():
            touched.add(group)
            cores[group].receive(link, batch, now)

    def step(self, messages: Sequence[Message], now: Instant) -> None:
        """Peers' Raft messages, each to the group it names."""
        cores = self.cores
        count = self.group_count
        if count == 1:
            cores[0].step(messages, now)
            return
        touched = self._touched
        for message in messages:
            group = message.group
            if not 0 <= group < count:
                raise WrongGroupError(
                    f"node {self.node_id} hosts groups 0..{count - 1}, "
                    f"not group {group} (from node {message.src})"
                )
            touched.add(group)
            cores[group].step((message,), now)

    def touch(self, group: int) -> None:
        """A group's core was driven directly (a leadership transfer, a test's
        campaign): ask it at the next :meth:`begin`, not a tick later."""
        self._touched.add(group)

    def report_unreachable(self, node: int) -> None:
        self._all = True
        for core in self.cores:
            core.report_unreachable(node)

    def tick(self, now: Instant) -> None:
        # Every group, also the fallback for work no input here announced (a
        # group core driven directly): it waits a tick at most.
        self._all = True
        for core in self.cores:
            core.tick(now)
        if self.group_count > 1:
            self._ticks += 1
            self._spread_leaders()

    def _spread_leaders(self) -> None:
        """Offer each group this node leads, and should not, to its preferred leader."""
        ticks = self._ticks
        me = self.node_id
        for core in self.cores:
            group = core.group
            if ticks < self._next_offer[group]:
                continue
            preferred = self.preferred[group]
            if preferred == me or not core.is_leader():
                # The preferred leader, or not leading: the next time it leads a
                # group it should not, it waits a whole period first.
                self._next_offer[group] = ticks + self._spread_period
                self._offer_wait[group] = self._spread_period
                continue
            if core.offer_leadership(preferred):
                # Still leading at the next offer means this one did not take: wait
                # twice as long each time, up to a cap.
                wait = self._offer_wait[group]
                self._next_offer[group] = ticks + wait
                self._offer_wait[group] = min(wait * 2, self._spread_period * _SPREAD_BACKOFF_MAX)

    def note_loop_lag(self, lag: int, now: Instant) -> None:
        # The loop is the node's: every group saw the same pause.
        self._all = True
        for core in self.cores:
            core.note_loop_lag(lag, now)

    # -- the Ready cycle -----------------------------------------------------------------------

    def begin(self, now: Instant) -> NodeReady | None:
        """Every group's next Ready (proposed, sent, written; not synced), or None."""
        cores = self.cores
        touched = self._touched
        if self._all or len(cores) == 1:
            asked = cores
            self._all = False
        else:
            asked = [cores[group] for group in sorted(touched)]
        touched.clear()
        parts = []
        for core in asked:
            rd = core.begin(now)
            if rd is not None:
                parts.append((core, rd))
        if not parts:
            return None
        cycle = self._cycle = NodeReady(parts)
        return cycle

    def sync(self, nrd: NodeReady) -> None:
        """Make the cycle durable (may run off the driving thread)."""
        for core, rd in nrd.parts:
            if rd.must_sync:
                core.sync(rd)

    def finish(self, nrd: NodeReady, now: Instant) -> None:
        touched = self._touched
        if nrd is self._cycle:
            self._cycle = None
        for core, rd in nrd.parts:
            core.finish(rd, now)
            touched.add(core.group)  # what it applied may have made more work

    @property
    def busy(self) -> bool:
        """A cycle is between :meth:`begin` and :meth:`finish` (asked on every
        pump: not by asking every group)."""
        return self._cycle is not None

    @property
    def wants_checkpoint_writes(self) -> bool:
        return any(core.wants_checkpoint_writes for core in self.cores)

    def write_checkpoint(self) -> None:
        """The next slice of one group's checkpoint (the lowest group that has one)."""
        self._all = True
        for core in self.cores:
            if core.wants_checkpoint_writes:
                core.write_checkpoint()
                return

    def checkpoint_at_stop(self) -> None:
        """Checkpoint every group whole; the first failure is raised after all tried."""
        self._all = True
        failure: Exception | None = None
        for core in self.cores:
            try:
                core.checkpoint_at_stop()
            except Exception as error:
                failure = failure or error
        if failure is not None:
            raise failure

    # -- roles -----------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        """Whether this node leads any group."""
        return any(core.is_leader() for core in self.cores)

    def leading(self) -> list[int]:
        """The groups this node leads."""
        return [core.group for core in self.cores if core.is_leader()]

    # -- shutting down ---------------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        self._all = True
        for core in self.cores:
            core.begin_shutdown()

    @property
    def in_flight(self) -> int:
        return sum(core.in_flight for core in self.cores)

    def fail_in_flight(self, error: HeraldError) -> None:
        self._all = True
        for core in self.cores:
            core.fail_in_flight(error)

    def fail_reads(self, error: HeraldError) -> None:
        self._all = True
        for core in self.cores:
            core.fail_reads(error)

    def answer_parked_empty(self) -> None:
        self._all = True
        for core in self.cores:
            core.answer_parked_empty()

    # -- status and handshakes ----------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """Group 0's status, as a single-group node gives it, plus every group's
        role, term, leader and indexes under ``groups``."""
        status = self.cores[0].status()
        peers = self.config.peers
        groups = []
        for core in self.cores:
            node = core.host.node.status()
            groups.append(
                {
                    "group": core.group,
                    "role": node.role.name.lower(),
                    "term": node.term,
                    "leader": node.leader,
                    "leader_address": peers.get(node.leader, ""),
                    "commit": node.commit,
                    "applied": core.applied,
                    "last_index": node.last_index,
                }
            )
        status["groups"] = groups
        return status

    def check_peer(self, hello: w.Hello) -> str:
        refusal = self.cores[0].check_peer(hello)
        if refusal:
            return refusal
        if hello.groups != self.group_count:
            return (
                f"node {hello.node} hosts {hello.groups} groups, node {self.node_id} "
                f"{self.group_count}: every node of a cluster must be started with the same "
                "--groups (a queue's group follows from the count)"
            )
        return ""

    def welcome(self) -> w.Welcome:
        peers = self.config.peers
        leaders = [(core.leader, peers.get(core.leader, "")) for core in self.cores]
        return w.Welcome(
            PROTOCOL_VERSION,
            self.node_id,
            leaders[0][0],
            leaders[0][1],
            self.config.max_in_flight,
            self.config.max_frame,
            self.group_count,
            leaders,
        )
