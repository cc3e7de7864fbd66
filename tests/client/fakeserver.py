"""An in-process fake Herald server for the client's tests.

It speaks the real wire protocol (:mod:`herald.wire.frames`) and answers with
the real broker state machine (:class:`herald.broker.Broker`), applying each
command at once with the wall clock as its time (no Raft, no disk). Several
fakes may share one broker to stand for a cluster: one is the leader, the
others answer every request with ``NotLeaderError`` naming it.

Faults a test can ask for:

- ``drop_frames``: close the connection on the next N request frames, before
  carrying them out (the requests are lost);
- ``drop_replies``: carry out the next N request frames, then close the
  connection instead of replying (the replies are lost: outcome unknown);
- ``delay``: wait this long before sending each batch of replies;
- ``silent``: carry requests out, never reply;
- ``refuse``: answer the handshake with ``Refused`` (code, message);
- ``answer_next``: answer the next requests with these error codes, carrying
  each out first or not (``OutcomeUnknownError`` after the fact, say);
- ``claim_leader``: greet as the leader although not one (then answer
  ``NotLeaderError``), as a node with a stale view would;
- ``unreadable``: a predicate on a request; a frame holding a request it
  matches is answered like a frame the server cannot read (a reply of id 0
  with ``MalformedFrameError``, then the connection closes), as the real
  server answers a frame it cannot decode. A frame beyond ``max_frame`` gets
  ``FrameTooLargeError`` the same way.

It records what it saw: ``frames`` (request frames), ``requests`` (counts by
request type), ``frame_sizes`` (requests per frame), ``frame_bytes`` (the
payload size of each frame), ``refused_frames`` and ``connections``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgspec

from herald.broker import Broker, QueueOptions, encode
from herald.broker import commands as cmd
from herald.broker.model import (
    Deliveries,
    Extended,
    Left,
    Nacked,
    QueueCreated,
    QueuePurged,
    Receipt,
    Redriven,
    Session,
)
from herald.errors import (
    BrokerError,
    HeraldError,
    InvalidOptionsError,
    MalformedFrameError,
    ProtocolError,
)
from herald.raft import Entry
from herald.wire import protocol as p
from herald.wire.frames import (
    FrameDecoder,
    decode_hello,
    decode_requests,
    encode_frame,
    encode_messages,
)

__all__ = ["FakeCluster", "FakeServer"]


def _error_reply(request_id: int, error: BaseException) -> p.Reply:
    return p.Reply(request_id, False, None, p.ErrorInfo(type(error).__name__, str(error)))


def _frames(decoder: FrameDecoder, data: bytes) -> Iterator[bytes | ProtocolError]:
    """The frames in ``data``, then the error that stops the stream, if one does (the
    frames before a bad one are read, as the real server reads them)."""
    try:
        yield from decoder.feed(data)
    except ProtocolError as error:
        yield error


def now_us() -> int:
    return int(time.time() * 1_000_000)


class LoggedBroker(Broker):
    """The real broker over a log kept in this process: each command is the next
    entry, and message bodies are read back from those entries."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[bytes] = []
        self.reader = lambda index: self.entries[index - 1]


def _append(broker: Broker, command: cmd.Command) -> Any:
    if not isinstance(broker, LoggedBroker):
        raise TypeError("a fake server needs a LoggedBroker")
    data = encode(command)
    broker.entries.append(data)
    return broker.apply(Entry(1, len(broker.entries), data))


