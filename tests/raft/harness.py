"""A synchronous, deterministic, in-memory Raft cluster for tests.

The vocabulary follows etcd-raft's interaction tests and raft-rs's test network:
nodes are :class:`RawNode` instances over :class:`MemoryStorage`, each with its
own seeded ``random.Random``; the network is one FIFO queue of in-flight
messages; nothing moves unless a test says so.

- ``tick(n, k)``, ``campaign(n)``, ``propose(n, data)``, ``read_index(n, ctx)``,
  ``transfer(leader, target)`` drive one node (nothing is delivered);
- ``process_ready(n)`` carries out one Ready the way the RawNode contract asks:
  ``messages`` go to the network, then snapshot, entries and hard state are
  written to the node's MemoryStorage (our "disk"), then ``persisted_messages``
  go to the network, then the snapshot and the committed entries are applied,
  then ``advance``;
- ``deliver()`` delivers one round: every message queued at the time of the
  call, in queue order, each stepped into its destination;
- ``stabilize()`` alternates "process every Ready" and "deliver a round" until
  there is nothing left to do;
- ``isolate``, ``cut``, ``drop``, ``ignore`` and ``recover`` shape the network;
  a message is dropped at delivery time if a rule forbids it;
- ``crash`` forgets the node's volatile state and every message to or from it;
  ``restart`` builds a new RawNode over the surviving storage, with
  ``Config(applied=snapshot index)``, and restores the state machine from the
  snapshot, as the node host does.

Every delivered message is written to ``transcript`` in a compact form, for
example ``1->2 APPEND t2 i5 lt1 +2 c4`` (type, term, index, log term, number of
entries, commit), so a test can compare a scenario with a golden string.
"""

from __future__ import annotations

import enum
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from herald.raft import (
    Config,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    Raft,
    RawNode,
    ReadState,
    Ready,
    Role,
    Snapshot,
)

MT = MessageType

__all__ = ["Cluster", "Peer", "case_id", "describe", "make_entries"]


def case_id(value: object) -> str | None:
    """Readable pytest ids: enum members by name, vote maps as ``2+,3-``."""
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, dict):
        return ",".join(f"{k}{'+' if v else '-'}" for k, v in value.items()) or "none"
    return None


def describe(m: Message) -> str:
    """One line per message: ``src->dst TYPE t<term>`` plus the fields that type uses."""
    parts = [f"{m.src}->{m.dst}", m.type.name, f"t{m.term}"]
    kind = m.type
    if kind == MT.APPEND:
        parts += [f"i{m.index}", f"lt{m.log_term}", f"+{len(m.entries)}", f"c{m.commit}"]
    elif kind == MT.APPEND_RESPONSE:
        parts.append(f"i{m.index}")
        if m.reject:
            parts += ["reject", f"hint{m.reject_hint}", f"lt{m.log_term}"]
    elif kind in (MT.VOTE, MT.PRE_VOTE):
        parts += [f"i{m.index}", f"lt{m.log_term}"]
        if m.transfer:
            parts.append("transfer")
    elif kind in (MT.VOTE_RESPONSE, MT.PRE_VOTE_RESPONSE):
        if m.reject:
            parts.append("reject")
    elif kind == MT.HEARTBEAT:
        parts.append(f"c{m.commit}")
    elif kind == MT.SNAPSHOT:
        assert m.snapshot is not None
        parts.append(f"snap i{m.snapshot.index} t{m.snapshot.term}")
    elif kind == MT.READ_INDEX_RESPONSE:
        parts.append(f"i{m.index}")
    if m.context:
        parts.append(f"ctx={m.context.decode()}")
    return " ".join(parts)


def make_entries(terms: Iterable[int], start: int = 1) -> list[Entry]:
    """Entries ``start, start+1, ...`` with the given terms and recognisable payloads."""
    return [
        Entry(term, index, f"e{index}t{term}".encode())
        for index, term in enumerate(terms, start=start)
    ]


def _encode_state(state: list[tuple[int, bytes]]) -> bytes:
    return json.dumps([[index, data.hex()] for index, data in state]).encode()


