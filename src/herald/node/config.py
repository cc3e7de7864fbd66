"""The settings of one node server, validated on construction, and address parsing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from herald.errors import ConfigError
from herald.wire.frames import DEFAULT_MAX_FRAME

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_CLUSTER",
    "DEFAULT_DATA_DIR",
    "DEFAULT_PORT",
    "NodeConfig",
    "format_peers",
    "parse_address",
    "parse_peers",
]

#: The documented default: ``herald serve`` with no flags listens here.
DEFAULT_PORT: Final = 7430
DEFAULT_ADDRESS: Final = f"127.0.0.1:{DEFAULT_PORT}"
DEFAULT_DATA_DIR: Final = "herald-data"
DEFAULT_CLUSTER: Final = "herald"
MIB: Final = 1 << 20
#: The most data groups a node hosts (each costs a log store, a broker and a
#: tick's work; far more than two cores can use).
MAX_GROUPS: Final = 64


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as a pair. Raises ConfigError."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError(f"an address must look like host:port, not {text!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ConfigError(f"port {port} of {text!r} is out of range")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def parse_peers(text: str) -> dict[int, str]:
    """``1=host:port,2=host:port,...`` as a map of node id to address. Raises ConfigError."""
    peers: dict[int, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        node, sep, address = item.partition("=")
        if not sep or not node.strip().isdigit():
            raise ConfigError(f"a peer must look like ID=host:port, not {item!r}")
        node_id = int(node)
        if node_id <= 0:
            raise ConfigError(f"node ids must be positive, not {node_id}")
        if node_id in peers:
            raise ConfigError(f"node {node_id} is listed twice in --peers")
        parse_address(address)
        peers[node_id] = address.strip()
    if not peers:
        raise ConfigError("--peers names no node")
    return peers


def format_peers(peers: dict[int, str]) -> str:
    return ",".join(f"{node}={address}" for node, address in sorted(peers.items()))


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything a node server needs; times in seconds unless named ``*_tick``.

    ``peers`` maps every voter (this node included) to the address clients and
    peers reach it at; ``listen`` is where this node binds (by default its own
    entry in ``peers``).
    """

    node_id: int = 1
    peers: dict[int, str] = field(default_factory=lambda: {1: DEFAULT_ADDRESS})
    listen: str = ""
    data_dir: str = DEFAULT_DATA_DIR
    cluster: str = DEFAULT_CLUSTER
    #: Data groups, each a Raft group of every voter with its own log and
    #: broker; a queue lives in one (herald.wire.placement). Fixed when the
    #: cluster is created: every node must have the same.
    groups: int = 1
    #: Open the write-ahead log with repair: damaged log suffixes are cut away.
    repair: bool = False
    #: Where to dial a peer when it is not its ``peers`` address (a proxy in
    #: between, as fault injection puts one on every link). Clients are always
    #: sent to the ``peers`` addresses.
    dial: dict[int, str] = field(default_factory=dict)
    #: TESTING ONLY: keep unsynced log writes in process memory, so a SIGKILL
    #: loses them as a power cut would (:mod:`herald.storage.volatile`).
    volatile_storage: bool = False

    # -- Raft timing: one tick every ``tick_interval`` seconds of real time.
    tick_interval: float = 0.010
    election_tick: int = 15
    election_tick_max: int = 29
    heartbeat_tick: int = 3
    #: How often the leader proposes a broker Tick, so leases expire without traffic.
    broker_tick_interval: float = 0.100
    #: Raft's refinements (off only in the simulator, which checks Raft is safe without).
    pre_vote: bool = True
    check_quorum: bool = True
    #: Appends in flight per follower, and the most bytes of entries in one append.
    max_inflight_msgs: int = 256
    max_size_per_msg: int = 1 << 20

    # -- limits.
    #: Requests one client connection may have unanswered before the server
    #: stops reading it (announced in Welcome).
    max_in_flight: int = 4096
    #: Largest frame a client may send (announced in Welcome).
    max_frame: int = DEFAULT_MAX_FRAME
    #: Largest frame a peer may send (snapshots travel in one frame).
    peer_max_frame: int = 1 << 30
    #: Bytes proposed but not yet applied beyond which writes get OverloadedError.
    max_uncommitted_bytes: int = 64 * MIB
    #: A batch entry is proposed early once its commands reach this size.
    max_batch_bytes: int = 1 * MIB
    #: Replies waiting in a connection's send buffer beyond which the server
    #: stops reading that connection (backpressure) ...
    output_high_water: int = 4 * MIB
    #: ... and beyond which it closes the connection (the client stopped reading).
    max_output_bytes: int = 64 * MIB
    #: Unsent bytes queued for one peer beyond which messages to it are dropped.
    peer_queue_bytes: int = 64 * MIB
    #: A connection must complete its handshake within this time.
    handshake_timeout: float = 5.0
    #: A linearizable read not served within this time is answered with an error.
    read_timeout: float = 5.0

    # -- checkpoints and compaction.
    #: A checkpoint every this many applied entries ...
    snapshot_entries: int = 10_000
    #: ... or this many bytes of applied entries, whichever comes first: a
    #: restart replays at most about this much of the log.
    checkpoint_bytes: int = 16 * MIB
    #: Entries kept before the snapshot for slow followers.
    retain_entries: int = 1_000
    #: Decoded log records kept in memory for reads (the tail just written).
    log_cache_bytes: int = 8 * MIB

    # -- shutdown.
    #: How long a stopping node waits for proposals in flight to apply.
    shutdown_grace: float = 2.0
    #: A stopping leader first hands leadership to its most up-to-date follower.
    transfer_on_shutdown: bool = True

    def __post_init__(self) -> None:
        if self.node_id <= 0:
            raise ConfigError(f"node id must be positive, not {self.node_id}")
        if self.node_id not in self.peers:
            raise ConfigError(
                f"node {self.node_id} is not among the peers ({format_peers(self.peers)})"
            )
        for address in self.peers.values():
            parse_address(address)
        for node, address in self.dial.items():
            if node not in self.peers or node == self.node_id:
                raise ConfigError(f"--dial names node {node}, which is not another peer")
            parse_address(address)
        parse_address(self.listen_address)
        if not self.cluster or len(self.cluster) > 255:
            raise ConfigError("the cluster name must be 1..255 characters")
        if self.tick_interval <= 0 or self.broker_tick_interval <= 0:
            raise ConfigError("tick intervals must be positive")
        if self.heartbeat_tick <= 0 or self.election_tick <= self.heartbeat_tick:
            raise ConfigError("need 0 < heartbeat_tick < election_tick")
        if self.election_tick_max < self.election_tick:
            raise ConfigError("election_tick_max must be at least election_tick")
        for name in (
            "max_in_flight",
            "max_inflight_msgs",
            "max_size_per_msg",
            "max_frame",
            "peer_max_frame",
            "max_uncommitted_bytes",
            "max_batch_bytes",
            "output_high_water",
            "max_output_bytes",
            "peer_queue_bytes",
            "snapshot_entries",
            "checkpoint_bytes",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if not 1 <= self.groups <= MAX_GROUPS:
            raise ConfigError(f"groups must be in 1..{MAX_GROUPS}, not {self.groups}")
        if self.retain_entries < 0 or self.log_cache_bytes < 0:
            raise ConfigError("retain_entries and log_cache_bytes must not be negative")
        if self.handshake_timeout <= 0 or self.read_timeout <= 0 or self.shutdown_grace < 0:
            raise ConfigError("timeouts must be positive")

    @property
    def listen_address(self) -> str:
        return self.listen or self.peers[self.node_id]

    @property
    def voters(self) -> tuple[int, ...]:
        return tuple(sorted(self.peers))