class FakeServer:
    def __init__(
        self,
        node: int = 1,
        *,
        broker: Broker | None = None,
        leader: bool = True,
        max_in_flight: int = 100_000,
        max_frame: int = 16 << 20,
    ) -> None:
        self.node = node
        self.broker = broker or LoggedBroker()
        self.is_leader = leader
        self.leader_node = node if leader else 0
        self.leader_address = ""
        self.max_in_flight = max_in_flight
        self.max_frame = max_frame
        self.address = ""
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        # faults
        self.drop_frames = 0
        self.drop_replies = 0
        self.delay = 0.0
        self.silent = False
        self.refuse: tuple[str, str] | None = None
        self.claim_leader = False  # greet as the leader even when not (a stale view)
        #: Answer the next requests with these error codes: (code, carry it out first).
        self.answer_next: list[tuple[str, bool]] = []
        #: Requests the server "cannot read": their frame is refused whole.
        self.unreadable: Any = None
        # observations
        self.frames = 0
        self.frame_sizes: list[int] = []
        self.frame_bytes: list[int] = []
        self.refused_frames = 0
        self.requests: Counter[str] = Counter()
        self.connections = 0
        self.hellos: list[p.Hello] = []
        self.published: list[tuple[str | None, int, bytes]] = []  # producer, sequence, body
        self._ticker: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        if self.is_leader:
            self.leader_address = self.address
        self._ticker = asyncio.create_task(self._tick_loop())
        return self.address

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        self.kill_connections()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1)
        for task in list(self.tasks):
            task.cancel()

    def kill_connections(self) -> None:
        for writer in list(self.writers):
            writer.close()
        self.writers.clear()

    def follow(self, leader: FakeServer | None) -> None:
        """Become a follower of ``leader`` (None: no leader known)."""
        self.is_leader = False
        self.leader_node = 0 if leader is None else leader.node
        self.leader_address = "" if leader is None else leader.address

    def lead(self) -> None:
        self.is_leader = True
        self.leader_node = self.node
        self.leader_address = self.address

    async def _tick_loop(self) -> None:
        # Time moves for the broker even when nobody sends (leases expire).
        while True:
            await asyncio.sleep(0.01)
            if self.is_leader:
                self._run(cmd.Tick(time=now_us()))

    # -- a connection ----------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.add(writer)
        decoder = FrameDecoder(self.max_frame)
        handshaken = False
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    return
                for payload in _frames(decoder, data):
                    if isinstance(payload, ProtocolError):
                        if handshaken:
                            await self._refuse_frame(writer, payload)
                        return
                    if not handshaken:
                        hello = decode_hello(payload)
                        self.hellos.append(hello)
                        if self.refuse is not None:
                            writer.write(encode_frame(p.Refused(*self.refuse)))
                            await writer.drain()
                            writer.close()
                            return
                        writer.write(
                            encode_frame(
                                p.Welcome(
                                    p.PROTOCOL_VERSION,
                                    self.node,
                                    self.node if self.claim_leader else self.leader_node,
                                    self.address if self.claim_leader else self.leader_address,
                                    self.max_in_flight,
                                    self.max_frame,
                                )
                            )
                        )
                        handshaken = True
                        continue
                    requests = decode_requests(payload)
                    if self.unreadable is not None and any(map(self.unreadable, requests)):
                        await self._refuse_frame(
                            writer, MalformedFrameError("malformed request frame: fake")
                        )
                        return
                    self.frames += 1
                    self.frame_sizes.append(len(requests))
                    self.frame_bytes.append(len(payload))
                    if self.drop_frames:
                        self.drop_frames -= 1
                        writer.close()
                        return
                    replies: list[p.Reply] = []
                    for request in requests:
                        self.requests[type(request).__name__] += 1
                        reply = self._handle(request, writer)
                        if reply is not None:
                            replies.append(reply)
                    if self.drop_replies:
                        self.drop_replies -= 1
                        writer.close()
                        return
                    if self.silent or not replies:
                        continue
                    if self.delay:
                        self._spawn(self._send_later(writer, replies, self.delay))
                    else:
                        writer.write(encode_messages(replies))
        except (ConnectionError, ProtocolError, HeraldError):
            return
        finally:
            self.writers.discard(writer)
            writer.close()

    async def _refuse_frame(self, writer: asyncio.StreamWriter, error: ProtocolError) -> None:
        """The real server's answer to a frame it cannot read: a reply of id 0, close."""
        self.refused_frames += 1
        info = p.ErrorInfo(type(error).__name__, str(error))
        writer.write(encode_messages([p.Reply(0, False, None, info)]))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send_later(
        self, writer: asyncio.StreamWriter, replies: list[p.Reply], delay: float
    ) -> None:
        await asyncio.sleep(delay)
        if not writer.is_closing():
            writer.write(encode_messages(replies))

    # -- requests --------------------------------------------------------------------

    def _handle(self, request: Any, writer: asyncio.StreamWriter) -> p.Reply | None:
        if not self.is_leader:
            return p.Reply(
                request.id,
                False,
                None,
                p.ErrorInfo("NotLeaderError", "not the leader", self.leader_address),
            )
        if self.answer_next:
            code, execute = self.answer_next.pop(0)
            if execute:
                with contextlib.suppress(BrokerError):
                    self._execute(request)
            return p.Reply(request.id, False, None, p.ErrorInfo(code, f"fake {code}", ""))
        if isinstance(request, p.Deliver) and request.wait:
            self._spawn(self._long_poll(request, writer))
            return None
        try:
            value = self._execute(request)
        except BrokerError as error:
            return _error_reply(request.id, error)
        return p.Reply(request.id, True, value)

    async def _long_poll(self, request: p.Deliver, writer: asyncio.StreamWriter) -> None:
        deadline = time.monotonic() + request.wait / 1_000_000
        while True:
            try:
                value = self._execute(request)
            except BrokerError as error:
                reply = p.Reply(
                    request.id, False, None, p.ErrorInfo(type(error).__name__, str(error))
                )
                break
            if value or time.monotonic() >= deadline:
                reply = p.Reply(request.id, True, value)
                break
            await asyncio.sleep(0.002)
        if self.delay:
            await asyncio.sleep(self.delay)
        if not writer.is_closing() and not self.silent:
            writer.write(encode_messages([reply]))

    def _run(self, command: cmd.Command) -> Any:
        result = _append(self.broker, command)
        if isinstance(result, BrokerError):
            raise result
        return result

    def _execute(self, r: Any) -> Any:
        broker = self.broker
        t = now_us()
        if isinstance(r, p.Publish):
            receipt = self._run(
                cmd.Publish(
                    r.queue,
                    r.body,
                    tuple(tuple(h) for h in r.headers),  # type: ignore[misc]
                    r.message_id,
                    r.producer,
                    r.sequence,
                    time=t,
                )
            )
            assert isinstance(receipt, Receipt)
            if not receipt.duplicate:
                self.published.append((r.producer, r.sequence, r.body))
            return [
                receipt.queue,
                receipt.sequence,
                receipt.duplicate,
                "durable",
                getattr(receipt, "incarnation", 0),
            ]
        if isinstance(r, p.Subscribe):
            from herald.broker.model import DeliveryMode

            session = self._run(
                cmd.Subscribe(
                    r.queue, r.group, r.consumer, DeliveryMode(r.mode), r.session_timeout, time=t
                )
            )
            assert isinstance(session, Session)
            return {"expires_at": session.expires_at}
        if isinstance(r, p.Deliver):
            result = self._run(
                cmd.Deliver(r.queue, r.group, r.consumer, r.max_messages, r.lease, time=t)
            )
            assert isinstance(result, Deliveries)
            return [
                p.DeliveryWire(
                    d.message.sequence,
                    d.message.body,
                    list(d.message.headers),
                    d.message.message_id,
                    d.message.publish_time,
                    d.attempt,
                    d.token,
                    d.deadline,
                    d.redelivery,
                    None if d.reason is None else d.reason.value,
                    getattr(d, "incarnation", 0),
                )
                for d in result.deliveries
            ]
        if isinstance(r, p.Ack):
            self._run(cmd.Ack(r.queue, r.group, r.sequence, r.token, time=t))
            return None
        if isinstance(r, p.Nack):
            nacked = self._run(cmd.Nack(r.queue, r.group, r.sequence, r.token, r.delay, time=t))
            assert isinstance(nacked, Nacked)
            return {"dead_lettered": nacked.dead_lettered, "available_at": nacked.available_at}
        if isinstance(r, p.Extend):
            extended = self._run(
                cmd.Extend(r.queue, r.group, r.sequence, r.token, r.duration, time=t)
            )
            assert isinstance(extended, Extended)
            return {"deadline": extended.deadline}
        if isinstance(r, p.Reject):
            self._run(cmd.Reject(r.queue, r.group, r.sequence, r.token, time=t))
            return None
        if isinstance(r, p.Leave):
            left = self._run(cmd.Leave(r.queue, r.group, r.consumer, time=t))
            assert isinstance(left, Left)
            return {"released": left.released}
        if isinstance(r, p.CreateQueue):
            try:
                options = QueueOptions(**r.options)
            except TypeError as error:
                raise InvalidOptionsError(str(error)) from None
            created = self._run(cmd.CreateQueue(r.queue, options, time=t))
            assert isinstance(created, QueueCreated)
            return {"created": created.created}
        if isinstance(r, p.DeleteQueue):
            self._run(cmd.DeleteQueue(r.queue, time=t))
            return None
        if isinstance(r, p.PurgeQueue):
            purged = self._run(cmd.PurgeQueue(r.queue, r.dead_letters, time=t))
            assert isinstance(purged, QueuePurged)
            return {"purged": purged.messages}
        if isinstance(r, p.DeleteGroup):
            self._run(cmd.DeleteGroup(r.queue, r.group, time=t))
            return None
        if isinstance(r, p.Redrive):
            redriven = self._run(cmd.Redrive(r.queue, r.group, tuple(r.sequences), time=t))
            assert isinstance(redriven, Redriven)
            return {"redriven": len(redriven.sequences)}
        if isinstance(r, p.ListQueues):
            return list(broker.list_queues())
        if isinstance(r, p.Stats):
            return msgspec.to_builtins(broker.stats(r.queue))
        if isinstance(r, p.DeadLetters):
            letters = broker.dead_letters(r.queue, r.group or None, r.limit or None)
            return [
                p.DeadLetter(
                    letter.message.sequence,
                    letter.message.body,
                    list(letter.message.headers),
                    letter.message.message_id,
                    letter.attempts,
                    letter.reason.value,
                    letter.time,
                    [msgspec.to_builtins(record) for record in letter.history],
                )
                for letter in letters
            ]
        if isinstance(r, p.Peek):
            return [
                p.PeekedMessage(
                    peeked.message.sequence,
                    peeked.message.body,
                    list(peeked.message.headers),
                    peeked.message.message_id,
                    peeked.message.publish_time,
                    peeked.attempts,
                    peeked.state,
                    peeked.incarnation,
                )
                for peeked in broker.peek(r.queue, r.group or None, r.limit)
            ]
        if isinstance(r, p.Status):
            return {
                "node": self.node,
                "role": "leader",
                "term": 3,
                "leader": self.node,
                "leader_address": self.address,
                "commit": broker.applied_index,
                "applied": broker.applied_index,
                "last_index": broker.applied_index,
                "peers": [
                    {"node": self.node, "address": self.address, "match": 0, "lag": 0},
                ],
            }
        raise AssertionError(f"unexpected request {r!r}")

    def messages(self, queue: str) -> list[bytes]:
        """The bodies the queue retains, in queue order."""
        stats = self.broker.stats(queue)
        out = []
        for sequence in range(1, stats.next_sequence):
            with contextlib.suppress(BrokerError):
                out.append(self.broker.message(queue, sequence).body)
        return out


class FakeCluster:
    """Several fakes over one broker; ``leader`` answers, the others redirect to it."""

    def __init__(self, size: int = 3) -> None:
        broker = LoggedBroker()
        self.servers = [FakeServer(n + 1, broker=broker, leader=n == 0) for n in range(size)]
        self.broker = broker

    async def start(self) -> list[str]:
        for server in self.servers:
            await server.start()
        self.elect(self.servers[0])
        return [s.address for s in self.servers]

    async def stop(self) -> None:
        for server in self.servers:
            await server.stop()

    @property
    def leader(self) -> FakeServer:
        return next(s for s in self.servers if s.is_leader)

    def elect(self, leader: FakeServer | None) -> None:
        """Make ``leader`` the leader (None: nobody); the old leader's clients are cut off."""
        for server in self.servers:
            if server is leader:
                server.lead()
            else:
                was = server.is_leader
                server.follow(leader)
                if was:
                    server.kill_connections()
