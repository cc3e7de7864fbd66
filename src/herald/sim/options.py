"""Everything a simulation run does is drawn from its seed (swarm testing).

Each seed picks its own cluster size, network profile, fault kinds and rates,
so a thousand seeds explore a thousand different worlds rather than one world a
thousand times. All draws come from one ``random.Random(seed)`` in a fixed
order; the options are printed under the ``SEED=`` line so a failure can be
read before it is replayed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from herald.storage import DiskFaults

from .network import NetworkProfile
from .scheduler import MS, SECOND

__all__ = ["FAULT_KINDS", "WORKLOADS", "QueueParams", "SimOptions", "draw_options"]

#: What the clients do: propose opaque entries to Raft, or use the queue.
WORKLOADS = ("raft", "queue")


@dataclass(frozen=True, slots=True)
class QueueParams:
    """The queue workload's seed-drawn shape. Times are virtual microseconds."""

    producers: int
    messages: int  # per producer
    publish_interval: int
    use_keys: bool  # idempotency keys instead of producer sequence numbers
    consumers: int  # per group
    batch: int  # the consumers' prefetch
    lease: int
    max_deliveries: int
    process_time: int  # mean
    slow: float  # chance a message takes longer than its lease
    consumer_crash: float  # chance, per message, of a consumer crash around it
    poll_interval: int
    # -- what users do that the broker refuses, and what else goes wrong --------
    pipeline: int = 1  # publishes one producer keeps in flight
    too_large: float = 0.0  # chance a publish's body exceeds the queue's limit
    max_message_bytes: int = 256
    max_length: int | None = None  # the main queue's limit (queue full refusals)
    producer_crash: float = 0.0  # chance, per publish, that its producer dies
    relay: bool = False  # an Outbox relay publishes too
    relay_bad_rows: float = 0.0  # chance an Outbox row names a queue that does not exist
    recreate_every: int = 0  # the scratch queue is deleted and made again (0: never)
    max_uncommitted_bytes: int = 64 << 20  # the servers' overload limit
    dedup_ttl: int = 120 * SECOND
    auto_extend: bool = False
    hands: int = 1  # deliveries a consumer works on at once, then acks together

    def describe(self) -> str:
        return (
            f"queue: producers={self.producers}x{self.messages} "
            f"publish_every={self.publish_interval / MS:.0f}ms pipeline={self.pipeline} "
            f"dedup={'keys' if self.use_keys else 'producer-seq'} "
            f"consumers={self.consumers}/group prefetch={self.batch} hands={self.hands} "
            f"lease={self.lease / MS:.0f}ms auto_extend={'on' if self.auto_extend else 'off'} "
            f"max_deliveries={self.max_deliveries} process={self.process_time / MS:.0f}ms "
            f"slow={self.slow:.2f} consumer_crash={self.consumer_crash:.2f} "
            f"producer_crash={self.producer_crash:.3f} too_large={self.too_large:.2f} "
            f"max_length={self.max_length or 'none'} relay={'on' if self.relay else 'off'} "
            f"recreate_every={self.recreate_every / MS:.0f}ms "
            f"overload_at={self.max_uncommitted_bytes}B dedup_ttl={self.dedup_ttl / SECOND:.0f}s"
        )


#: The fault kinds a run can inject; ``herald sim --faults`` picks a subset.
FAULT_KINDS = ("network", "crash", "pause", "clock", "disk")


