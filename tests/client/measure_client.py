"""Measure the client alone: its throughput and CPU cost per message against a null server.

Not a test (benchmarks never run in ``make test``): run it by hand::

    .venv/bin/python -m tests.client.measure_client [--messages 200000] [--size 256]

A *null server* runs in a child process: it speaks the protocol but keeps no
queue -- it confirms every publish and acks at once and answers each Deliver
with as many canned messages as asked -- so it costs as little per message as a
server can, and the client's own work shows. Prints the client process's wall
throughput and its CPU microseconds per message (publish with 1000 in flight;
consume with a prefetch of 1000 and an ack per message), plus the single-message
round trip (one publish in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import time
from typing import Any

from herald import Client
from herald.wire import protocol as p
from herald.wire.frames import (
    FrameDecoder,
    decode_hello,
    decode_requests,
    encode_frame,
    encode_messages,
)


class _NullConnection(asyncio.Protocol):
    def __init__(self) -> None:
        self.decoder = FrameDecoder()
        self.transport: Any = None
        self.handshaken = False
        self.sequence = 0
        self.token = 0
        self.body = b"x" * 256

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for payload in self.decoder.feed(data):
            if not self.handshaken:
                decode_hello(payload)
                self.handshaken = True
                port = self.transport.get_extra_info("sockname")[1]
                welcome = p.Welcome(1, 1, 1, f"127.0.0.1:{port}", 1 << 20, 16 << 20)
                self.transport.write(encode_frame(welcome))
                continue
            replies = []
            for request in decode_requests(payload):
                kind = type(request)
                if kind is p.Publish:
                    self.sequence += 1
                    value: Any = [request.queue, self.sequence, False, "durable", 1]
                elif kind is p.Deliver:
                    value = []
                    for _ in range(request.max_messages):
                        self.token += 1
                        value.append(
                            p.DeliveryWire(
                                self.token,
                                self.body,
                                [],
                                None,
                                0,
                                1,
                                self.token,
                                1 << 50,
                                False,
                                None,
                            )
                        )
                elif kind is p.Subscribe:
                    value = {"expires_at": 1 << 50}
                elif kind is p.CreateQueue:
                    value = {"created": True}
                elif kind is p.Leave:
                    value = {"released": 0}
                else:
                    value = None
                replies.append(p.Reply(request.id, True, value))
            self.transport.write(encode_messages(replies))


def _serve(port: Any) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_NullConnection, "127.0.0.1", 0)
        port.value = server.sockets[0].getsockname()[1]
        await asyncio.Event().wait()

    uvloop.run(main())


async def _measure(address: str, messages: int, size: int) -> dict[str, float]:
    body = os.urandom(size)
    out: dict[str, float] = {}
    async with Client(address) as client:
        await client.create_queue("q")
        # Publish: 1000 in flight, refilled from done callbacks (no task per message).
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        state = {"sent": 0, "done": 0}

        def issue() -> None:
            state["sent"] += 1
            client.publish("q", body).add_done_callback(done)

        def done(_: Any) -> None:
            state["done"] += 1
            if state["sent"] < messages:
                issue()
            elif state["done"] == messages:
                finished.set_result(None)

        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(1000):
            issue()
        await finished
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        out["publish_msgs_per_s"] = messages / wall
        out["publish_cpu_us_per_msg"] = cpu / messages * 1e6
        # Consume with an ack per message.
        cpu, wall = time.process_time(), time.perf_counter()
        count = 0
        async with client.consume("q", "g", prefetch=1000) as consumer:
            async for delivery in consumer:
                delivery.ack()
                count += 1
                if count == messages:
                    break
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        out["consume_msgs_per_s"] = messages / wall
        out["consume_cpu_us_per_msg"] = cpu / messages * 1e6
        # One at a time: the round trip through the client (and the null server).
        rounds = 5000
        started = time.perf_counter()
        for _ in range(rounds):
            await client.publish("q", body)
        out["single_publish_round_trip_us"] = (time.perf_counter() - started) / rounds * 1e6
    return {key: round(value, 1) for key, value in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    port = multiprocessing.Value("i", 0)
    server = multiprocessing.Process(target=_serve, args=(port,), daemon=True)
    server.start()
    while not port.value:
        time.sleep(0.01)
    try:
        import uvloop

        result = uvloop.run(_measure(f"127.0.0.1:{port.value}", args.messages, args.size))
    finally:
        server.terminate()
    for key, value in result.items():
        print(f"{key:32} {value:>12,.1f}")


if __name__ == "__main__":
    main()
