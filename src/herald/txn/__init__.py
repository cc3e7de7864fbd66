"""Atomic commitment: classic two- and three-phase commit as sans-IO cores.

``classic2pc`` and ``classic3pc`` are the textbook protocols, kept to show their
failure modes (2PC blocks when its coordinator fails; 3PC does not block, and
breaks atomicity under a partition). Each participant keeps its protocol state
in a :class:`DurableLog`, which is what survives a crash.
"""

from __future__ import annotations

from .log import DurableLog
from .messages import Decision, TxnMessage, TxnNote

__all__ = ["Decision", "DurableLog", "TxnMessage", "TxnNote"]