@dataclass(frozen=True, slots=True)
class SimOptions:
    """The full description of one run. Times are virtual microseconds."""

    seed: int
    nodes: int
    network: NetworkProfile
    faults: tuple[str, ...]
    fault_interval: int  # mean time between nemesis actions
    safety_duration: int
    liveness_bound: int
    tick_interval: int
    election_tick: int
    election_tick_max: int
    heartbeat_tick: int
    drift: float  # each node's clock runs at a rate in [1 - drift, 1 + drift]
    fsync_latency: int
    clients: int
    propose_interval: int  # mean time between one client's proposals
    max_pending: int  # proposals one client keeps in flight
    read_fraction: float
    snapshot_entries: int
    pre_vote: bool = True
    check_quorum: bool = True
    #: Probability that the nemesis strikes a newly elected leader soon after.
    hunt_leaders: float = 0.0
    #: What a power loss does to every node's disk (torn and misordered writes).
    crash_disk: DiskFaults = field(default_factory=DiskFaults)
    #: Media faults (bit flips, lost writes, read and fsync errors, rot at rest),
    #: on ``faulty_disks`` only: a minority, as the disk fault model requires.
    media_faults: DiskFaults = field(default_factory=DiskFaults)
    faulty_disks: tuple[int, ...] = ()
    #: WAL segment size, small so runs roll segments over and compact them.
    segment_size: int = 64 * 1024
    workload: str = "raft"
    queue: QueueParams | None = None
    #: Data groups per node (``herald serve --groups``): queue worlds host each
    #: queue in its group, every group its own Raft log on the node's disk.
    groups: int = 1
    extra: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        faults = ",".join(self.faults) if self.faults else "none"
        return (
            f"SEED={self.seed} nodes={self.nodes} {self.network.describe()} "
            f"faults={faults} fault_every={self.fault_interval / MS:.0f}ms "
            f"safety={self.safety_duration / SECOND:.1f}s "
            f"liveness_bound={self.liveness_bound / SECOND:.1f}s "
            f"tick={self.tick_interval / MS:.0f}ms election={self.election_tick}-"
            f"{self.election_tick_max}t heartbeat={self.heartbeat_tick}t "
            f"drift={self.drift:.3f} fsync={self.fsync_latency / MS:.2f}ms "
            f"clients={self.clients} propose_every={self.propose_interval / MS:.0f}ms "
            f"pipeline={self.max_pending} reads={self.read_fraction:.2f} "
            f"snapshot_every={self.snapshot_entries} "
            f"prevote={'on' if self.pre_vote else 'off'} "
            f"checkquorum={'on' if self.check_quorum else 'off'} "
            f"hunt_leaders={self.hunt_leaders:.1f} "
            f"disk=torn:{'on' if self.crash_disk.torn_writes else 'off'},"
            f"misorder:{self.crash_disk.misorder:g} {self._describe_media()}"
            + (f" groups={self.groups}" if self.groups != 1 else "")
            + (f" {self.queue.describe()}" if self.queue is not None else "")
        )

    def _describe_media(self) -> str:
        if not self.faulty_disks:
            return "media_faults=none"
        media = self.media_faults
        nodes = ",".join(f"n{node}" for node in self.faulty_disks)
        return (
            f"media_faults[{nodes}]=flip:{media.bit_flip:g},lost:{media.lost_write:g},"
            f"read:{media.read_error:g},fsync:{media.fsync_error:g}"
        )


def draw_options(
    seed: int,
    faults: tuple[str, ...] | None = None,
    workload: str = "raft",
    groups: int | None = None,
) -> SimOptions:
    """Draw a run's options from ``seed``; ``faults`` restricts the fault kinds;
    ``groups`` replaces the drawn count of data groups (queue worlds only)."""
    rng = random.Random(seed)
    nodes = rng.choice((3, 3, 3, 4, 5, 5, 5, 6, 7))
    network = NetworkProfile(
        base_latency=rng.randint(100, 3 * MS),
        jitter=rng.randint(50, 4 * MS),
        loss=rng.choice((0.0, 0.0, rng.uniform(0.0, 0.05), rng.uniform(0.0, 0.2))),
        duplicate=rng.choice((0.0, rng.uniform(0.0, 0.05), rng.uniform(0.0, 0.2))),
        spike=rng.choice((0.0, rng.uniform(0.0, 0.01))),
    )
    allowed = FAULT_KINDS if faults is None else faults
    # Swarm: each kind is on with probability 3/4, and at least one is on.
    chosen = tuple(kind for kind in allowed if rng.random() < 0.75)
    if not chosen and allowed:
        chosen = (rng.choice(allowed),)
    options = SimOptions(
        seed=seed,
        nodes=nodes,
        network=network,
        faults=chosen,
        fault_interval=rng.randint(100 * MS, 1500 * MS),
        safety_duration=rng.randint(4 * SECOND, 8 * SECOND),
        liveness_bound=10 * SECOND,
        tick_interval=10 * MS,
        election_tick=15,
        # Narrow ranges make split votes (several candidates in one term) common.
        election_tick_max=rng.choice((16, 18, 29, 29)),
        heartbeat_tick=rng.choice((2, 3, 5)),
        drift=rng.choice((0.0, rng.uniform(0.0, 0.1), rng.uniform(0.0, 0.3))),
        fsync_latency=rng.randint(50, 3 * MS),
        clients=rng.randint(1, 3),
        propose_interval=rng.randint(2 * MS, 40 * MS),
        max_pending=rng.choice((1, 4, 16)),
        read_fraction=rng.choice((0.0, 0.1, 0.3)),
        snapshot_entries=rng.choice((50, 200, 1000)),
        # Raft must be safe with or without its liveness refinements.
        pre_vote=rng.random() < 0.75,
        check_quorum=rng.random() < 0.75,
        hunt_leaders=rng.choice((0.0, 0.0, 0.3, 0.7)),
    )
    options = _draw_disks(rng, options)
    if workload == "queue":
        options = _draw_queue(rng, options)
    if groups is not None:
        if groups != 1 and workload != "queue":
            raise ValueError("data groups are a queue world's: the Raft workload has one")
        options = replace(options, groups=groups)
    return options


