"""The asyncio client: :class:`Client`, a thin shell over the sans-IO client core.

The protocol -- discovery, pipelining, retries, timeouts, the idempotent
producer, consumers -- lives in :class:`herald.client.core.ClientCore`; this
shell owns one real connection (an :class:`asyncio.Protocol`), carries out the
core's actions, keeps one loop timer armed for the core's next wakeup and
turns the core's operations into futures.

What a retry means, per operation
---------------------------------

Every call has a timeout (the client's ``timeout``, or the call's own). When it
passes, the call raises :class:`~herald.errors.RequestTimeoutError`: the outcome
is *unknown* -- the broker may or may not have carried the operation out.

When the connection to the leader is lost (or the leader changes), the client
reconnects, with exponential backoff and jitter, and then:

- **publish** (idempotent producer, the default) is resent with the same
  producer id and sequence number: it is published exactly once, and a retry
  that finds the message already there gets the original receipt with
  ``duplicate=True`` (or, if the broker refused it, the same refusal). A
  number names one publish for good: the client never gives it to another
  message (see :mod:`herald.client._producer` for refusals and gaps). With
  ``idempotent=False``, a publish with a ``key`` is resent too (the broker's
  idempotency index answers the retry); one without a key raises
  :class:`~herald.errors.ConnectionClosedError` (outcome unknown). A publish
  that times out stays in flight behind the scenes, so the numbers after it
  stay valid; its caller just stops waiting.
- **reads** (``queues``, ``stats``, ``dead_letters``, ``peek``, ``status``) and
  **create_queue** are resent (creating a queue that exists with the same
  options is a no-op; a retried create may report ``False`` although the first
  attempt created it).
- **ack** and **reject** are resent; if the retry finds the message already
  settled, the call succeeds: the first attempt landed, or (if the lease had run
  out meanwhile) the message was settled another way. It will not come back.
- **nack** is resent; a retry that finds the lease ended succeeds: the message
  comes back either way.
- **extend** is resent (the deadline is set from the time the retry lands).
- **delete_queue**, **purge**, **delete_group** and **redrive** are *not* resent
  (repeating them could act on messages that arrived in between): they raise
  ConnectionClosedError, outcome unknown.
- A consumer's **deliver** requests are not resent: the messages a lost request
  leased come back when their lease expires (``at_least_once``), or are lost
  (``at_most_once``: that is the mode's contract). The consumer asks again.

A reply ``NotLeaderError``, ``ProposalLostError``, ``ShuttingDownError`` or
``OverloadedError`` means the request was not carried out; the client
reconnects (to the leader it names) and resends it, whatever the operation --
once it has the answers to what it had sent before on that connection, which
the server may still carry out (so no answer is lost and nothing is resent
for nothing).
``OutcomeUnknownError`` (the leader lost its leadership before it knew the
command's fate) and a server-side ``RequestTimeoutError`` (a read could not
confirm leadership) are handled like a lost connection: retryable calls are
resent, the others fail with that error.

A request too large for the server's frame limit (``max_frame``) fails at once
with :class:`~herald.errors.MessageTooLargeError` and is never sent. Should the
server nevertheless refuse a frame it cannot read (a protocol error), the
request it refused fails with that error and is not resent (the core's
docstring says how it is found).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import secrets
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, TypeVar, cast

from herald.errors import HeraldError, MessageTooLargeError, UsageError
from herald.wire.protocol import DeadLetter, PeekedMessage

from ._addresses import DEFAULT_SEEDS, split_address
from ._consumer import Consumer, Delivery, Mode, settle_future
from ._ops import Action, Dial, Op, Send
from .core import MAX_IN_FLIGHT, ClientCore
from .routing import GroupRouter
from .types import ClusterStatus, QueueStats, Receipt

__all__ = ["DEFAULT_SEEDS", "MAX_IN_FLIGHT", "UNSET", "Client"]

T = TypeVar("T")

_log = logging.getLogger("herald.client")


class _Unset(enum.Enum):
    UNSET = 0


UNSET: Final = _Unset.UNSET

# Option fields given in seconds by the caller, in microseconds on the wire.
_DURATIONS = ("dedup_ttl", "lease_duration", "producer_ttl")
_NO_HEADERS: list[tuple[str, str]] = []


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _timeout(seconds: float | None) -> int | None:
    return None if seconds is None else _us(seconds)


def _headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    if isinstance(headers, Mapping):
        return list(headers.items())
    if isinstance(headers, (str, bytes)):
        raise UsageError(f"headers must be a mapping or (str, str) pairs, not {headers!r}")
    return list(headers)


def _body(body: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    raise UsageError(f"a message body must be bytes or str, not {type(body).__name__}")


class _Link(asyncio.Protocol):
    """The one TCP connection a core asked for: bytes in, bytes out."""

    def __init__(self, client: _Session, address: str) -> None:
        self.client = client
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        if self.closed:
            transport.close()
            return
        self.client._link_connected(self)

    def data_received(self, data: bytes) -> None:
        if not self.closed:
            self.client._link_data(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.client._link_lost(self, exc)

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            return
        # A transport the peer reset may be closed before connection_lost runs:
        # uvloop then raises where asyncio only warns. The loss is reported anyway.
        with contextlib.suppress(RuntimeError):
            transport.write(data)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        elif self.task is not None:
            self.task.cancel()


class _Session:
    """One client core and the connection it asks for, driven on the client's loop.

    A client has one per data group of the cluster (``Client._sessions``, index =
    group): each core keeps its own connection to its group's leader. A
    consumer is driven through its queue's session (it calls the ``_``-methods
    below as it would the client's)."""

    def __init__(self, client: Client, core: ClientCore) -> None:
        self._client = client
        self._core = core
        self._link: _Link | None = None
        self._soon: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None

    @property
    def _loop(self) -> asyncio.AbstractEventLoop | None:
        return self._client._loop

    def _loop_or_raise(self) -> asyncio.AbstractEventLoop:
        return self._client._loop_or_raise()

    def _now(self) -> int:
        return self._client._now()

    def _future(self, op: Op[T]) -> asyncio.Future[T]:
        return self._client._future(op)

    def _forget_consumer(self, consumer: Consumer) -> None:
        self._client._forget_consumer(consumer)

    def _shutdown(self, now: int) -> None:
        self._core.close(now)
        self._drive(now)
        for handle in (self._soon, self._timer):
            if handle is not None:
                handle.cancel()
        self._soon = self._timer = None
        self._timer_at = None

    def _drive(self, now: int) -> None:
        """Carry out the core's actions and arm the timer for its next wakeup."""
        core = self._core
        if core._actions:
            self._run(core.take_actions())
        if self._soon is not None:
            return  # a tick is due this iteration: it arms the timer after it
        if not core.wakeup_changed:
            return
        core.wakeup_changed = False
        wakeup = core.next_wakeup()
        if wakeup is None:
            return
        if wakeup <= now:
            if self._soon is None:
                self._soon = self._client._loop_or_raise().call_soon(self._on_soon)
        elif self._timer_at is None or wakeup < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = wakeup
            self._timer = self._client._loop_or_raise().call_at(wakeup / 1_000_000, self._on_timer)

    def _on_soon(self) -> None:
        self._soon = None
        now = self._client._now()
        core = self._core
        core.tick(now)
        core.wakeup_changed = True  # (what the tick did is not tracked)
        self._drive(now)

    def _on_timer(self) -> None:
        at = self._timer_at or 0
        self._timer = None
        self._timer_at = None
        # The loop may run a timer a hair early; it was due at ``at``.
        now = max(self._client._now(), at)
        core = self._core
        core.tick(now)
        core.wakeup_changed = True
        self._drive(now)

    def _run(self, actions: list[Action]) -> None:
        for action in actions:
            kind = type(action)
            if kind is Send:
                link = self._link
                if link is not None:
                    link.write(cast(Send, action).data)
            elif kind is Dial:
                self._dial(cast(Dial, action).address)
            else:
                self._close_link()

    def _dial(self, address: str) -> None:
        self._close_link()
        link = self._link = _Link(self, address)
        loop = self._client._loop_or_raise()
        try:
            host, port = split_address(address)
        except UsageError as error:  # a leader address from the server, malformed
            loop.call_soon(self._dial_failed, link, str(error))
            return
        link.task = loop.create_task(self._open(link, host, port))

    async def _open(self, link: _Link, host: str, port: int) -> None:
        loop = self._client._loop_or_raise()
        try:
            await loop.create_connection(lambda: link, host, port)
        except asyncio.CancelledError:
            return  # abandoned by the core (a Close: it timed out, or the client closed)
        except Exception as error:
            self._dial_failed(link, str(error) or type(error).__name__)

    def _dial_failed(self, link: _Link, reason: str) -> None:
        if link is not self._link or link.closed:
            return
        link.closed = True
        self._link = None
        now = self._client._now()
        self._core.dial_failed(reason, now)
        self._drive(now)

    def _close_link(self) -> None:
        link = self._link
        self._link = None
        if link is not None:
            link.close()

    def _link_connected(self, link: _Link) -> None:
        if link is not self._link:
            link.close()
            return
        now = self._client._now()
        self._core.connected(now)
        self._drive(now)

    def _link_data(self, link: _Link, data: bytes) -> None:
        if link is not self._link:
            return
        now = self._client._now()
        self._core.received(data, now)
        self._drive(now)

    def _link_lost(self, link: _Link, exc: Exception | None) -> None:
        if link is not self._link:
            return
        self._link = None
        now = self._client._now()
        self._core.connection_lost(str(exc) if exc is not None else None, now)
        self._drive(now)


