"""Read-index bookkeeping (Raft dissertation, section 6.4): a linearizable read is
served at the commit index the leader held when the read arrived, once a
heartbeat round shows a majority still follows it."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ReadIndexRequest", "ReadOnly"]


@dataclass(slots=True)
class ReadIndexRequest:
    context: bytes
    origin: int  # the node that asked (the leader itself for local reads)
    index: int
    acks: set[int] = field(default_factory=set)


class ReadOnly:
    """Pending read-index requests, in arrival order."""

    __slots__ = ("_pending", "_queue")

    def __init__(self) -> None:
        self._pending: dict[bytes, ReadIndexRequest] = {}
        self._queue: list[bytes] = []

    def add_request(self, index: int, context: bytes, origin: int) -> bool:
        """Track a request; False if one with this context is already pending."""
        if context in self._pending:
            return False
        self._pending[context] = ReadIndexRequest(context, origin, index)
        self._queue.append(context)
        return True

    def receive_ack(self, node: int, context: bytes) -> set[int] | None:
        request = self._pending.get(context)
        if request is None:
            return None
        request.acks.add(node)
        return request.acks

    def release(self, context: bytes) -> list[ReadIndexRequest]:
        """Every request up to and including ``context``: a quorum confirmed them all,
        since a heartbeat round for a later request also vouches for earlier ones."""
        if context not in self._pending:
            return []
        position = self._queue.index(context)
        released = [self._pending.pop(ctx) for ctx in self._queue[: position + 1]]
        del self._queue[: position + 1]
        return released

    def last_context(self) -> bytes | None:
        return self._queue[-1] if self._queue else None

    def pending_count(self) -> int:
        return len(self._queue)

    def clear(self) -> list[ReadIndexRequest]:
        dropped = [self._pending[ctx] for ctx in self._queue]
        self._pending.clear()
        self._queue.clear()
        return dropped
