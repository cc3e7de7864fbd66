"""The link proxy forwards bytes, and injects partitions, delay and resets on demand."""

from __future__ import annotations

import asyncio
import time

from herald.torture.proxy import LinkProxy


async def echo_server() -> tuple[asyncio.base_events.Server, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


#: Seconds to wait for what must happen: generous, since a loaded machine is
#: slow. Where any outcome but forwarded data passes, a short wait will do.
ARRIVES = 30.0
NOTHING = 0.3


async def roundtrip(port: int, payload: bytes, timeout: float = ARRIVES) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), timeout)
    finally:
        writer.close()


def test_forwarding_blocking_healing_and_delay() -> None:
    async def main() -> None:
        server, port = await echo_server()
        proxy = LinkProxy("127.0.0.1", port)
        await proxy.start()
        assert await roundtrip(proxy.port, b"hello") == b"hello"

        proxy.block()
        try:
            await roundtrip(proxy.port, b"lost", timeout=NOTHING)
            raise AssertionError("a blocked link forwarded data")
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass

        proxy.heal()
        assert await roundtrip(proxy.port, b"back") == b"back"

        proxy.faults.delay = 0.1
        started = time.monotonic()
        assert await roundtrip(proxy.port, b"slow") == b"slow"
        assert time.monotonic() - started >= 0.18  # both directions delayed

        proxy.faults.delay = 0.0
        proxy.faults.reset_rate = 1.0
        try:
            # Not a timeout: the reset must cut the connection (and be counted).
            await roundtrip(proxy.port, b"reset")
            raise AssertionError("a resetting link forwarded data")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        assert proxy.resets >= 1
        await proxy.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def test_blocking_cuts_existing_connections() -> None:
    async def main() -> None:
        server, port = await echo_server()
        proxy = LinkProxy("127.0.0.1", port)
        await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"x")
        assert await asyncio.wait_for(reader.readexactly(1), ARRIVES) == b"x"
        proxy.block()
        data = await asyncio.wait_for(reader.read(1), ARRIVES)
        assert data == b""  # the connection was cut
        writer.close()
        await proxy.close()
        server.close()

    asyncio.run(main())
