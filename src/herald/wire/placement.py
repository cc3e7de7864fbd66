"""Which Raft group holds a queue: the rule clients and servers share.

A cluster has a fixed number of data groups, chosen when it is created
(``herald serve --groups``); queue ``name`` lives in group
``crc32(name) % groups``. Both sides compute it, so a client sends a request
straight to its queue's group leader with no lookup first. The rule cannot
change under a running cluster: a queue would move to a group that does not
hold it, so nodes with a different group count refuse each other (the peer
handshake carries it) and clients learn it from the server's Welcome.
"""

from __future__ import annotations

import zlib

__all__ = ["group_of"]


def group_of(queue: str, groups: int) -> int:
    """The group (``0 <= group < groups``) that holds ``queue``."""
    if groups <= 1:
        return 0
    return zlib.crc32(queue.encode("utf-8", "surrogatepass")) % groups
