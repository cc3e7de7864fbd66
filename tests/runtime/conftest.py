"""Fixtures: a node server running in this process, on its own event loop thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from herald.runtime import NodeConfig, NodeServer
from herald.runtime.launcher import free_ports
from herald.wire.protocol import Status

from .wireclient import WireClient

T = TypeVar("T")

#: Fast timers for tests: 5 ms ticks, elections after 75..145 ms.
FAST: dict[str, Any] = {"tick_interval": 0.005, "election_tick": 15, "election_tick_max": 29}


class InProcessNode:
    """A one-node cluster served by a NodeServer on a background thread's loop."""

    def __init__(
        self, data_dir: Path, *, extra_peers: dict[int, str] | None = None, **overrides: Any
    ) -> None:
        port = free_ports(1)[0]
        self.address = f"127.0.0.1:{port}"
        settings = {**FAST, **overrides}
        peers = {1: self.address, **(extra_peers or {})}
        self.config = NodeConfig(node_id=1, peers=peers, data_dir=str(data_dir), **settings)
        self.loop = asyncio.new_event_loop()
        self.server: NodeServer | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="node", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.server = NodeServer(self.config)
            self.loop.run_until_complete(self.server.start())
        except BaseException as error:
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    def start(self, wait_leader: bool = True) -> InProcessNode:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        if wait_leader:
            self.wait_leader()
        return self

    def wait_leader(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with WireClient(self.address) as client:
            while True:
                status = client.call(Status(client.next_id())).value
                if status["role"] == "leader" and status["applied"] >= 1:
                    return
                assert time.monotonic() < deadline, f"no leader: {status}"
                time.sleep(0.01)

    def run(self, function: Callable[[], T]) -> T:
        """Call ``function`` on the node's loop thread and return its result."""
        future = asyncio.run_coroutine_threadsafe(_call(function), self.loop)
        return future.result(10)

    def stop(self) -> None:
        if self.server is not None and not self.loop.is_closed():
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


async def _call(function: Callable[[], T]) -> T:
    return function()


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Callable[..., InProcessNode]]:
    nodes: list[InProcessNode] = []

    def make(*, wait_leader: bool = True, **overrides: Any) -> InProcessNode:
        node = InProcessNode(tmp_path / f"node{len(nodes)}", **overrides)
        nodes.append(node)
        return node.start(wait_leader)

    yield make
    for node in nodes:
        node.stop()
