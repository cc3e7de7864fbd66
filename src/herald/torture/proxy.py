"""A fault-injecting TCP proxy: what `herald torture` puts on every link.

One :class:`LinkProxy` carries one direction of traffic between two parties: a
node's outbound peer connection to another node (Raft traffic flows i -> j on
i's own connection, so a proxy per ordered pair makes one-way partitions
exact), or a client's connection to a node. Faults, changed at any time:

- ``blocked``: a partition. Existing connections are cut and new ones are
  accepted and closed at once, so the sender sees its peer as unreachable;
- ``delay`` / ``jitter``: every chunk waits that long before being forwarded
  (a slow link; order within a connection is kept, as TCP keeps it);
- ``bandwidth``: bytes per second, beyond which forwarding waits;
- ``reset_rate``: each forwarded chunk resets the connection with this
  probability (a lossy link as TCP experiences it: broken connections and
  retransmission stalls, never corrupted bytes).

The proxy never reads a frame: it moves bytes, like a network does.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field

__all__ = ["LinkFaults", "LinkProxy"]

_CHUNK = 64 * 1024


@dataclass(slots=True)
class LinkFaults:
    blocked: bool = False
    delay: float = 0.0  # seconds
    jitter: float = 0.0  # seconds, uniform on top of delay
    bandwidth: float = 0.0  # bytes per second, 0: unlimited
    reset_rate: float = 0.0  # per chunk

    def clear(self) -> None:
        self.blocked = False
        self.delay = self.jitter = self.bandwidth = self.reset_rate = 0.0

    @property
    def healthy(self) -> bool:
        return not (self.blocked or self.delay or self.jitter or self.bandwidth or self.reset_rate)


@dataclass(slots=True, eq=False)  # identity equality: kept in a set
class _Pair:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class LinkProxy:
    """Listens on ``listen_port`` (0: any free port) and forwards to ``target``."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        name: str = "",
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        rng: random.Random | None = None,
    ) -> None:
        self.target = (target_host, target_port)
        self.name = name or f"->{target_host}:{target_port}"
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.faults = LinkFaults()
        self.rng = rng or random.Random(0)
        self._server: asyncio.base_events.Server | None = None
        self._pairs: set[_Pair] = set()
        self.bytes_forwarded = 0
        self.connections = 0
        self.resets = 0

    @property
    def port(self) -> int:
        return self.listen_port

    @property
    def address(self) -> str:
        return f"{self.listen_host}:{self.listen_port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.listen_host, self.listen_port)
        self.listen_port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.cut()

    def retarget(self, host: str, port: int) -> None:
        """Point at a restarted process on a new port; existing connections are cut."""
        self.target = (host, port)
        self.cut()

    def block(self) -> None:
        self.faults.blocked = True
        self.cut()

    def heal(self) -> None:
        self.faults.clear()

    def cut(self) -> None:
        """Close every connection through the proxy now."""
        for pair in list(self._pairs):
            self._close_pair(pair)

    def _close_pair(self, pair: _Pair) -> None:
        self._pairs.discard(pair)
        for writer in (pair.client, pair.upstream):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        for task in pair.tasks:
            task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.faults.blocked:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        pair = _Pair(writer, up_writer)
        self._pairs.add(pair)
        pair.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, pair)),
            asyncio.create_task(self._pump(up_reader, writer, pair)),
        ]

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: _Pair
    ) -> None:
        faults = self.faults
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if faults.blocked:
                    break
                if faults.reset_rate and self.rng.random() < faults.reset_rate:
                    self.resets += 1
                    break
                wait = faults.delay
                if faults.jitter:
                    wait += self.rng.uniform(0.0, faults.jitter)
                if faults.bandwidth:
                    wait += len(data) / faults.bandwidth
                if wait:
                    await asyncio.sleep(wait)
                    if faults.blocked:
                        break
                writer.write(data)
                self.bytes_forwarded += len(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError, OSError):
            pass
        finally:
            self._close_pair(pair)
