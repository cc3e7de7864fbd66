"""Sans-IO Raft: the consensus core every Herald guarantee rests on.

Nothing here reads a clock, a socket, a file or a global random generator. A host
drives a :class:`RawNode` with ``tick``/``step``/``propose`` and carries out the
:class:`Ready` it returns; see :mod:`herald.raft.rawnode` for the loop and the
ordering contract.
"""

from .config import Config
from .raft import Raft
from .rawnode import RawNode, Ready, Status
from .storage import MemoryStorage, Storage
from .types import (
    NONE,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    ReadState,
    Role,
    Snapshot,
    SnapshotMeta,
    SoftState,
)

__all__ = [
    "NONE",
    "ConfState",
    "Config",
    "Entry",
    "EntryKind",
    "HardState",
    "MemoryStorage",
    "Message",
    "MessageType",
    "Raft",
    "RawNode",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "SoftState",
    "Status",
    "Storage",
]
