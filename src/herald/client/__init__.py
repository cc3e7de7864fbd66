"""Herald's Python client: :class:`Client` (asyncio) and :class:`SyncClient` (blocking).

One connection to the leader, found from a list of seeds and followed across
leader changes; requests pipelined and batched (everything issued in one
event-loop iteration travels in one frame); publishes numbered per queue so a
retry is never stored twice; consumers with a prefetch window, batched acks and
optional automatic lease extension. The protocol itself is a sans-IO core
(:mod:`herald.client.core`) that the asyncio shell and the simulator drive
alike. ``docs/client.md`` is the guide; the module docstring of
:mod:`herald.client.client` says what a retry means for each operation.

The shells (asyncio, threads) are imported on first use, so importing
:mod:`herald.client.core` alone brings in neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from herald.wire.protocol import DeadLetter, PeekedMessage

from ._addresses import DEFAULT_PORT, DEFAULT_SEEDS, parse_seeds, split_address
from ._errors import RemoteError, UnreachableError, error_from_info
from .types import (
    ClusterStatus,
    DeliveryMode,
    Durability,
    GroupStats,
    GroupStatus,
    PeerStatus,
    QueueCounters,
    QueueOptions,
    QueueStats,
    Receipt,
)

if TYPE_CHECKING:
    from ._consumer import Consumer, Delivery, Mode
    from .client import MAX_IN_FLIGHT, Client
    from .sync import SyncClient, SyncConsumer, SyncDelivery

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
    "GroupStatus",
    "Mode",
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
    "error_from_info",
    "parse_seeds",
    "split_address",
]

#: Names of the shells, imported on first use: name -> module.
_LAZY = {
    "Client": ".client",
    "MAX_IN_FLIGHT": ".client",
    "Consumer": "._consumer",
    "Delivery": "._consumer",
    "Mode": "._consumer",
    "SyncClient": ".sync",
    "SyncConsumer": ".sync",
    "SyncDelivery": ".sync",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
