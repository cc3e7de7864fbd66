"""The values the client hands back: receipts, queue stats, dead letters, cluster status.

Receipts are built on the hot path, so they are frozen msgspec structs. Queue
stats reuse the broker's own value types (:class:`herald.broker.QueueStats` and
friends), converted from the map the server sends; times and durations in them
are microseconds, as everywhere on the wire.
"""

from __future__ import annotations

from typing import Any

import msgspec

from herald.broker.model import (
    DeliveryMode,
    Durability,
    GroupStats,
    QueueCounters,
    QueueOptions,
    QueueStats,
)
from herald.errors import MalformedFrameError
from herald.wire.protocol import DeadLetter

__all__ = [
    "ClusterStatus",
    "DeadLetter",
    "DeliveryMode",
    "Durability",
    "GroupStats",
    "GroupStatus",
    "PeerStatus",
    "QueueCounters",
    "QueueOptions",
    "QueueStats",
    "Receipt",
    "convert",
]


class Receipt(msgspec.Struct, frozen=True, gc=False):
    """The broker's answer to a publish.

    ``sequence`` is the message's number in ``queue`` (from 1, in commit order).
    ``duplicate`` is true when this is the receipt of an earlier publish of the
    same message: a retry of the same producer sequence, or the same ``key``
    within the queue's ``dedup_ttl``; nothing was added to the queue then.
    ``durability`` says how far the message got and never claims more than is
    true (see :class:`herald.broker.Durability`). ``incarnation`` tells the
    queue from an earlier queue of the same name that was deleted (which
    numbered its messages from 1 too); 0 from a server that does not say.
    """

    queue: str
    sequence: int
    duplicate: bool
    durability: Durability
    incarnation: int = 0


class PeerStatus(msgspec.Struct, frozen=True):
    """One node as the answering node sees it: how far its log matches the leader's
    (``match``) and how many entries it is behind (``lag``); None where that node
    does not know (only the leader tracks its followers)."""

    node: int
    address: str = ""
    match: int | None = None
    lag: int | None = None


class GroupStatus(msgspec.Struct, frozen=True):
    """One data group (a Raft group) as the answering node sees it: the node's
    role in it, the group's term and leader, and the node's indexes of its log."""

    group: int
    role: str = ""
    term: int = 0
    leader: int = 0
    leader_address: str = ""
    commit: int = 0
    applied: int = 0
    last_index: int = 0


class ClusterStatus(msgspec.Struct, frozen=True):
    """The cluster as the answering node sees it (a monitoring view, not linearizable).

    ``peers`` holds each node's replication progress; only a leader knows it.
    The top-level Raft fields are data group 0's; ``groups`` has every group's
    (one entry for a cluster of one group).
    """

    node: int
    role: str = ""
    term: int = 0
    leader: int = 0
    leader_address: str = ""
    commit: int = 0
    applied: int = 0
    last_index: int = 0
    #: The node refuses to vote until it has caught up (after a repaired log).
    recovering: bool = False
    peers: list[PeerStatus] = []
    #: The longest pause of the node's event loop in each of the last 60 seconds,
    #: newest first, and since it started (milliseconds).
    loop_lag_ms: list[float] = []
    loop_lag_max_ms: float = 0.0
    groups: list[GroupStatus] = []


_DURABILITY = {d.value: d for d in Durability}


def durability(value: str) -> Durability:
    """The Durability named ``value`` (a dict lookup: cheaper than calling the enum)."""
    try:
        return _DURABILITY[value]
    except KeyError:
        raise MalformedFrameError(f"unknown durability {value!r}") from None


def convert(value: Any, kind: type[Any], what: str) -> Any:
    """``value`` (decoded msgpack) as ``kind``; MalformedFrameError if it does not fit."""
    try:
        return msgspec.convert(value, kind, strict=False)
    except (msgspec.ValidationError, TypeError, ValueError) as error:
        raise MalformedFrameError(f"malformed {what} in a reply: {error}") from None