def _draw_queue(rng: random.Random, options: SimOptions) -> SimOptions:
    # Drawn last, so a seed's cluster, network and faults are the same worlds
    # under both workloads.
    params = QueueParams(
        producers=rng.randint(1, 3),
        messages=rng.randint(15, 60),
        publish_interval=rng.randint(5 * MS, 40 * MS),
        use_keys=rng.random() < 0.3,
        consumers=rng.randint(1, 2),
        batch=rng.randint(1, 4),
        lease=rng.randint(200 * MS, 1000 * MS),
        max_deliveries=rng.randint(3, 8),
        process_time=rng.randint(1 * MS, 15 * MS),
        slow=rng.choice((0.0, 0.02, 0.05)),
        consumer_crash=rng.choice((0.02, 0.05, 0.1)),
        poll_interval=rng.randint(10 * MS, 50 * MS),
        pipeline=rng.choice((1, 2, 4, 8)),
        too_large=rng.choice((0.0, 0.02, 0.1)),
        max_message_bytes=rng.choice((64, 256)),
        max_length=rng.choice((None, None, 30, 100)),
        producer_crash=rng.choice((0.0, 0.01, 0.03)),
        relay=rng.random() < 0.5,
        relay_bad_rows=rng.choice((0.0, 0.05)),
        recreate_every=rng.choice((0, 800 * MS, 2 * SECOND)),
        max_uncommitted_bytes=rng.choice((64 << 20, 64 << 20, 4096, 1024)),
        dedup_ttl=rng.randint(60, 600) * SECOND,
        auto_extend=rng.random() < 0.3,
        # Drawn last: every other draw of a seed stays what it was.
        hands=rng.choice((1, 1, 2, 4, 8)),
    )
    return replace(
        options,
        # After every other draw, for the same reason.
        groups=rng.choice((1, 1, 2, 3)),
        workload="queue",
        queue=params,
        clients=0,  # the queue's own producers and consumers replace them
        liveness_bound=30 * SECOND,
    )


def _draw_disks(rng: random.Random, options: SimOptions) -> SimOptions:
    crash_disk = DiskFaults(torn_writes=rng.random() < 0.9, misorder=rng.choice((0.0, 0.2, 1.0)))
    if "disk" not in options.faults:
        return replace(options, crash_disk=crash_disk)
    minority = (options.nodes - 1) // 2
    faulty = tuple(sorted(rng.sample(range(1, options.nodes + 1), rng.randint(1, minority))))
    media = DiskFaults(
        torn_writes=crash_disk.torn_writes,
        misorder=crash_disk.misorder,
        lost_write=rng.choice((0.0, 1e-3, 1e-2)),
        bit_flip=rng.choice((0.0, 1e-3, 1e-2)),
        read_error=rng.choice((0.0, 1e-3, 1e-2)),
        fsync_error=rng.choice((0.0, 1e-3, 5e-3)),
    )
    return replace(
        options,
        crash_disk=crash_disk,
        media_faults=media,
        faulty_disks=faulty,
        segment_size=rng.choice((16 * 1024, 64 * 1024)),
    )


def with_overrides(options: SimOptions, **changes: object) -> SimOptions:
    """A copy of ``options`` with some fields replaced (tests and benchmarks)."""
    return replace(options, **changes)  # type: ignore[arg-type]