def _decode_state(data: bytes) -> list[tuple[int, bytes]]:
    return [(index, bytes.fromhex(text)) for index, text in json.loads(data or b"[]")]


@dataclass
class Peer:
    """One node of the cluster: its durable storage, its RawNode, its state machine."""

    id: int
    config: Config
    storage: MemoryStorage
    node: RawNode | None = None
    #: The state machine: (index, payload) of every NORMAL entry applied, in order.
    state: list[tuple[int, bytes]] = field(default_factory=list)
    #: Every entry this node applied, across restarts (re-applications included).
    applied: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    #: The hard state as of the last Ready with ``must_sync`` (what an fsync covered).
    synced_hard_state: HardState = field(default_factory=HardState)
    restarts: int = 0

    @property
    def raft(self) -> Raft:
        assert self.node is not None, f"node {self.id} is down"
        return self.node.raft

    @property
    def alive(self) -> bool:
        return self.node is not None


class Cluster:
    """N nodes (ids ``1..n``) and the network between them. See the module docstring."""

    def __init__(
        self,
        n: int = 3,
        *,
        seed: int = 0,
        raft_class: type[Raft] = Raft,
        logs: dict[int, list[int]] | None = None,
        terms: dict[int, int] | None = None,
        **overrides: object,
    ) -> None:
        """``logs`` gives a node's initial log as a list of entry terms (index 1 first);
        ``terms`` its initial current term (default: its last entry's term);
        ``overrides`` are Config fields shared by every node."""
        self.seed = seed
        self.raft_class = raft_class
        self.ids = tuple(range(1, n + 1))
        self.peers: dict[int, Peer] = {}
        self.queue: list[Message] = []
        self.transcript: list[str] = []
        self.dropped: list[str] = []
        #: Every Ready handled, with its node, in order (for checks of the contract).
        self.readies: list[tuple[int, Ready]] = []
        self._cut: set[tuple[int, int]] = set()
        self._ignored: set[MessageType] = set()
        for node_id in self.ids:
            config = Config(id=node_id, voters=self.ids, **overrides)  # type: ignore[arg-type]
            storage = MemoryStorage(self.ids)
            log_terms = (logs or {}).get(node_id, [])
            storage.append(make_entries(log_terms))
            term = (terms or {}).get(node_id, max(log_terms, default=0))
            if term:
                storage.set_hard_state(HardState(term=term))
            peer = Peer(node_id, config, storage, synced_hard_state=storage.hard_state)
            peer.node = RawNode(config, storage, self._rng(node_id, 0), raft_class)
            self.peers[node_id] = peer

    def _rng(self, node_id: int, restarts: int) -> random.Random:
        return random.Random(f"{self.seed}/{node_id}/{restarts}")

    # -- access -------------------------------------------------------------------------

    def node(self, node_id: int) -> RawNode:
        node = self.peers[node_id].node
        assert node is not None, f"node {node_id} is down"
        return node

    def raft(self, node_id: int) -> Raft:
        return self.peers[node_id].raft

    def alive(self) -> list[int]:
        return [i for i in self.ids if self.peers[i].alive]

    def leader(self) -> int | None:
        """The live leader of the highest term, or None."""
        best: tuple[int, int] | None = None
        for node_id in self.alive():
            raft = self.raft(node_id)
            if raft.role == Role.LEADER and (best is None or raft.term > best[0]):
                best = (raft.term, node_id)
        return None if best is None else best[1]

    def log_terms(self, node_id: int) -> list[int]:
        """The terms of the node's log from its first index on."""
        log = self.raft(node_id).log
        return [log.term(i) for i in range(log.first_index(), log.last_index() + 1)]

    def applied_data(self, node_id: int) -> list[bytes]:
        """Payloads of the NORMAL entries in the node's state machine, in order."""
        return [data for _, data in self.peers[node_id].state]

    # -- inputs ---------------------------------------------------------------------------

    def tick(self, node_id: int, n: int = 1) -> None:
        for _ in range(n):
            self.node(node_id).tick()

    def tick_all(self, n: int = 1) -> None:
        """Tick every live node ``n`` times, processing Readies and delivering a round
        after each tick (a coarse but deterministic clock)."""
        for _ in range(n):
            for node_id in self.alive():
                self.node(node_id).tick()
            self.process_all()
            self.deliver()

    def campaign(self, node_id: int) -> None:
        self.node(node_id).campaign()

    def propose(self, node_id: int, data: bytes) -> int:
        return self.node(node_id).propose(data)

    def read_index(self, node_id: int, context: bytes) -> None:
        self.node(node_id).read_index(context)

    def transfer(self, leader: int, target: int) -> None:
        self.node(leader).transfer_leader(target)

    def step(self, node_id: int, message: Message) -> None:
        """Deliver a hand-made message directly (recorded in the transcript)."""
        self.transcript.append(describe(message))
        self.node(node_id).step(message)

    # -- the Ready cycle --------------------------------------------------------------------

    def process_ready(self, node_id: int) -> Ready | None:
        """Carry out one Ready of ``node_id`` (see the module docstring); None if idle."""
        node = self.node(node_id)
        if not node.has_ready():
            return None
        rd = node.ready()
        self.handle_ready(node_id, rd)
        return rd

    def handle_ready(self, node_id: int, rd: Ready) -> None:
        """Carry out ``rd``, already taken from the node, and advance."""
        peer = self.peers[node_id]
        node = self.node(node_id)
        self.readies.append((node_id, rd))
        self.queue.extend(rd.messages)
        storage = peer.storage
        if rd.snapshot is not None:
            storage.apply_snapshot(rd.snapshot)
        if rd.entries:
            storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        if rd.must_sync:
            peer.synced_hard_state = storage.hard_state
        self.queue.extend(rd.persisted_messages)
        if rd.snapshot is not None:
            peer.state = _decode_state(rd.snapshot.data)
        for entry in rd.committed_entries:
            peer.applied.append(entry)
            if entry.kind == EntryKind.NORMAL:
                peer.state.append((entry.index, entry.data))
        peer.read_states.extend(rd.read_states)
        node.advance(rd)

    def process_all(self, max_passes: int = 100) -> None:
        """Process Readies of every live node, in id order, until none has one."""
        for _ in range(max_passes):
            busy = False
            for node_id in self.alive():
                if self.process_ready(node_id) is not None:
                    busy = True
            if not busy:
                return
        raise AssertionError(f"nodes still had Readies after {max_passes} passes")

    # -- the network ------------------------------------------------------------------------

    def _blocked(self, m: Message) -> bool:
        return (m.src, m.dst) in self._cut or m.type in self._ignored

    def deliver(
        self,
        *,
        frm: int | None = None,
        to: int | None = None,
        types: Iterable[MessageType] | None = None,
    ) -> list[Message]:
        """Deliver one round: the queued messages matching the filters (others stay)."""
        wanted = None if types is None else tuple(types)
        batch: list[Message] = []
        rest: list[Message] = []
        for m in self.queue:
            if (
                (frm is None or m.src == frm)
                and (to is None or m.dst == to)
                and (wanted is None or m.type in wanted)
            ):
                batch.append(m)
            else:
                rest.append(m)
        self.queue = rest
        delivered = []
        for m in batch:
            if self._blocked(m) or not self.peers[m.dst].alive:
                self.dropped.append(describe(m))
                continue
            self.transcript.append(describe(m))
            self.node(m.dst).step(m)
            delivered.append(m)
        return delivered

    def take(
        self,
        *,
        frm: int | None = None,
        to: int | None = None,
        types: Iterable[MessageType] | None = None,
    ) -> list[Message]:
        """Remove matching messages from the network without delivering them."""
        wanted = None if types is None else tuple(types)
        taken = [
            m
            for m in self.queue
            if (frm is None or m.src == frm)
            and (to is None or m.dst == to)
            and (wanted is None or m.type in wanted)
        ]
        self.queue = [m for m in self.queue if m not in taken]
        return taken

    def stabilize(self, max_rounds: int = 500) -> list[str]:
        """Process Readies and deliver rounds until quiet; returns the new transcript lines."""
        start = len(self.transcript)
        for _ in range(max_rounds):
            self.process_all()
            if not self.queue:
                return self.transcript[start:]
            self.deliver()
        raise AssertionError(f"cluster did not stabilize within {max_rounds} rounds")

    def run_until(self, done: Callable[[], bool], max_rounds: int = 100) -> None:
        """Process Readies and deliver rounds until ``done()`` holds (checked before
        each round); fails if it does not within ``max_rounds``."""
        for _ in range(max_rounds):
            if done():
                return
            self.process_all()
            self.deliver()
        raise AssertionError(f"condition not reached within {max_rounds} rounds")

    def take_transcript(self) -> list[str]:
        lines, self.transcript = self.transcript, []
        return lines

    def isolate(self, node_id: int) -> None:
        for other in self.ids:
            if other != node_id:
                self.cut(node_id, other)

    def cut(self, a: int, b: int) -> None:
        self._cut.add((a, b))
        self._cut.add((b, a))

    def drop(self, frm: int, to: int) -> None:
        """Drop messages from ``frm`` to ``to`` (one direction only)."""
        self._cut.add((frm, to))

    def ignore(self, kind: MessageType) -> None:
        self._ignored.add(kind)

    def recover(self) -> None:
        self._cut.clear()
        self._ignored.clear()

    # -- crashes ------------------------------------------------------------------------------

    def crash(self, node_id: int, *, lose_unsynced: bool = False) -> None:
        """Stop the node; messages to and from it in the network are lost.

        With ``lose_unsynced`` the hard state falls back to the one the last
        ``must_sync`` Ready made durable (a commit-only write was not fsynced).
        """
        peer = self.peers[node_id]
        peer.node = None
        self.queue = [m for m in self.queue if node_id not in (m.src, m.dst)]
        if lose_unsynced:
            peer.storage.set_hard_state(peer.synced_hard_state)

    def restart(self, node_id: int, **overrides: object) -> RawNode:
        """Start the node again over its durable storage (as the node host does)."""
        peer = self.peers[node_id]
        assert peer.node is None, f"node {node_id} is still running"
        storage = peer.storage
        snapshot = storage.snapshot()
        applied = snapshot.index
        peer.state = _decode_state(snapshot.data)
        hard_state = storage.hard_state
        if hard_state.commit < applied:
            storage.set_hard_state(replace(hard_state, commit=applied))
        peer.config = replace(peer.config, applied=applied, **overrides)  # type: ignore[arg-type]
        peer.restarts += 1
        peer.read_states = []
        peer.node = RawNode(
            peer.config, storage, self._rng(node_id, peer.restarts), self.raft_class
        )
        return peer.node

    # -- snapshots ----------------------------------------------------------------------------

    def compact(self, node_id: int, index: int) -> Snapshot:
        """Snapshot the node's state machine at ``index`` (applied) and compact its log."""
        peer = self.peers[node_id]
        if index > self.raft(node_id).log.applied:
            raise ValueError(f"node {node_id} has not applied {index}")
        state = [(i, data) for i, data in peer.state if i <= index]
        snapshot = peer.storage.create_snapshot(index, ConfState(self.ids), _encode_state(state))
        peer.storage.compact(index)
        return snapshot

    # -- checks -------------------------------------------------------------------------------

    def safety_violations(self) -> list[str]:
        """State-machine safety (Figure 3): no two applications of different entries at
        one index, on one node or across nodes. Returns a description of each."""
        seen: dict[int, tuple[int, Entry]] = {}
        problems = []
        for node_id in self.ids:
            for entry in self.peers[node_id].applied:
                first = seen.setdefault(entry.index, (node_id, entry))
                if first[1] != entry:
                    problems.append(
                        f"index {entry.index}: node {first[0]} applied {first[1]}, "
                        f"node {node_id} applied {entry}"
                    )
        return problems
