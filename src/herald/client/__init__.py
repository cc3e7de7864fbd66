"""Herald's Python client: :class:`Client` (asyncio) and :class:`SyncClient` (blocking).

One connection to the leader, found from a list of seeds and followed across
leader changes; requests pipelined and batched (everything issued in one
event-loop iteration travels in one frame); publishes numbered per queue so a
retry is never stored twice; consumers with a prefetch window, batched acks and
optional automatic lease extension. ``docs/client.md`` is the guide; the module
docstring of :mod:`herald.client.client` says what a retry means for each
operation.
"""

from herald.wire.protocol import DeadLetter

from ._consumer import Consumer, Delivery, Mode
from ._errors import RemoteError, UnreachableError, error_from_info
from ._session import DEFAULT_PORT, DEFAULT_SEEDS, parse_seeds, split_address
from .client import MAX_IN_FLIGHT, Client
from .sync import SyncClient, SyncConsumer, SyncDelivery
from .types import (
    ClusterStatus,
    DeliveryMode,
    Durability,
    GroupStats,
    PeerStatus,
    QueueCounters,
    QueueOptions,
    QueueStats,
    Receipt,
)

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_SEEDS",
    "MAX_IN_FLIGHT",
    "Client",
    "ClusterStatus",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "DeliveryMode",
    "Durability",
    "GroupStats",
    "Mode",
    "PeerStatus",
    "QueueCounters",
    "QueueOptions",
    "QueueStats",
    "Receipt",
    "RemoteError",
    "SyncClient",
    "SyncConsumer",
    "SyncDelivery",
    "UnreachableError",
    "error_from_info",
    "parse_seeds",
    "split_address",
]
