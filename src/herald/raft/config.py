"""Configuration of one Raft node, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass

from herald.errors import ConfigError

__all__ = ["Config"]


@dataclass(frozen=True, slots=True)
class Config:
    """Settings of one node of one Raft group.

    Times are in ticks: the host calls ``tick()`` at a fixed interval of its
    choosing, so the core never reads a clock.
    """

    id: int
    voters: tuple[int, ...]
    group: int = 0
    #: A follower that hears no leader for a random number of ticks drawn from
    #: ``[election_tick, election_tick_max]`` starts an election. ``election_tick``
    #: is also the check-quorum period and the leader-lease length.
    election_tick: int = 10
    #: Defaults to ``2 * election_tick - 1`` (the Raft paper's 150-300 ms shape).
    election_tick_max: int = 0
    heartbeat_tick: int = 1
    #: Ask the cluster before starting a real election (dissertation, section 9.6),
    #: so a node that was partitioned away cannot depose a healthy leader.
    pre_vote: bool = True
    #: A leader that did not hear from a majority within ``election_tick`` steps
    #: down (dissertation, section 6.2), and followers ignore vote requests while
    #: they hear from a leader.
    check_quorum: bool = True
    #: Upper bound on the bytes of entries in one append message (batching).
    max_size_per_msg: int = 1 << 20
    #: Unacknowledged append messages per follower while replicating (pipelining).
    max_inflight_msgs: int = 64
    #: Upper bound on the bytes of committed entries handed out by one Ready.
    max_committed_size_per_ready: int = 8 << 20
    #: Ticks a leader waits for a snapshot to land before it probes the follower again.
    snapshot_timeout_tick: int = 0
    #: The index the state machine had applied when this node restarted.
    applied: int = 0
    #: Nonzero when this node restarted with a log its storage had to cut back
    #: (repaired corruption, or a damaged last record that may have been
    #: acknowledged): the node's term then. Until its log holds an entry of a
    #: later term it neither votes nor campaigns, since the lost entries may have
    #: counted towards a commit (see ``Raft.recovering``).
    recovering_term: int = 0

    def __post_init__(self) -> None:
        if self.id <= 0:
            raise ConfigError(f"node id must be positive, got {self.id}")
        if not self.voters:
            raise ConfigError("voters must name at least one node")
        if len(set(self.voters)) != len(self.voters) or any(v <= 0 for v in self.voters):
            raise ConfigError(f"voters must be distinct positive ids, got {self.voters}")
        if self.heartbeat_tick <= 0:
            raise ConfigError("heartbeat_tick must be positive")
        if self.election_tick <= self.heartbeat_tick:
            raise ConfigError("election_tick must be greater than heartbeat_tick")
        if self.election_tick_max and self.election_tick_max < self.election_tick:
            raise ConfigError("election_tick_max must be at least election_tick")
        if self.max_inflight_msgs <= 0:
            raise ConfigError("max_inflight_msgs must be positive")
        if self.max_size_per_msg <= 0 or self.max_committed_size_per_ready <= 0:
            raise ConfigError("size limits must be positive")
        if self.applied < 0 or self.group < 0 or self.recovering_term < 0:
            raise ConfigError("applied, group and recovering_term must not be negative")

    @property
    def randomized_election_max(self) -> int:
        return self.election_tick_max or 2 * self.election_tick - 1

    @property
    def snapshot_timeout(self) -> int:
        return self.snapshot_timeout_tick or 2 * self.election_tick
