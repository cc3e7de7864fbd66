"""Herald: a replicated message queue for Python that is honest about delivery.

The public names below are imported on first use, so ``import herald.raft``
(or the simulator, or a broker core) does not bring in the client, asyncio
or msgspec with it.
"""

from __future__ import annotations

import importlib
import logging as _logging
from typing import TYPE_CHECKING, Any

# A library logs; the application decides where it goes (``herald serve`` does).
_logging.getLogger("herald").addHandler(_logging.NullHandler())

if TYPE_CHECKING:
    from herald.client import (
        Client,
        ClusterStatus,
        Consumer,
        DeadLetter,
        Delivery,
        DeliveryMode,
        Durability,
        GroupStats,
        PeekedMessage,
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

_CLIENT = (
    "Client",
    "ClusterStatus",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "DeliveryMode",
    "Durability",
    "GroupStats",
    "PeekedMessage",
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
)
_ERRORS = (
    "ConnectionClosedError",
    "HeraldError",
    "RequestTimeoutError",
    "StaleLeaseError",
    "UsageError",
)

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
    "PeekedMessage",
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


def __getattr__(name: str) -> Any:
    if name in _CLIENT:
        module = "herald.client"
    elif name in _ERRORS:
        module = "herald.errors"
    else:
        raise AttributeError(f"module 'herald' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
