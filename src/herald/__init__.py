"""Herald: a replicated message queue for Python that is honest about delivery."""

from herald.client import (
    Client,
    ClusterStatus,
    Consumer,
    DeadLetter,
    Delivery,
    DeliveryMode,
    Durability,
    GroupStats,
    PeerStatus,
    QueueCounters,
    QueueOptions,
    QueueStats,
    Receipt,
    RemoteError,
    SyncClient,
    SyncConsumer,
    SyncDelivery,
    UnreachableError,
)
from herald.errors import (
    ConnectionClosedError,
    HeraldError,
    RequestTimeoutError,
    StaleLeaseError,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ClusterStatus",
    "ConnectionClosedError",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "DeliveryMode",
    "Durability",
    "GroupStats",
    "HeraldError",
    "PeerStatus",
    "QueueCounters",
    "QueueOptions",
    "QueueStats",
    "Receipt",
    "RemoteError",
    "RequestTimeoutError",
    "StaleLeaseError",
    "SyncClient",
    "SyncConsumer",
    "SyncDelivery",
    "UnreachableError",
    "UsageError",
    "__version__",
]
