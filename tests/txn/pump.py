"""A synchronous message pump for driving commit cores by hand, without a network.

Messages are delivered one at a time in the order they were sent; a ``drop``
predicate loses some, and a node marked down neither receives nor ticks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from herald.txn.messages import TxnMessage, TxnNote


class Pump:
    def __init__(self, nodes: dict[int, Any]) -> None:
        self.nodes = nodes
        self.queue: deque[TxnMessage] = deque()
        self.down: set[int] = set()
        self.notes: list[tuple[int, TxnNote]] = []
        self.delivered: list[TxnMessage] = []
        self.drop: Callable[[TxnMessage], bool] = lambda message: False
        for node_id in sorted(nodes):
            self._collect(node_id)

    def _collect(self, node_id: int) -> None:
        core = self.nodes[node_id]
        self.queue.extend(core.take_messages())
        self.notes.extend((node_id, note) for note in core.take_notes())

    def act(self, node_id: int, action: Callable[[Any], object]) -> None:
        action(self.nodes[node_id])
        self._collect(node_id)

    def replace(self, node_id: int, core: Any) -> None:
        """A restart: a new core (built from the node's log) takes the node's place."""
        self.down.discard(node_id)
        self.nodes[node_id] = core
        self._collect(node_id)

    def run(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if not self.queue:
                return
            message = self.queue.popleft()
            if message.dst in self.down or self.drop(message):
                continue
            self.delivered.append(message)
            self.nodes[message.dst].step(message)
            self._collect(message.dst)
        raise AssertionError("the pump did not go quiet")

    def tick(self, times: int = 1) -> None:
        for _ in range(times):
            for node_id in sorted(self.nodes):
                if node_id not in self.down:
                    self.nodes[node_id].tick()
                    self._collect(node_id)
            self.run()

    def kinds(self, node_id: int) -> list[str]:
        return [note.kind for node, note in self.notes if node == node_id]