class Client:
    """An asyncio client of a Herald cluster: one connection to each group's leader.

    ``seeds``: where to look for the cluster: ``"host:port"``, a comma-separated
    string of them, or a list (default ``127.0.0.1:7430``). The client connects
    to a seed, learns the leader from its greeting (or from a ``NotLeaderError``
    answer) and keeps one connection to the leader, reconnecting with
    exponential backoff and jitter when it fails. A cluster of many data groups
    (``herald serve --groups``) says so in its greeting: the client then keeps a
    connection to each group's leader and sends each request to the group of
    its queue (:func:`herald.wire.placement.group_of`).

    ``timeout``: the default time limit of every call, in seconds.
    ``connect_timeout``: how long :meth:`connect` waits for a leader.
    ``linger``: seconds to hold requests before sending, to batch more of them
    (like a Kafka producer's ``linger.ms``); 0 sends once per event-loop
    iteration, which already batches everything issued concurrently.
    ``idempotent``: number publishes for exactly-once retries (default; see the
    module docstring). ``max_in_flight``: publishes in flight per queue, at most
    1000 (the broker's receipt window; see :mod:`herald.client._producer`).

    Use ``async with Client(...) as client`` or ``client = await
    Client.connect(...)`` and ``await client.close()``. A client belongs to the
    event loop that started it and is not thread-safe; see
    :class:`herald.SyncClient` for blocking code.
    """

    def __init__(
        self,
        seeds: str | Sequence[str] = DEFAULT_SEEDS,
        *,
        name: str | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 10.0,
        linger: float = 0.0,
        idempotent: bool = True,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        if timeout <= 0 or connect_timeout <= 0 or linger < 0:
            raise UsageError("timeouts must be positive and linger must not be negative")
        suffix = secrets.token_hex(6)
        self.name = name or f"herald-py-{suffix}"
        #: This client's idempotent-producer id (random, one per instance).
        self.producer_id = f"{self.name}/{suffix}" if name else self.name
        self._core_options: dict[str, Any] = {
            "name": self.name,
            "producer_id": self.producer_id,
            "timeout": max(1, _us(timeout)),
            "linger": _us(linger),
            "idempotent": idempotent,
            "max_in_flight": max_in_flight,
            "connect_timeout": max(1, _us(connect_timeout)),
        }
        self._rng = random.Random()
        core = ClientCore(seeds, rng=random.Random(self._rng.getrandbits(64)), **self._core_options)
        core.log = _log.log
        self._core = core
        #: Which group's core a request goes to; more cores are made once the
        #: first greeting names the cluster's group count.
        self._router = GroupRouter(core, self._make_core)
        #: One per data group (index = group), beside the router's cores.
        self._sessions: list[_Session] = [_Session(self, core)]
        self.seeds = core.seeds
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.linger = linger
        self.idempotent = idempotent
        self.max_in_flight = max_in_flight
        self._consumers: list[Consumer] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ----------------------------------------------------------------------

    @classmethod
    async def connect(cls, seeds: str | Sequence[str] = DEFAULT_SEEDS, **options: Any) -> Client:
        """Create a client and wait until it is connected to the leader.

        Raises :class:`~herald.client.UnreachableError` if no leader answers within
        ``connect_timeout``.
        """
        client = cls(seeds, **options)
        await client.start()
        return client

    async def start(self) -> None:
        """Connect (see :meth:`connect`). Raises UnreachableError (and closes)."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise UsageError("a client belongs to the event loop that started it")
        now = self._now()
        future = self._future(self._core.connect(now))
        self._drive(now)
        try:
            await future
        except BaseException:
            self._shutdown()
            raise
        self._grow()

    async def close(self, *, flush: bool = True) -> None:
        """Leave every consumer's group, wait for the publishes in flight (when
        ``flush``, up to the timeout), then close the connection. Whatever is still
        pending fails with ConnectionClosedError."""
        if self._loop is None or self._core.closed:
            return
        for consumer in list(self._consumers):
            await consumer.close()
        if flush:
            with contextlib.suppress(TimeoutError, HeraldError):
                await asyncio.wait_for(self.flush(), self.timeout)
        self._shutdown()

    def _shutdown(self) -> None:
        if self._loop is None:
            return
        now = self._now()
        for session in self._sessions:
            session._shutdown(now)

    def _make_core(self, group: int) -> ClientCore:
        core = ClientCore(
            self.seeds,
            rng=random.Random(self._rng.getrandbits(64)),
            group=group,
            **self._core_options,
        )
        core.log = _log.log
        return core

    def _grow(self) -> None:
        """A session per data group the cluster has (told by the first greeting);
        each new one starts looking for its group's leader at once."""
        if self._loop is None:
            return
        new = self._router.grow()
        if not new:
            return
        now = self._now()
        for core in new:
            session = _Session(self, core)
            self._sessions.append(session)
            core.connect(now)  # nobody waits on it: the group's calls do
            session._drive(now)

    def _session_for(self, queue: str) -> _Session:
        """The session of ``queue``'s data group."""
        sessions = self._sessions
        if len(sessions) < self._core.groups:
            self._grow()
        return sessions[self._router.index_for(queue)]

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close(flush=exc_type is None)

    @property
    def connected(self) -> bool:
        """True while a connection to every group's leader is open."""
        return all(session._core.is_connected for session in self._sessions)

    @property
    def leader(self) -> str | None:
        """The address of the leader (of group 0) this client is connected to, if it is."""
        return self._core.leader

    @property
    def core(self) -> ClientCore:
        """The sans-IO client core of group 0 (for tests, benchmarks, monitoring)."""
        return self._core

    @property
    def cores(self) -> list[ClientCore]:
        """The sans-IO client core of each data group, in group order."""
        return [session._core for session in self._sessions]

    # -- driving the core ---------------------------------------------------------------

    def _loop_or_raise(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            raise UsageError("the client is not started: use Client.connect or async with")
        return loop

    def _now(self) -> int:
        return int(self._loop_or_raise().time() * 1_000_000)

    def _future(self, op: Op[T]) -> asyncio.Future[T]:
        existing = op.tag
        if existing is not None and isinstance(existing, asyncio.Future):
            return existing  # an op handed out twice (a consumer's join in progress)
        loop = self._loop
        if loop is None:
            raise UsageError("the client is not started: use Client.connect or async with")
        future: asyncio.Future[T] = loop.create_future()
        if op.done:
            if op.error is None:
                future.set_result(op.value)
            else:
                future.set_exception(op.error)
        else:
            op.tag = future
            op.on_done = settle_future
        return future

    def _drive(self, now: int) -> None:
        """Carry out every core's actions and arm their timers."""
        for session in self._sessions:
            session._drive(now)

    def _forget_consumer(self, consumer: Consumer) -> None:
        if consumer in self._consumers:
            self._consumers.remove(consumer)

    async def _wait(self, op: Op[T], now: int) -> T:
        future = self._future(op)
        self._drive(now)
        return await future

    # -- publishing -----------------------------------------------------------------------

    def publish(
        self,
        queue: str,
        body: bytes | str,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        key: str | None = None,
        timeout: float | None = None,
    ) -> asyncio.Future[Receipt]:
        """Publish ``body`` to ``queue``; await the result for its :class:`Receipt`.

        The message is sent in this event-loop iteration's frame (or after
        ``linger``), together with every other request issued meanwhile, so
        ``await asyncio.gather(*(client.publish(q, b) for b in bodies))`` pipelines
        them; no task is created per message. The receipt arrives once the
        message is committed on a majority.

        ``headers``: string pairs kept with the message. ``key``: an idempotency
        key (the message id): a second publish with the same key within the
        queue's ``dedup_ttl`` is not stored again and gets the first one's receipt
        with ``duplicate=True`` -- across clients and restarts, unlike the
        automatic producer numbering, which covers this client's own retries.

        At most ``max_in_flight`` publishes per queue are in flight; later ones
        wait in the client, in order. Raises (through the future)
        :class:`~herald.errors.UnknownQueueError`,
        :class:`~herald.errors.MessageTooLargeError` (the queue's limit, or the
        server's frame limit: then nothing was sent),
        :class:`~herald.errors.QueueFullError`, ... as the broker refuses;
        :class:`~herald.errors.ProducerSequenceGapError` (surely not stored);
        :class:`~herald.errors.ProducerSequenceStaleError` or RequestTimeoutError
        (outcome unknown). Raises UsageError at once for malformed arguments.
        """
        loop = self._loop
        if loop is None:
            raise UsageError("the client is not started: use Client.connect or async with")
        if type(body) is not bytes:
            body = _body(body)
        pairs = _headers(headers) if headers else _NO_HEADERS
        now = int(loop.time() * 1_000_000)
        future: asyncio.Future[Receipt] = loop.create_future()
        session = self._sessions[0] if len(self._sessions) == 1 else self._session_for(queue)
        core = session._core
        try:
            op = core.publish_now(
                queue, body, pairs, key, None if timeout is None else _us(timeout), now
            )
        except MessageTooLargeError as error:
            future.set_exception(error)
            return future
        if op.done:
            if op.error is None:
                future.set_result(op.value)
            else:
                future.set_exception(op.error)
        else:
            op.tag = future
            op.on_done = settle_future
        if session._soon is None or core._actions:
            session._drive(now)  # (else a tick is due this iteration: it drives)
        return future

    async def flush(self) -> None:
        """Wait until every publish issued so far is confirmed or has failed."""
        now = self._now()
        ops = [session._core.flush(now) for session in self._sessions]
        for op in ops:
            await self._wait(op, now)

    def in_flight(self, queue: str) -> int:
        """Publishes to ``queue`` sent and not yet confirmed (plus those waiting to be sent)."""
        return self._session_for(queue)._core.in_flight_publishes(queue)

    # -- consuming ------------------------------------------------------------------------

    def consume(
        self,
        queue: str,
        group: str,
        *,
        mode: Mode = "at_least_once",
        prefetch: int = 100,
        consumer: str | None = None,
        auto_extend: bool = False,
        lease: float | None = None,
        wait: float = 5.0,
        session_timeout: float = 30.0,
        limit: int | None = None,
    ) -> Consumer:
        """Consume ``queue`` as a member of consumer ``group`` (created on first use).

        Returns an async iterator of :class:`~herald.client.Delivery`; use it as an
        async context manager so the consumer leaves its group when done::

            async with client.consume("orders", "billing") as deliveries:
                async for delivery in deliveries:
                    handle(delivery.body)
                    await delivery.ack()

        ``mode``: ``"at_least_once"`` (default): each delivery is a lease; ack it
        after processing; if you crash or the lease (``lease`` seconds, default the
        queue's) runs out first, the message comes back -- you may process a
        message twice, never lose one. ``"at_most_once"``: the broker settles
        each message as it delivers it; ack and nack do nothing; a crash after
        delivery loses the message -- never processed twice.

        ``prefetch``: messages leased ahead of processing (at least once: until
        settled). ``consumer``: this consumer's name in the group (default: a new
        random one). ``auto_extend``: extend each unsettled lease in the
        background before it runs out, for long work; stops once the delivery is
        settled. ``wait``: the long-poll time of each fetch. ``session_timeout``:
        the broker forgets a consumer silent this long and gives its leases back
        (the consumer keeps its session alive by itself). ``limit``: the most
        messages this consumer will ever lease; after that many, the iterator
        ends (so nothing is leased beyond what you will take).

        Raises UsageError for bad arguments. To look at messages without taking
        them (no lease, no delivery attempt), use :meth:`peek`.
        """
        self._loop_or_raise()
        name = consumer or f"{self.name}-{secrets.token_hex(4)}"
        if lease is not None and lease <= 0:
            raise UsageError(f"lease must be positive, not {lease}")
        if wait < 0 or session_timeout <= 0:
            raise UsageError("wait must not be negative and session_timeout must be positive")
        session = self._session_for(queue)
        core = session._core.consumer(
            queue,
            group,
            consumer=name,
            mode=mode,
            prefetch=prefetch,
            auto_extend=auto_extend,
            lease=None if lease is None else max(1, _us(lease)),
            wait=_us(wait),
            session_timeout=max(1, _us(session_timeout)),
            limit=limit,
            delivery_type=Delivery,
        )
        created = Consumer(session, core)
        self._consumers.append(created)
        return created

    # -- administration ---------------------------------------------------------------------

    async def create_queue(
        self,
        name: str,
        *,
        max_message_bytes: int | _Unset = UNSET,
        max_length: int | _Unset | None = UNSET,
        max_bytes: int | _Unset | None = UNSET,
        max_deliveries: int | _Unset = UNSET,
        dedup_ttl: float | _Unset | None = UNSET,
        lease_duration: float | _Unset = UNSET,
        producer_window: int | _Unset = UNSET,
        producer_ttl: float | _Unset | None = UNSET,
        timeout: float | None = None,
    ) -> bool:
        """Create queue ``name``; True if created, False if it existed with the same options.

        Options left out take the broker's defaults (:class:`herald.broker.QueueOptions`).
        ``None`` means unlimited (``max_length``, ``max_bytes``) or forever
        (``dedup_ttl``, ``producer_ttl``). Durations are in **seconds** here.
        Raises :class:`~herald.errors.QueueExistsError` if it exists with other
        options, :class:`~herald.errors.InvalidOptionsError` for values out of range.
        """
        given: dict[str, Any] = {
            key: value
            for key, value in (
                ("max_message_bytes", max_message_bytes),
                ("max_length", max_length),
                ("max_bytes", max_bytes),
                ("max_deliveries", max_deliveries),
                ("dedup_ttl", dedup_ttl),
                ("lease_duration", lease_duration),
                ("producer_window", producer_window),
                ("producer_ttl", producer_ttl),
            )
            if value is not UNSET
        }
        for key in _DURATIONS:
            if given.get(key) is not None:
                seconds = given[key]
                if not isinstance(seconds, (int, float)) or seconds <= 0:
                    raise UsageError(f"{key} must be a positive number of seconds, not {seconds!r}")
                given[key] = max(1, round(seconds * 1_000_000))
        now = self._now()
        op = self._session_for(name)._core.create_queue(
            name, given, timeout=_timeout(timeout), now=now
        )
        return await self._wait(op, now)

    async def delete_queue(self, name: str, *, timeout: float | None = None) -> None:
        """Delete a queue with its messages, groups and dead letters. Not retried.
        Raises UnknownQueueError."""
        now = self._now()
        core = self._session_for(name)._core
        await self._wait(core.delete_queue(name, timeout=_timeout(timeout), now=now), now)

    async def purge(
        self, name: str, *, dead_letters: bool = False, timeout: float | None = None
    ) -> int:
        """Drop every message of the queue (and its dead letters if asked); returns how
        many messages were dropped. Not retried."""
        now = self._now()
        op = self._session_for(name)._core.purge(
            name, dead_letters=dead_letters, timeout=_timeout(timeout), now=now
        )
        return await self._wait(op, now)

    async def delete_group(self, queue: str, group: str, *, timeout: float | None = None) -> None:
        """Delete a consumer group with its leases and dead letters. Not retried."""
        now = self._now()
        op = self._session_for(queue)._core.delete_group(
            queue, group, timeout=_timeout(timeout), now=now
        )
        await self._wait(op, now)

    async def queues(self, *, timeout: float | None = None) -> list[str]:
        """The names of every queue (of every data group), sorted."""
        now = self._now()
        self._grow()
        ops = [
            session._core.queues(timeout=_timeout(timeout), now=now) for session in self._sessions
        ]
        names: list[str] = []
        for op in ops:
            found: list[str] = await self._wait(op, now)
            names.extend(found)
        return sorted(names)

    async def stats(self, queue: str, *, timeout: float | None = None) -> QueueStats:
        """The queue's gauges, counters, options and groups (times in microseconds)."""
        now = self._now()
        core = self._session_for(queue)._core
        return await self._wait(core.stats(queue, timeout=_timeout(timeout), now=now), now)

    async def dead_letters(
        self,
        queue: str,
        group: str | None = None,
        *,
        limit: int = 100,
        timeout: float | None = None,
    ) -> list[DeadLetter]:
        """The queue's dead letters (of one group, if given) in the order they died,
        at most ``limit`` (0: all), each with its delivery history."""
        now = self._now()
        op = self._session_for(queue)._core.dead_letters(
            queue, group, limit=limit, timeout=_timeout(timeout), now=now
        )
        return await self._wait(op, now)

    async def peek(
        self,
        queue: str,
        group: str | None = None,
        *,
        limit: int = 10,
        timeout: float | None = None,
    ) -> list[PeekedMessage]:
        """Look at messages without taking them: nothing is leased, no delivery
        attempt is counted, nothing changes.

        With ``group``, the messages that group has not settled, in sequence
        order, each with its ``state`` there (``backlog``: never delivered,
        ``ready``: back for redelivery, ``leased``, ``delayed``) and its
        ``attempts`` so far; without, every message the queue retains (state
        ``retained``). At most ``limit`` (0: the server's maximum, 1000). A
        linearizable read, resent after a lost connection.
        """
        now = self._now()
        op = self._session_for(queue)._core.peek(
            queue, group, limit=limit, timeout=_timeout(timeout), now=now
        )
        return await self._wait(op, now)

    async def redrive(
        self,
        queue: str,
        group: str,
        sequences: Iterable[int] = (),
        *,
        timeout: float | None = None,
    ) -> int:
        """Move dead letters of ``group`` back for redelivery (all of them when
        ``sequences`` is empty); returns how many moved. Not retried."""
        now = self._now()
        op = self._session_for(queue)._core.redrive(
            queue, group, sequences, timeout=_timeout(timeout), now=now
        )
        return await self._wait(op, now)

    async def status(self, *, timeout: float | None = None) -> ClusterStatus:
        """The cluster as the leader sees it: term, commit index, each node's lag."""
        now = self._now()
        return await self._wait(self._core.status(timeout=_timeout(timeout), now=now), now)
